"""The durable job journal: runs, one entry per (job, source image, target), and every step.

Two protocols, because they are two concerns:

- ``Journal``, the record: runs, entries, the history of steps, spool files.  Every write is
  durable when the call returns, so a run killed at any instant finds on restart exactly the
  steps that were finished.
- ``WorkQueue``, the sharing of one job by several workers: plans and leases.  Only a journal
  that several hosts can reach has one (``Journal.work_queue``); on SQLite it is ``None``, and
  the job lock (``transfer.journal.lock``) allows one run per job instead.

``open_journal`` picks the backend from the ``[journal]`` settings.  The modules:

- ``records``: the records, the names of steps and states (``Step``, ``EntryState``), and what
  both backends share (the checks before a write, timestamps, JSON, rows as records);
- ``sqlite``: ``SqliteJournal``, the record in one local SQLite file, and its migrations;
  ``sqlite_connection``: that file (0600, WAL, ``synchronous=FULL``, one worker thread, never
  the event loop);
- ``postgres``: ``PgJournal``, the record in a PostgreSQL database several hosts share, and its
  migrations; ``pg_queue``: ``PgWorkQueue``, its plans and leases; ``pg_connection``: the one
  connection both use (reconnecting, timeouts, migrations, no password in any message);
- ``lock``: the job lock of a local journal;
- ``samples``: the samples running workers write every few seconds (what the live page of
  ``image-transfer serve`` charts), and their reads;
- ``pg_schema``: the PostgreSQL journal's migrations.

How workers share a job through a ``WorkQueue``:

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

Tables: ``runs`` (one per ``image-transfer run``), ``entries`` (the latest state of each
source x target pair), ``steps`` (the history: each step's start and end), ``spools`` (how
much of each spooled source image is safely on disk, per host), ``samples`` (each running
worker's counters every few seconds), ``plans`` (PostgreSQL only), and ``schema_migrations``
(which numbered migrations were applied, each in one transaction).
Nothing secret is ever stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from transfer.journal.records import (
    Claim,
    ItemKey,
    JournalEntry,
    PlanRecord,
    PlanTicket,
    RunRecord,
    SpoolRecord,
    StepRecord,
)
from transfer.journal.samples import Sample, SampleRecord

if TYPE_CHECKING:
    from transfer.config.settings import JournalConfig


class Journal(Protocol):
    """What the engine records; every write is durable when the call returns.

    Opened (created, migrated) by ``async with``; every call outside it is a ``RuntimeError``.
    A journal that cannot be opened, read or written raises ``JournalError`` naming it.
    Steps and states (``records.Step``, ``records.EntryState``) may be given as the enums or
    as their text; they are stored, and read back, as the text.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

    @property
    def work_queue(self) -> WorkQueue | None:
        """How several workers share a job through this journal (None: one host only)."""
        ...

    @property
    def commits(self) -> int:
        """Transactions committed since the journal was opened (what the benchmarks report
        per image)."""
        ...

    # -- runs ------------------------------------------------------------------------------

    async def start_run(self, job: str, worker: str) -> int:
        """Record the start of a run of ``job`` by ``worker``; returns the run's id."""
        ...

    async def finish_run(self, run_id: int, outcome: str, summary: Mapping[str, Any]) -> None:
        """Record a run's end, its outcome and its summary (JSON-able values)."""
        ...

    async def runs(self, job: str | None = None, limit: int = 20) -> list[RunRecord]:
        """The latest runs (of one job, or of every job), newest first."""
        ...

    # -- entries ---------------------------------------------------------------------------

    async def entries(self, job: str) -> dict[ItemKey, JournalEntry]:
        """Every entry of a job, keyed by (source_id, target_key)."""
        ...

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
    ) -> JournalEntry:
        """Create the entry, or refresh an existing one's source fields and target id.

        When the target id changes (a new generation), the progress recorded for the old
        target (last step, bytes, hashes, state) is reset; attempts, history and any lease are
        kept.  A ``target_id`` of None leaves the recorded one (and the generation) alone.
        """
        ...

    async def update_entry(
        self,
        job: str,
        source_id: str,
        target_key: str,
        /,
        *,
        fence: int | None = None,
        **fields: Any,
    ) -> None:
        """Set some of an entry's fields (names from ``records.UPDATABLE_FIELDS``).

        An unknown field, state or step is a ``ValueError``; a missing entry a ``LookupError``.
        ``fence`` (a claim's epoch, on a journal with a work queue) makes the write conditional:
        once another worker has claimed the entry, it is refused with ``LeaseLost``.  The same
        holds for ``step_started`` and ``step_finished``.
        """
        ...

    async def state_counts(self, job: str) -> dict[str, int]:
        """How many entries of a job are in each state."""
        ...

    # -- steps -----------------------------------------------------------------------------

    async def step_started(
        self,
        job: str,
        source_id: str,
        target_key: str,
        step: str,
        run_id: int,
        *,
        fence: int | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a step's start; the entry becomes ``running``.  ``fields`` (as
        ``update_entry``'s) are set in the same transaction."""
        ...

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
        fence: int | None = None,
        then: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a step's end: on success it becomes the entry's ``last_step``, on failure
        the entry's ``last_error``.  The entry's state (done, failed) is the engine's call.
        A step finished without a recorded start still goes into the history.

        In the same transaction (so a restart finds all of it or none of it): ``fields`` (as
        ``update_entry``'s) are set, and the start of step ``then`` is recorded (as
        ``step_started`` would; the entry becomes ``running``)."""
        ...

    async def steps(self, job: str, source_id: str, target_key: str) -> list[StepRecord]:
        """One entry's step history, oldest first."""
        ...

    # -- whole jobs ------------------------------------------------------------------------

    async def reset_job(self, job: str) -> None:
        """Forget a job's entries, step history, spool records and plans (where it keeps them)
        (``--restart``); its runs stay listed."""
        ...

    async def jobs(self) -> list[str]:
        """Every job the journal knows of, sorted."""
        ...

    # -- samples ---------------------------------------------------------------------------

    async def record_sample(self, sample: Sample) -> None:
        """Record a running worker's counters now (one row, one commit: see
        ``transfer.journal.samples``)."""
        ...

    async def samples(self, job: str, *, since: str | None = None) -> list[SampleRecord]:
        """The samples of a job (those taken at ``since`` or later, a journal timestamp, when
        given), oldest first."""
        ...

    async def clock(self) -> str:
        """The journal's time now, as its timestamps give it (PostgreSQL's clock on a shared
        journal: the hosts' clocks do not matter)."""
        ...

    # -- spool files -----------------------------------------------------------------------

    async def spools(self, job: str, host: str | None = None) -> list[SpoolRecord]:
        """The spool records of a job (of one host, or of every host), by source id."""
        ...

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
    ) -> None:
        """Create or replace the record of one spool file."""
        ...

    async def forget_spool(self, job: str, source_id: str, host: str) -> None:
        """Drop the record of one spool file (the file itself is the caller's to remove)."""
        ...


