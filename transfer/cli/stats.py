"""The stats of a run at one moment, and their words: the live display's header on a terminal
and the stats line written elsewhere come from here, so the two always agree.

The line (documented in the README)::

    images 3/12, 1 failed, 2 retries | 12.0 MiB/48.0 MiB at 1.2 MiB/s, ETA 0:00:31

- ``images D/T``: images finished (failed ones included) of the run's total;
- ``N failed``: images that failed for good in this run;
- ``N retries``: requests the clients repeated, plus the extra attempts of finished images;
- ``DONE/TOTAL at RATE``: bytes moved of the bytes planned, at the average rate since the start;
- ``ETA H:MM:SS``: the bytes left at that rate; ``-`` when every image is finished, no byte is
  left, or none has moved yet.

Off a terminal each line starts with the local time (``HH:MM:SS``).  No rich here: a run from
cron or a pipe never loads it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transfer.streams import human_bytes

if TYPE_CHECKING:
    from transfer.engine.results import Progress


_UUID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def short_ids(text: str) -> str:
    """Image ids in ``text`` cut to their first 8 hex digits (as git cuts hashes): what a
    terminal shows, where 80 columns are all there is."""
    return _UUID.sub(r"\1", text)


@dataclass(frozen=True, kw_only=True)
class Stats:
    """What a run's display shows at one moment."""

    images_done: int
    images_total: int
    failed: int
    retries: int
    bytes_done: int
    bytes_total: int
    seconds: float  # since the run began

    @property
    def rate(self) -> float:
        """Bytes per second, on average since the start."""
        return self.bytes_done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds until the bytes left are moved at ``rate``; None when unknown or done (a
        failed image's bytes are never moved, so "done" is every image finished)."""
        if self.images_total and self.images_done >= self.images_total:
            return None
        return eta_seconds(self.bytes_total - self.bytes_done, self.rate)


def stats_of(progress: Progress, now: float | None = None) -> Stats:
    """The stats of ``progress`` at ``now`` (a ``time.monotonic()`` value; default: now)."""
    moment = time.monotonic() if now is None else now
    return Stats(
        images_done=progress.images_done,
        images_total=progress.images_total,
        failed=progress.images_failed,
        retries=progress.retries,
        bytes_done=progress.bytes_done,
        bytes_total=progress.bytes_total,
        seconds=max(moment - progress.started, 0.0),
    )


def eta_seconds(remaining: float, rate: float) -> float | None:
    if rate <= 0 or remaining <= 0:
        return None
    return remaining / rate


def format_eta(seconds: float | None) -> str:
    """``H:MM:SS``, or ``-`` when unknown."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02}:{whole % 60:02}"


def human_rate(bytes_per_second: float) -> str:
    return f"{human_bytes(bytes_per_second)}/s"


def count_part(stats: Stats) -> str:
    """``images 3/12, 1 failed, 2 retries``: the first half of the stats line."""
    return (
        f"images {stats.images_done}/{stats.images_total}, {stats.failed} failed, "
        f"{stats.retries} {'retry' if stats.retries == 1 else 'retries'}"
    )


def bytes_part(stats: Stats) -> str:
    """``12.0 MiB/48.0 MiB at 1.2 MiB/s, ETA 0:00:31``: the second half."""
    return (
        f"{human_bytes(stats.bytes_done)}/{human_bytes(stats.bytes_total)} at "
        f"{human_rate(stats.rate)}, ETA {format_eta(stats.eta)}"
    )


SEPARATOR = " | "


def stats_line(stats: Stats) -> str:
    """The whole stats line, as the live display's header shows it when it fits."""
    return count_part(stats) + SEPARATOR + bytes_part(stats)


def timed_stats_line(stats: Stats, wall: float | None = None) -> str:
    """The line written off a terminal: the local time, then ``stats_line``."""
    return time.strftime("%H:%M:%S ", time.localtime(wall)) + stats_line(stats)
