"""What a journal holds, as both backends give it back, and what both backends share.

The names of steps and states (``Step``, ``EntryState``); the records (entries, runs, steps,
spools, plans); the keyword groups some ``Journal`` methods take; the checks both backends make
before they write (so they refuse the same calls with the same messages); the journal's
timestamp and JSON text; and ``JournalReads``, the reads of both backends, rows turned into
records given how a backend returns timestamps and JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NotRequired, Required, TypeAlias, TypedDict

from transfer.errors import LeaseLost


class Step(StrEnum):
    """The steps of an item, in the order the pipeline runs them."""

    CREATE = "create"
    UPLOAD = "upload"
    VERIFY = "verify"
    TAGS = "tags"
    PROPERTIES = "properties"
    SHARE = "share"
    ACCEPT = "accept"
    PROTECT = "protect"


class EntryState(StrEnum):
    """Where an entry stands."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


STEPS = tuple(Step)
STATES = tuple(EntryState)

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
    "failed_step",
    "retryable",
    "updated_at",
)
#: Fields ``update_entry`` may change (the key and ``updated_at`` are the journal's own).
UPDATABLE_FIELDS = frozenset(ENTRY_COLUMNS) - {"job", "source_id", "target_key", "updated_at"}

# The columns of the other records, named as their fields, in the order of the fields.
RUN_COLUMNS = ("id", "job", "worker", "started_at", "finished_at", "outcome", "summary")
STEP_COLUMNS = (
    "id",
    "run_id",
    "job",
    "source_id",
    "target_key",
    "step",
    "started_at",
    "finished_at",
    "ok",
    "detail",
    "error",
)
SPOOL_COLUMNS = (
    "job",
    "source_id",
    "host",
    "path",
    "source_checksum",
    "size",
    "bytes_done",
    "complete",
    "updated_at",
)
# How a column's value becomes its field's, beyond what the backend's driver does.
_TIMESTAMPS = frozenset({"started_at", "finished_at", "updated_at", "lease_expires"})
_JSON = frozenset({"summary", "detail"})
_FLAGS = frozenset({"ok", "complete", "retryable"})


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
    state: str  # an EntryState: pending | running | done | failed
    last_step: str | None  # the last Step completed
    bytes_done: int
    md5: str | None
    sha512: str | None
    attempts: int
    last_error: str | None
    #: The step whose failure ``last_error`` reports (None when it did not come from a step).
    failed_step: str | None = None
    #: The last failure was transient (network, timeout, 5xx, 429): another run may succeed.
    #: Meaningful when ``state`` is failed.
    retryable: bool = False
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
class Claim:
    """An item ``claim`` leased to a worker: its key, its fencing token, and the identity of
    its target as the plan fixed it in the journal (never recomputed by the claimer)."""

    key: ItemKey
    #: The fencing token: it grows on every claim, so a worker that lost the item (its lease
    #: ran out and another claimed it) can no longer write it.
    epoch: int
    target_id: str | None
    generation: int
    #: Attempts recorded so far (by every holder).
    attempts: int
    #: How many times a holder's lease on it ran out before the item was finished.
    takeovers: int
    #: This claim took it from a worker whose lease had run out.
    taken_over: bool


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
    failed: int = 0  # of those, failed


# -- keyword groups ------------------------------------------------------------------------
# The implementations take these keyword arguments as one typed mapping (and pass it on to
# their SQL as named parameters); the protocols in ``transfer.journal`` spell them out.


class EntryFacts(TypedDict):
    """``ensure_entry``'s keywords: what planning knows of a pair."""

    source_name: str | None
    source_checksum: str | None
    source_size: int | None
    target_id: str | None
    generation: int


class Ended(TypedDict, total=False):
    """``step_finished``'s keywords: how a step ended, the writer's fencing token, the step
    that starts in the same transaction (``then``) and entry fields set with it (``fields``)."""

    ok: Required[bool]
    detail: Mapping[str, Any] | None
    error: str | None
    fence: int | None
    then: str | None
    fields: Mapping[str, Any] | None


