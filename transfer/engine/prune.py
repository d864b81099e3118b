"""Pruning: deleting a job's targets whose source is gone or superseded (off by default).

Only images the planner marked ``-`` are candidates, and the planner marks only images carrying
this job's markers: never another job's, never an image this tool did not make.  Protected images
are never deleted.  ``max_delete`` refuses the whole prune, before any deletion, when more would
go than the operator allowed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from transfer.engine.listing import Target
from transfer.errors import NotFound, TooManyDeletions, TransferError
from transfer.log import get_logger
from transfer.metadata import MARKER_JOB
from transfer.planner import Code, PlanItem

log = get_logger("transfer.engine.prune")


@dataclass
class PruneResult:
    deleted: list[tuple[str, str, str]] = field(default_factory=list)  # target key, id, name
    kept: list[tuple[str, str, str, str]] = field(default_factory=list)  # ... + reason
    failed: list[tuple[str, str, str, str]] = field(default_factory=list)  # ... + error


def candidates(items: Sequence[PlanItem], job: str) -> list[PlanItem]:
    """The ``-`` items that carry this job's marker (a second check of the planner's rule)."""
    return [
        i
        for i in items
        if i.code is Code.EXTRA
        and i.target is not None
        and i.target.properties.get(MARKER_JOB) == job
    ]


async def prune(
    items: Sequence[PlanItem],
    targets: Mapping[str, Target],
    *,
    job: str,
    max_delete: int | None,
) -> PruneResult:
    result = PruneResult()
    chosen = []
    for item in candidates(items, job):
        assert item.target is not None
        if item.target.protected:
            result.kept.append(
                (item.target_key, item.target.id, item.target.name or "", "protected")
            )
        else:
            chosen.append(item)
    if max_delete is not None and len(chosen) > max_delete:
        raise TooManyDeletions(
            f"job {job}: pruning would delete {len(chosen)} images, more than max_delete "
            f"{max_delete}; nothing was deleted (run `plan` to see them as '-')"
        )
    for item in chosen:
        assert item.target is not None
        image = item.target
        try:
            await targets[item.target_key].client.delete_image(image.id)
        except NotFound:
            pass
        except TransferError as exc:
            result.failed.append((item.target_key, image.id, image.name or "", str(exc)))
            log.error(
                "prune failed", job=job, target=item.target_key, image=image.id, error=str(exc)
            )
            continue
        log.info("pruned", job=job, target=item.target_key, image=image.id, reasons=item.reasons)
        result.deleted.append((item.target_key, image.id, image.name or ""))
    return result
