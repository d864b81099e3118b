"""How a bench's images are told from everyone else's, so that it deletes only its own.

Every image a bench creates carries ``image_transfer_bench = RUN_ID``: the synthetic source
images, the images of the upload measurement and those of the latency calls.  The copies the
engine makes of them inherit the property from their source; the copies of existing images
(``--images``) carry the engine's own job marker instead, ``image_transfer_job =
bench-RUN_ID-tN`` (one job per transfers value).  Nothing else is ever deleted.
"""

from __future__ import annotations

import re
import secrets

from transfer.metadata import MARKER_JOB
from transfer.models import Image

MARKER = "image_transfer_bench"
#: A run id: 12 hex digits, printed when the bench starts (``bench --cleanup --run ID``).
RUN_ID_RE = re.compile(r"[0-9a-f]{12}")
_JOB_RE = re.compile(r"bench-([0-9a-f]{12})-t[0-9]+")


def new_run_id() -> str:
    return secrets.token_hex(6)


def job_name(run_id: str, transfers: int) -> str:
    """The engine job of one copy measurement (its copies carry it as their job marker)."""
    return f"bench-{run_id}-t{transfers}"


def image_name(run_id: str, what: str) -> str:
    return f"bench-{run_id}-{what}"


def bench_run(image: Image) -> str | None:
    """The bench run that made this image, or None when no bench made it."""
    mark = image.raw.get(MARKER)
    if isinstance(mark, str) and RUN_ID_RE.fullmatch(mark):
        return mark
    job = image.raw.get(MARKER_JOB)
    if isinstance(job, str):
        found = _JOB_RE.fullmatch(job)
        if found is not None:
            return found.group(1)
    return None


def is_bench_image(image: Image, run_id: str | None = None) -> bool:
    """Whether a bench made this image (with ``run_id``: that run)."""
    run = bench_run(image)
    return run is not None and (run_id is None or run == run_id)