class WorkQueue(Protocol):
    """Plans and leases: how several workers share one job (see the module docstring)."""

    async def join_plan(
        self, job: str, worker: str, *, lease_seconds: float = 60.0, poll_interval: float = 0.25
    ) -> PlanTicket:
        """Become the planner of a new plan of ``job``, or join the current one.

        A published plan is joined while it still has open items and is alive (a live lease
        on one of them, or published less than ``lease_seconds`` ago); a plan being planned is
        waited for (polling every ``poll_interval`` seconds) and then joined; otherwise (no
        plan, an exhausted or abandoned one, a planner whose lease ran out) a new plan starts
        and ``worker`` is its planner, holding a plan lease of ``lease_seconds``.
        """
        ...

    async def renew_plan(self, ticket: PlanTicket) -> bool:
        """Extend the planner's lease; False when the plan is no longer its to publish."""
        ...

    async def publish_plan(self, ticket: PlanTicket, items: Iterable[ItemKey]) -> int:
        """Publish the planner's work items (their entries must exist), in the order to work
        them; returns how many.  Raises ``LeaseLost`` when another worker took over."""
        ...

    async def plan_status(self, job: str, plan_id: int | None = None) -> PlanRecord | None:
        """The job's latest plan (or plan ``plan_id``), with its item counts."""
        ...

    async def claim(
        self,
        job: str,
        worker: str,
        *,
        limit: int,
        lease_seconds: float,
        plan_id: int | None = None,
        max_takeovers: int = 3,
    ) -> list[Claim]:
        """Lease up to ``limit`` open items of the job's published plan that nobody holds
        (including those whose lease ran out: their worker died) to ``worker``, in the
        planner's order.

        Each claim makes the item's epoch grow (the claim's fencing token: the holder's writes
        carry it, and a stale holder's are refused) and carries the item's journaled target id
        and generation.  An item taken over (its last lease ran out) more than
        ``max_takeovers`` times is failed with that reason instead of handed out again.

        ``plan_id`` (from the ticket) makes sure the items come from the plan the worker
        joined: once a newer plan is published, an older one has nothing to hand out.
        """
        ...

    async def renew(
        self, job: str, worker: str, held: Mapping[ItemKey, int], lease_seconds: float
    ) -> set[ItemKey]:
        """Extend ``worker``'s leases on these items (item -> its claim's epoch); returns those
        it still holds (an item missing from the answer was taken over: stop working on it)."""
        ...

    async def release(self, job: str, worker: str, held: Mapping[ItemKey, int]) -> None:
        """Give up ``worker``'s leases on these items (item -> its claim's epoch; others'
        leases, and later claims, are left alone); an item released before it was done or
        failed can be claimed again, and its release is not a takeover."""
        ...


def open_journal(config: JournalConfig) -> Journal:
    """The journal ``[journal]`` names: PostgreSQL when ``url`` is set, else the SQLite file
    at ``path`` (opened, created or migrated by ``async with``)."""
    if config.url is not None:
        # Imported here: psycopg loads only for those who use it.
        from transfer.journal.postgres import PgJournal

        # A call that outlasts two leases is no use to a worker holding leases: with short
        # leases every wait is shorter, so that a worker cut off from the database stops soon.
        lease = config.lease.lease_seconds
        return PgJournal(
            config.url,
            password=config.password,
            timeout=min(30.0, max(5.0, 2 * lease)),
            connect_timeout=min(10.0, max(2.0, lease)),
            reconnect=min(10.0, max(2.0, lease)),
        )
    from transfer.journal.sqlite import SqliteJournal

    return SqliteJournal(config.path)
