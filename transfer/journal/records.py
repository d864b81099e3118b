"""What a journal holds, as both backends give it back: the records, the step and state names,
and the checks both backends make before they write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    pass


STEPS = ("create", "upload", "verify", "tags", "properties", "share", "accept", "protect")
STATES = ("pending", "running", "done", "failed")

#: Entry states ``claim`` hands out: not finished in the current plan.
OPEN_STATES = ("pending", "running")

_T = TypeVar("_T")
#: One work item: (source image id, target key).
ItemKey: TypeAlias = tuple[str, str]


ENTRY_COLUMNS = (
    "job",
    "source_id",
    "target_key",
    "source_name",
    "source_checksum",
    "source_size",
    "target_id",
    "generation",
    "state",
    "last_step",
    "bytes_done",
    "md5",
    "sha512",
    "attempts",
    "last_error",
    "updated_at",
)
#: Fields ``update_entry`` may change (the key and ``updated_at`` are the journal's own).
UPDATABLE_FIELDS = frozenset(ENTRY_COLUMNS) - {"job", "source_id", "target_key", "updated_at"}


@dataclass(frozen=True, kw_only=True)
class JournalEntry:
    """The latest known state of one source image x target pair."""

    job: str
    source_id: str
    target_key: str
    source_name: str | None
    source_checksum: str | None
    source_size: int | None
    target_id: str | None
    generation: int
    state: str  # pending | running | done | failed
    last_step: str | None  # the last step completed
    bytes_done: int
    md5: str | None
    sha512: str | None
    attempts: int
    last_error: str | None
    updated_at: str
    # The worker holding a live lease on the entry, and until when (None when nobody does:
    # free, or its worker died and the lease ran out).
    lease_owner: str | None = None
    lease_expires: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    id: int
    job: str
    worker: str
    started_at: str
    finished_at: str | None
    outcome: str | None
    summary: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class SpoolRecord:
    """A source image's spool file on one host: how many bytes of it are durably written."""

    job: str
    source_id: str
    host: str
    path: str
    source_checksum: str | None
    size: int | None
    bytes_done: int  # the file holds at least these bytes, fsynced, of the source's body
    complete: bool  # every byte is there and hashed to the source's checksum
    updated_at: str


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    id: int
    run_id: int
    job: str
    source_id: str
    target_key: str
    step: str
    started_at: str
    finished_at: str | None
    ok: bool | None  # None while running (or when a run died inside the step)
    detail: Mapping[str, Any]
    error: str | None


@dataclass(frozen=True, kw_only=True)
class PlanTicket:
    """What ``join_plan`` answers: plan ``plan_id`` of ``job``, and whether ``worker`` must
    plan it (``planner``) or it is published and ready to claim from."""

    job: str
    plan_id: int
    worker: str
    planner: bool


@dataclass(frozen=True, kw_only=True)
class PlanRecord:
    """A plan as ``plan_status`` shows it."""

    job: str
    plan_id: int
    planner: str  # the worker that planned (or is planning) it
    started_at: str
    ready_at: str | None  # None while it is being planned
    lease_expires: str  # the planner's lease; once published, until when the plan counts as new
    items: int  # work items published
    open: int  # of those, neither done nor failed
    held: int  # of those, under a live lease


def entry_from_row(row: Sequence[Any]) -> JournalEntry:
    return JournalEntry(**dict(zip(ENTRY_COLUMNS, row, strict=True)))


def check_step(step: str) -> None:
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r} (expected one of {', '.join(STEPS)})")


def check_lease(seconds: float) -> None:
    if not seconds > 0:
        raise ValueError(f"a lease must last a positive number of seconds, got {seconds!r}")


def missing_entries(path: str, job: str, missing: Sequence[ItemKey]) -> LookupError:
    source_id, target_key = missing[0]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return LookupError(f"journal {path}: no entry for {job} {source_id} -> {target_key}{more}")
