"""The durable job journal: runs, one entry per (job, source image, target), and every step.

``Journal`` is the async interface the engine uses; ``SqliteJournal`` implements it on one
local SQLite file, ``transfer.journal.postgres.PgJournal`` on a PostgreSQL database several hosts
share; ``open_configured`` picks one from the ``[journal]`` settings.  Every write is
committed durably (WAL, ``synchronous=FULL``) before the call returns, so a run killed at any
instant finds on restart exactly the steps that were finished.  SQLite runs in one worker
thread at a time, never in the event loop, so an fsync never stalls the transfers.

Work sharing (the same calls on both backends, so the engine has one code path):

- **Planning once.**  ``join_plan`` makes one worker the planner of a new plan (it plans,
  ``ensure_entry``s every item needing work, then ``publish_plan``s their keys) and has the
  others wait until that plan is published; ``renew_plan`` keeps a long planning alive.  A
  planner that dies loses its plan lease and a waiting worker plans instead.
- **Leases.**  ``claim`` hands out published items nobody holds, each under a lease;
  ``renew`` extends the leases a worker still holds and tells it which ones it lost;
  ``release`` gives them back.  An item whose worker died (lease expired) is claimed by
  another and resumes from its journaled steps.
- **Failed items** (``state = failed``) are not claimable again in the plan they failed in;
  the next plan re-queues them (``publish_plan`` turns a re-planned ``done`` or ``failed``
  entry back into ``pending``), so a later run retries them and this one does not loop.

SQLite serves one process on one host (the job lock sees to that): its plans and leases live
in the memory of that ``SqliteJournal`` and end with it, with the same semantics.

Tables: ``runs`` (one per ``image-transfer run``), ``entries`` (the latest state of each
source x target pair), ``steps`` (the history: each step's start and end), ``spools`` (how
much of each spooled source image is safely on disk, per host), and ``schema_migrations``
(which numbered migrations were applied, each in one transaction).
Nothing secret is ever stored.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from transfer.journal.records import (
    ItemKey,
    JournalEntry,
    PlanRecord,
    PlanTicket,
    RunRecord,
    SpoolRecord,
    StepRecord,
)

if TYPE_CHECKING:
    from transfer.config.settings import JournalConfig


class Journal(Protocol):
    """What the engine needs from a journal; every write is durable when the call returns."""

    #: Whether several workers (hosts) may work one job through this journal at once.
    coordinates_workers: bool

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def start_run(self, job: str, worker: str) -> int: ...

    async def finish_run(self, run_id: int, outcome: str, summary: Mapping[str, Any]) -> None: ...

    async def entries(self, job: str) -> dict[tuple[str, str], JournalEntry]: ...

    async def ensure_entry(
        self,
        job: str,
        source_id: str,
        target_key: str,
        *,
        source_name: str | None,
        source_checksum: str | None,
        source_size: int | None,
        target_id: str | None,
        generation: int,
    ) -> JournalEntry: ...

    async def update_entry(
        self, job: str, source_id: str, target_key: str, /, **fields: Any
    ) -> None: ...

    async def step_started(
        self, job: str, source_id: str, target_key: str, step: str, run_id: int
    ) -> None: ...

    async def step_finished(
        self,
        job: str,
        source_id: str,
        target_key: str,
        step: str,
        run_id: int,
        *,
        ok: bool,
        detail: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None: ...

    async def runs(self, job: str | None = None, limit: int = 20) -> list[RunRecord]: ...

    async def steps(self, job: str, source_id: str, target_key: str) -> list[StepRecord]: ...

    async def state_counts(self, job: str) -> dict[str, int]: ...

    async def reset_job(self, job: str) -> None: ...

    async def jobs(self) -> list[str]: ...

    async def spools(self, job: str, host: str | None = None) -> list[SpoolRecord]: ...

    async def save_spool(
        self,
        job: str,
        source_id: str,
        host: str,
        *,
        path: str,
        source_checksum: str | None,
        size: int | None,
        bytes_done: int,
        complete: bool,
    ) -> None: ...

    async def forget_spool(self, job: str, source_id: str, host: str) -> None: ...

    # -- work sharing (see the module docstring) --------------------------------------------

    async def join_plan(
        self, job: str, worker: str, *, lease_seconds: float = 60.0, poll_interval: float = 0.25
    ) -> PlanTicket: ...

    async def renew_plan(self, ticket: PlanTicket) -> bool: ...

    async def publish_plan(self, ticket: PlanTicket, items: Iterable[ItemKey]) -> int: ...

    async def plan_status(self, job: str, plan_id: int | None = None) -> PlanRecord | None: ...

    async def claim(
        self,
        job: str,
        worker: str,
        *,
        limit: int,
        lease_seconds: float,
        plan_id: int | None = None,
    ) -> list[ItemKey]: ...

    async def renew(
        self, job: str, worker: str, items: Collection[ItemKey], lease_seconds: float
    ) -> set[ItemKey]: ...

    async def release(self, job: str, worker: str, items: Collection[ItemKey]) -> None: ...


def open_journal(config: JournalConfig) -> Journal:
    """The journal ``[journal]`` names: PostgreSQL when ``url`` is set, else the SQLite file
    at ``path`` (opened, created or migrated by ``async with``)."""
    if config.url is not None:
        # Imported here: psycopg loads only for those who use it.
        from transfer.journal.postgres import PgJournal

        return PgJournal(config.url, password=config.password)
    from transfer.journal.sqlite import SqliteJournal

    return SqliteJournal(config.path)