def step_changes(
    start: str | None, end: tuple[str, bool, str | None] | None, fields: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The entry's fields one step write sets, checked: a step's ``end`` (name, ok, error)
    first, then the caller's ``fields``, then a step's ``start`` (the entry becomes running)."""
    changes: dict[str, Any] = {}
    if end is not None:
        name, ok, error = end
        changes = (
            {"last_step": name, "last_error": None, "failed_step": None}
            if ok
            else {"last_error": error, "failed_step": name}
        )
    changes.update(entry_changes(fields or {}))
    if start is not None:
        changes["state"] = EntryState.RUNNING.value
    return changes


class SpoolFacts(TypedDict):
    """``save_spool``'s keywords: the record of one spool file."""

    path: str
    source_checksum: str | None
    size: int | None
    bytes_done: int
    complete: bool


class ClaimTerms(TypedDict):
    """``claim``'s keywords."""

    limit: int
    lease_seconds: float
    plan_id: NotRequired[int | None]
    max_takeovers: NotRequired[int]


# -- checks --------------------------------------------------------------------------------


def check_step(step: str) -> str:
    """The step's name as the journal stores it (a ``Step`` is written as its plain value)."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r} (expected one of {', '.join(STEPS)})")
    return Step(step).value


def entry_changes(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``update_entry``'s fields, checked, sorted by name, steps and states as plain text."""
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"not journal entry fields: {', '.join(sorted(unknown))}")
    changes = {name: fields[name] for name in sorted(fields)}
    if "state" in changes:
        if changes["state"] not in STATES:
            raise ValueError(f"unknown entry state {changes['state']!r}")
        changes["state"] = EntryState(changes["state"]).value
        if changes["state"] == EntryState.FAILED and "retryable" not in changes:
            changes["retryable"] = False  # a failure is for good unless its writer says not
    for name in ("last_step", "failed_step"):
        if changes.get(name) is not None:
            changes[name] = check_step(changes[name])
    if "retryable" in changes:
        changes["retryable"] = bool(changes["retryable"])
    return changes


def check_lease(seconds: float) -> None:
    if not 0 < seconds < float("inf"):
        raise ValueError(f"a lease must last a positive number of seconds, got {seconds!r}")


def no_fence(where: str, fence: int | None) -> None:
    """A journal without a work queue hands out no fencing tokens: a write may not carry one."""
    if fence is not None:
        raise ValueError(f"journal {where} hands out no leases: a write cannot be fenced by one")


def fenced_off(where: str, job: str, key: ItemKey, fence: int, epoch: int) -> LeaseLost:
    """The error for a write whose fencing token is no longer the entry's."""
    return LeaseLost(
        f"journal {where}: {job} {key[0]} -> {key[1]} was taken over by another worker "
        f"(this worker's lease epoch {fence}, the entry's {epoch}); the write was refused"
    )


def missing_entries(where: str, job: str, missing: Sequence[ItemKey]) -> LookupError:
    """The error for writes to entries that do not exist (``where`` names the journal)."""
    source_id, target_key = missing[0]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return LookupError(f"journal {where}: no entry for {job} {source_id} -> {target_key}{more}")


# -- values --------------------------------------------------------------------------------


def stamp(moment: datetime) -> str:
    """The journal's timestamp text: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_text(value: Any) -> str:
    # What JSON cannot encode is kept as its str.
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def json_object(value: Any) -> dict[str, Any]:
    """A decoded JSON value as the records hold it: an object, or wrapped in one."""
    return value if isinstance(value, dict) else {"value": value}


def upsert(table: str, columns: Sequence[str], values: Sequence[str], *, key: int) -> str:
    """An INSERT of one row (``values``: an SQL expression per column) that replaces the other
    columns of the row with the same first ``key`` columns, if there is one (SQLite and
    PostgreSQL both speak this SQL)."""
    update = ", ".join(f"{column} = excluded.{column}" for column in columns[key:])
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values)}) "
        f"ON CONFLICT ({', '.join(columns[:key])}) DO UPDATE SET {update}"
    )


#: A backend's way to run one query: its SQL and parameters in, the rows it selects out.
Rows: TypeAlias = Callable[[str, Sequence[Any]], Awaitable[Sequence[Sequence[Any]]]]


class JournalReads:
    """The ``Journal``'s reads, the same on both backends (their base class): one query each,
    run by the backend's ``rows`` and written with its driver's parameter ``mark``; rows
    become records through ``stamp`` (the backend's timestamp as the journal's text) and
    ``json`` (its JSON column decoded).  ``entry_select`` is what ``entries`` selects:
    ``ENTRY_COLUMNS``, maybe followed by the lease's owner and expiry."""

    def __init__(
        self,
        *,
        rows: Rows,
        mark: str,
        stamp: Callable[[Any], str],
        json: Callable[[Any], dict[str, Any]],
        entry_select: str = ", ".join(ENTRY_COLUMNS),
    ) -> None:
        self._rows = rows
        self._mark = mark
        self._stamp = stamp
        self._json = json
        self._entry_select = entry_select

    async def runs(self, job: str | None = None, limit: int = 20) -> list[RunRecord]:
        m = self._mark
        where, args = ("", (limit,)) if job is None else (f"WHERE job = {m} ", (job, limit))
        query = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs {where}ORDER BY id DESC LIMIT {m}"
        return [self._run(row) for row in await self._rows(query, args)]

    async def entries(self, job: str) -> dict[ItemKey, JournalEntry]:
        query = f"SELECT {self._entry_select} FROM entries WHERE job = {self._mark}"
        return {(row[1], row[2]): self._entry(row) for row in await self._rows(query, (job,))}

    async def state_counts(self, job: str) -> dict[str, int]:
        query = f"SELECT state, COUNT(*) FROM entries WHERE job = {self._mark} GROUP BY state"
        return {state: int(count) for state, count in await self._rows(query, (job,))}

    async def steps(self, job: str, source_id: str, target_key: str) -> list[StepRecord]:
        m = self._mark
        query = (
            f"SELECT {', '.join(STEP_COLUMNS)} FROM steps "
            f"WHERE job = {m} AND source_id = {m} AND target_key = {m} ORDER BY id"
        )
        return [self._step(row) for row in await self._rows(query, (job, source_id, target_key))]

    async def jobs(self) -> list[str]:
        query = "SELECT job FROM runs UNION SELECT job FROM entries ORDER BY 1"
        return [row[0] for row in await self._rows(query, ())]

    async def spools(self, job: str, host: str | None = None) -> list[SpoolRecord]:
        m = self._mark
        rest = "ORDER BY source_id, host" if host is None else f"AND host = {m} ORDER BY source_id"
        query = f"SELECT {', '.join(SPOOL_COLUMNS)} FROM spools WHERE job = {m} {rest}"
        args = (job,) if host is None else (job, host)
        return [self._spool(row) for row in await self._rows(query, args)]

    def _entry(self, row: Sequence[Any]) -> JournalEntry:
        """A row of ``entry_select``."""
        fields = self._fields(ENTRY_COLUMNS, row[: len(ENTRY_COLUMNS)])
        lease = row[len(ENTRY_COLUMNS) :]
        if lease:
            fields.update(self._fields(("lease_owner", "lease_expires"), lease))
        return JournalEntry(**fields)

    def _run(self, row: Sequence[Any]) -> RunRecord:
        return RunRecord(**self._fields(RUN_COLUMNS, row))

    def _step(self, row: Sequence[Any]) -> StepRecord:
        return StepRecord(**self._fields(STEP_COLUMNS, row))

    def _spool(self, row: Sequence[Any]) -> SpoolRecord:
        return SpoolRecord(**self._fields(SPOOL_COLUMNS, row))

    def _fields(self, columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
        fields = dict(zip(columns, row, strict=True))
        for name, value in fields.items():
            if name in _JSON:
                fields[name] = self._json(value)  # NULL too: the record holds an object
            elif value is None:
                pass
            elif name in _TIMESTAMPS:
                fields[name] = self._stamp(value)
            elif name in _FLAGS:
                fields[name] = bool(value)
        return fields
