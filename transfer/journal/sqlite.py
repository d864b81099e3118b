"""The journal in one SQLite file (see ``transfer.journal`` for what it promises)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.to_thread

from transfer.errors import LeaseLost, TransferError

if TYPE_CHECKING:
    pass

from transfer.journal.records import (
    _T,
    ENTRY_COLUMNS,
    OPEN_STATES,
    STATES,
    UPDATABLE_FIELDS,
    ItemKey,
    JournalEntry,
    PlanRecord,
    PlanTicket,
    RunRecord,
    SpoolRecord,
    StepRecord,
    check_lease,
    check_step,
    entry_from_row,
    missing_entries,
)

# Each migration is a tuple of statements applied in one transaction; never edit a published
# one, append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job TEXT NOT NULL,
            worker TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            outcome TEXT,
            summary TEXT
        )""",
        "CREATE INDEX runs_by_job ON runs (job, id)",
        """CREATE TABLE entries (
            job TEXT NOT NULL,
            source_id TEXT NOT NULL,
            target_key TEXT NOT NULL,
            source_name TEXT,
            source_checksum TEXT,
            source_size INTEGER,
            target_id TEXT,
            generation INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending',
            last_step TEXT,
            bytes_done INTEGER NOT NULL DEFAULT 0,
            md5 TEXT,
            sha512 TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (job, source_id, target_key)
        ) WITHOUT ROWID""",
        "CREATE INDEX entries_by_state ON entries (job, state)",
        """CREATE TABLE steps (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs (id),
            job TEXT NOT NULL,
            source_id TEXT NOT NULL,
            target_key TEXT NOT NULL,
            step TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            ok INTEGER,
            detail TEXT,
            error TEXT
        )""",
        "CREATE INDEX steps_by_entry ON steps (job, source_id, target_key, id)",
        "CREATE INDEX steps_by_run ON steps (run_id)",
    ),
    # 2: spool files (see ``transfer.engine.spool``): one per source image and host, since a spool
    # lives on one host's disk while a shared journal may serve several hosts.
    (
        """CREATE TABLE spools (
            job TEXT NOT NULL,
            source_id TEXT NOT NULL,
            host TEXT NOT NULL,
            path TEXT NOT NULL,
            source_checksum TEXT,
            size INTEGER,
            bytes_done INTEGER NOT NULL DEFAULT 0,
            complete INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (job, source_id, host)
        ) WITHOUT ROWID""",
    ),
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: Mapping[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(dict(value), sort_keys=True, default=str, separators=(",", ":"))


def _loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


@dataclass(kw_only=True)
class _MemoryPlan:
    """The latest plan of one job in an SQLite journal (one process: memory is enough)."""

    plan_id: int
    job: str
    planner: str
    lease_seconds: float
    started_at: str
    deadline: float  # time.monotonic() when the planner's lease (or the plan's newness) ends
    ready_at: str | None = None
    members: dict[ItemKey, int] = field(default_factory=dict)  # published key -> rank
    queue: deque[ItemKey] = field(default_factory=deque)  # published, never claimed yet


def _wall_clock(deadline: float) -> str:
    """A ``time.monotonic()`` instant as the journal's UTC timestamp text."""
    moment = datetime.now(UTC) + timedelta(seconds=deadline - time.monotonic())
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SqliteJournal:
    """The journal in one SQLite file (WAL mode; the file and its -wal/-shm are mode 0600)."""

    #: One host's file: one run per job at a time (the job lock), no claiming needed.
    work_queue = None

    def __init__(
        self,
        path: Path,
        *,
        migrations: Sequence[Sequence[str]] = MIGRATIONS,
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = path
        self._migrations = migrations
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        # Work sharing within this one process: each job's latest plan (maybe still being
        # planned) and latest published plan (the one claims come from), and the leases by
        # (job, source_id, target_key) -> (worker, time.monotonic() deadline).
        self._plans: dict[str, _MemoryPlan] = {}
        self._published: dict[str, _MemoryPlan] = {}
        self._leases: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._plan_ids = itertools.count(1)
        self._share_lock: anyio.Lock | None = None

    # -- plumbing --------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        # Not abandoned on cancel: a write that started is committed (or not) before the
        # cancellation is delivered, so the journal never depends on where a task was stopped.
        return await anyio.to_thread.run_sync(
            functools.partial(self._guarded, fn, *args), limiter=self._limiter
        )

    def _guarded(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            raise TransferError(
                f"journal {self.path}: {exc} (is its disk full or read-only?)"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise TransferError(f"journal {self.path}: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the journal is not open: use 'async with'")
        return self._conn

    def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    # -- opening ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._call(self._open)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._call(self._close)

    def _open(self) -> None:
        path = self.path
        try:
            if not path.parent.exists():
                path.parent.mkdir(parents=True, mode=0o700)
            # Created 0600 before SQLite touches it: SQLite gives -wal and -shm the mode of
            # the database file, so no process-wide umask change is needed.
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise TransferError(f"journal {path}: cannot create: {exc.strerror}") from None
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout
            )
        except sqlite3.Error as exc:
            raise TransferError(f"journal {path}: cannot open: {exc}") from None
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise TransferError(f"journal {path}: cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
            self._migrate(conn)
        except sqlite3.OperationalError as exc:
            # I/O trouble (a full or read-only disk), not a foreign file.
            conn.close()
            self._conn = None
            raise TransferError(
                f"journal {path}: cannot use it: {exc} (is its disk full or read-only?)"
            ) from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._conn = None
            raise TransferError(f"journal {path}: not an image-transfer journal ({exc})") from None
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _version(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        return int(row[0])

    def _migrate(self, conn: sqlite3.Connection) -> None:
        def prepare(conn: sqlite3.Connection) -> int:
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if "schema_migrations" not in tables:
                if tables - {"sqlite_sequence"}:
                    raise TransferError(
                        f"journal {self.path}: an SQLite database of something else "
                        f"(tables: {', '.join(sorted(tables))}), not an image-transfer journal"
                    )
                conn.execute(
                    "CREATE TABLE schema_migrations ("
                    "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
            return self._version(conn)

        known = len(self._migrations)
        version = self._write(prepare)
        if version > known:
            raise TransferError(
                f"journal {self.path}: schema version {version} is newer than this "
                f"image-transfer knows ({known}); upgrade image-transfer to use it"
            )
        for number in range(version + 1, known + 1):

            def apply(conn: sqlite3.Connection, number: int = number) -> None:
                # Another process may have applied it while this one waited for the lock.
                if self._version(conn) >= number:
                    return
                for statement in self._migrations[number - 1]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (number, _now()),
                )

            self._write(apply)

    # -- runs ------------------------------------------------------------------------------

    async def start_run(self, job: str, worker: str) -> int:
        def write(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO runs (job, worker, started_at) VALUES (?, ?, ?)",
                (job, worker, _now()),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        return await self._call(self._write, write)

    async def finish_run(self, run_id: int, outcome: str, summary: Mapping[str, Any]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ?",
                (_now(), outcome, _dumps(summary), run_id),
            )
            if cursor.rowcount == 0:
                raise LookupError(f"journal {self.path}: no run {run_id}")

        await self._call(self._write, write)

    async def runs(self, job: str | None = None, limit: int = 20) -> list[RunRecord]:
        """The latest runs, newest first."""

        def read() -> list[RunRecord]:
            columns = "id, job, worker, started_at, finished_at, outcome, summary"
            if job is None:
                rows = self._db.execute(
                    f"SELECT {columns} FROM runs ORDER BY id DESC LIMIT ?", (limit,)
                )
            else:
                rows = self._db.execute(
                    f"SELECT {columns} FROM runs WHERE job = ? ORDER BY id DESC LIMIT ?",
                    (job, limit),
                )
            return [
                RunRecord(
                    id=r[0],
                    job=r[1],
                    worker=r[2],
                    started_at=r[3],
                    finished_at=r[4],
                    outcome=r[5],
                    summary=_loads(r[6]),
                )
                for r in rows.fetchall()
            ]

        return await self._call(read)

    # -- entries ---------------------------------------------------------------------------

    async def entries(self, job: str) -> dict[tuple[str, str], JournalEntry]:
        """Every entry of a job, keyed by (source_id, target_key)."""

        def read() -> dict[tuple[str, str], JournalEntry]:
            rows = self._db.execute(
                f"SELECT {', '.join(ENTRY_COLUMNS)} FROM entries WHERE job = ?", (job,)
            ).fetchall()
            return {(row[1], row[2]): entry_from_row(row) for row in rows}

        found = await self._call(read)
        now = time.monotonic()
        for (lease_job, source_id, target_key), (owner, deadline) in self._leases.items():
            key = (source_id, target_key)
            if lease_job == job and deadline > now and key in found:
                found[key] = dataclasses.replace(
                    found[key], lease_owner=owner, lease_expires=_wall_clock(deadline)
                )
        return found

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
        target (last step, bytes, hashes) is reset; attempts and history are kept.
        """

        def write(conn: sqlite3.Connection) -> JournalEntry:
            now = _now()
            conn.execute(
                """INSERT INTO entries (job, source_id, target_key, source_name,
                       source_checksum, source_size, target_id, generation, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (job, source_id, target_key) DO UPDATE SET
                       source_name = excluded.source_name,
                       source_checksum = excluded.source_checksum,
                       source_size = excluded.source_size,
                       last_step = CASE WHEN excluded.target_id IS NOT NULL
                           AND excluded.target_id IS NOT target_id THEN NULL ELSE last_step END,
                       bytes_done = CASE WHEN excluded.target_id IS NOT NULL
                           AND excluded.target_id IS NOT target_id THEN 0 ELSE bytes_done END,
                       md5 = CASE WHEN excluded.target_id IS NOT NULL
                           AND excluded.target_id IS NOT target_id THEN NULL ELSE md5 END,
                       sha512 = CASE WHEN excluded.target_id IS NOT NULL
                           AND excluded.target_id IS NOT target_id THEN NULL ELSE sha512 END,
                       state = CASE WHEN excluded.target_id IS NOT NULL
                           AND excluded.target_id IS NOT target_id THEN 'pending' ELSE state END,
                       generation = CASE WHEN excluded.target_id IS NOT NULL
                           THEN excluded.generation ELSE generation END,
                       target_id = COALESCE(excluded.target_id, target_id),
                       updated_at = excluded.updated_at""",
                (
                    job,
                    source_id,
                    target_key,
                    source_name,
                    source_checksum,
                    source_size,
                    target_id,
                    generation,
                    now,
                ),
            )
            row = conn.execute(
                f"SELECT {', '.join(ENTRY_COLUMNS)} FROM entries "
                "WHERE job = ? AND source_id = ? AND target_key = ?",
                (job, source_id, target_key),
            ).fetchone()
            return entry_from_row(row)

        return await self._call(self._write, write)

    async def update_entry(
        self, job: str, source_id: str, target_key: str, /, **fields: Any
    ) -> None:
        """Set some of an entry's fields (names from ``UPDATABLE_FIELDS``)."""
        unknown = set(fields) - UPDATABLE_FIELDS
        if unknown:
            raise ValueError(f"not journal entry fields: {', '.join(sorted(unknown))}")
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown entry state {fields['state']!r}")
        if fields.get("last_step") is not None:
            check_step(fields["last_step"])
        names = sorted(fields)

        def write(conn: sqlite3.Connection) -> None:
            assignments = ", ".join(f"{name} = ?" for name in [*names, "updated_at"])
            cursor = conn.execute(
                f"UPDATE entries SET {assignments} "
                "WHERE job = ? AND source_id = ? AND target_key = ?",
                (*(fields[n] for n in names), _now(), job, source_id, target_key),
            )
            if cursor.rowcount == 0:
                raise LookupError(
                    f"journal {self.path}: no entry for {job} {source_id} -> {target_key}"
                )

        await self._call(self._write, write)

    async def state_counts(self, job: str) -> dict[str, int]:
        """How many entries of a job are in each state."""

        def read() -> dict[str, int]:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM entries WHERE job = ? GROUP BY state", (job,)
            ).fetchall()
            return {state: count for state, count in rows}

        return await self._call(read)

    # -- steps -----------------------------------------------------------------------------

    async def step_started(
        self, job: str, source_id: str, target_key: str, step: str, run_id: int
    ) -> None:
        """Record a step's start; the entry becomes ``running``."""
        check_step(step)

        def write(conn: sqlite3.Connection) -> None:
            now = _now()
            cursor = conn.execute(
                "UPDATE entries SET state = 'running', updated_at = ? "
                "WHERE job = ? AND source_id = ? AND target_key = ?",
                (now, job, source_id, target_key),
            )
            if cursor.rowcount == 0:
                raise LookupError(
                    f"journal {self.path}: no entry for {job} {source_id} -> {target_key}"
                )
            conn.execute(
                "INSERT INTO steps (run_id, job, source_id, target_key, step, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, job, source_id, target_key, step, now),
            )

        await self._call(self._write, write)

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
    ) -> None:
        """Record a step's end: on success it becomes the entry's ``last_step``, on failure
        the entry's ``last_error``.  The entry's state (done, failed) is the engine's call."""
        check_step(step)

        def write(conn: sqlite3.Connection) -> None:
            now = _now()
            if ok:
                cursor = conn.execute(
                    "UPDATE entries SET last_step = ?, last_error = NULL, updated_at = ? "
                    "WHERE job = ? AND source_id = ? AND target_key = ?",
                    (step, now, job, source_id, target_key),
                )
            else:
                cursor = conn.execute(
                    "UPDATE entries SET last_error = ?, updated_at = ? "
                    "WHERE job = ? AND source_id = ? AND target_key = ?",
                    (error, now, job, source_id, target_key),
                )
            if cursor.rowcount == 0:
                raise LookupError(
                    f"journal {self.path}: no entry for {job} {source_id} -> {target_key}"
                )
            values = (now, 1 if ok else 0, _dumps(detail), error)
            open_step = conn.execute(
                "SELECT MAX(id) FROM steps WHERE job = ? AND source_id = ? AND target_key = ? "
                "AND step = ? AND run_id = ? AND finished_at IS NULL",
                (job, source_id, target_key, step, run_id),
            ).fetchone()[0]
            if open_step is not None:
                conn.execute(
                    "UPDATE steps SET finished_at = ?, ok = ?, detail = ?, error = ? WHERE id = ?",
                    (*values, open_step),
                )
            else:  # a step finished without a recorded start still belongs in the history
                conn.execute(
                    "INSERT INTO steps (run_id, job, source_id, target_key, step, started_at, "
                    "finished_at, ok, detail, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, job, source_id, target_key, step, now, *values),
                )

        await self._call(self._write, write)

    async def steps(self, job: str, source_id: str, target_key: str) -> list[StepRecord]:
        """One entry's step history, oldest first."""

        def read() -> list[StepRecord]:
            rows = self._db.execute(
                "SELECT id, run_id, job, source_id, target_key, step, started_at, finished_at, "
                "ok, detail, error FROM steps "
                "WHERE job = ? AND source_id = ? AND target_key = ? ORDER BY id",
                (job, source_id, target_key),
            ).fetchall()
            return [
                StepRecord(
                    id=r[0],
                    run_id=r[1],
                    job=r[2],
                    source_id=r[3],
                    target_key=r[4],
                    step=r[5],
                    started_at=r[6],
                    finished_at=r[7],
                    ok=None if r[8] is None else bool(r[8]),
                    detail=_loads(r[9]),
                    error=r[10],
                )
                for r in rows
            ]

        return await self._call(read)

    # -- whole jobs ------------------------------------------------------------------------

    async def reset_job(self, job: str) -> None:
        """Forget a job's entries, step history and spool records (``--restart``); its runs
        stay listed."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM steps WHERE job = ?", (job,))
            conn.execute("DELETE FROM entries WHERE job = ?", (job,))
            conn.execute("DELETE FROM spools WHERE job = ?", (job,))

        await self._call(self._write, write)
        self._plans.pop(job, None)
        self._published.pop(job, None)
        for lease in [lease for lease in self._leases if lease[0] == job]:
            del self._leases[lease]

    async def jobs(self) -> list[str]:
        """Every job the journal knows of, sorted."""

        def read() -> list[str]:
            rows = self._db.execute(
                "SELECT job FROM runs UNION SELECT job FROM entries ORDER BY 1"
            ).fetchall()
            return [row[0] for row in rows]

        return await self._call(read)

    # -- spool files -----------------------------------------------------------------------

    async def spools(self, job: str, host: str | None = None) -> list[SpoolRecord]:
        """The spool records of a job (of one host, or of every host), by source id."""

        def read() -> list[SpoolRecord]:
            columns = (
                "job, source_id, host, path, source_checksum, size, bytes_done, complete, "
                "updated_at"
            )
            if host is None:
                rows = self._db.execute(
                    f"SELECT {columns} FROM spools WHERE job = ? ORDER BY source_id, host",
                    (job,),
                )
            else:
                rows = self._db.execute(
                    f"SELECT {columns} FROM spools WHERE job = ? AND host = ? ORDER BY source_id",
                    (job, host),
                )
            return [
                SpoolRecord(
                    job=r[0],
                    source_id=r[1],
                    host=r[2],
                    path=r[3],
                    source_checksum=r[4],
                    size=r[5],
                    bytes_done=r[6],
                    complete=bool(r[7]),
                    updated_at=r[8],
                )
                for r in rows.fetchall()
            ]

        return await self._call(read)

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

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                """INSERT INTO spools (job, source_id, host, path, source_checksum, size,
                       bytes_done, complete, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (job, source_id, host) DO UPDATE SET
                       path = excluded.path,
                       source_checksum = excluded.source_checksum,
                       size = excluded.size,
                       bytes_done = excluded.bytes_done,
                       complete = excluded.complete,
                       updated_at = excluded.updated_at""",
                (
                    job,
                    source_id,
                    host,
                    path,
                    source_checksum,
                    size,
                    bytes_done,
                    1 if complete else 0,
                    _now(),
                ),
            )

        await self._call(self._write, write)

    async def forget_spool(self, job: str, source_id: str, host: str) -> None:
        """Drop the record of one spool file (the file itself is the caller's to remove)."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM spools WHERE job = ? AND source_id = ? AND host = ?",
                (job, source_id, host),
            )

        await self._call(self._write, write)

    # -- work sharing (one process; see the module docstring) ------------------------------

    def _share(self) -> anyio.Lock:
        if self._share_lock is None:
            self._share_lock = anyio.Lock()
        return self._share_lock

    def _open_of(self, job: str, keys: Sequence[ItemKey]) -> set[ItemKey]:
        """Which of these entries are pending or running (neither done nor failed)."""
        found: set[ItemKey] = set()
        for source_id, target_key in keys:
            row = self._db.execute(
                "SELECT state FROM entries WHERE job = ? AND source_id = ? AND target_key = ?",
                (job, source_id, target_key),
            ).fetchone()
            if row is not None and row[0] in OPEN_STATES:
                found.add((source_id, target_key))
        return found

    def _open_members(self, plan: _MemoryPlan) -> set[ItemKey]:
        rows = self._db.execute(
            "SELECT source_id, target_key FROM entries WHERE job = ? AND state IN (?, ?)",
            (plan.job, *OPEN_STATES),
        ).fetchall()
        return {key for key in ((r[0], r[1]) for r in rows) if key in plan.members}

    def _live_lease(self, job: str, key: ItemKey, now: float) -> str | None:
        lease = self._leases.get((job, *key))
        return lease[0] if lease is not None and lease[1] > now else None

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
        check_lease(lease_seconds)
        waited: int | None = None
        while True:
            async with self._share():
                plan = self._plans.get(job)
                now = time.monotonic()
                if plan is not None and plan.ready_at is None and plan.deadline > now:
                    waited = plan.plan_id  # being planned: wait for it
                elif (
                    plan is not None
                    and plan.ready_at is not None
                    and (plan.plan_id == waited or await self._plan_alive(plan, now))
                ):
                    return PlanTicket(job=job, plan_id=plan.plan_id, worker=worker, planner=False)
                else:
                    started = _MemoryPlan(
                        plan_id=next(self._plan_ids),
                        job=job,
                        planner=worker,
                        lease_seconds=lease_seconds,
                        started_at=_now(),
                        deadline=now + lease_seconds,
                    )
                    self._plans[job] = started
                    return PlanTicket(job=job, plan_id=started.plan_id, worker=worker, planner=True)
            await anyio.sleep(poll_interval)

    async def _plan_alive(self, plan: _MemoryPlan, now: float) -> bool:
        open_keys = await self._call(self._open_members, plan)
        if not open_keys:
            return False
        return plan.deadline > now or any(self._live_lease(plan.job, k, now) for k in open_keys)

    def _planning(self, ticket: PlanTicket) -> _MemoryPlan | None:
        plan = self._plans.get(ticket.job)
        if (
            plan is None
            or plan.plan_id != ticket.plan_id
            or plan.planner != ticket.worker
            or plan.ready_at is not None
        ):
            return None
        return plan

    async def renew_plan(self, ticket: PlanTicket) -> bool:
        """Extend the planner's lease; False when the plan is no longer its to publish."""
        async with self._share():
            plan = self._planning(ticket)
            if plan is None:
                return False
            plan.deadline = time.monotonic() + plan.lease_seconds
            return True

    async def publish_plan(self, ticket: PlanTicket, items: Iterable[ItemKey]) -> int:
        """Publish the planner's work items (their entries must exist), in the order to work
        them; returns how many.  Raises ``LeaseLost`` when another worker took over."""
        keys = list(dict.fromkeys(items))
        async with self._share():
            plan = self._planning(ticket)
            if plan is None:
                raise LeaseLost(
                    f"journal {self.path}: plan {ticket.plan_id} of {ticket.job} is no longer "
                    f"{ticket.worker}'s to publish"
                )

            def write(conn: sqlite3.Connection) -> None:
                now = _now()
                missing = []
                for source_id, target_key in keys:
                    cursor = conn.execute(
                        "UPDATE entries SET "
                        "state = CASE WHEN state IN ('done', 'failed') THEN 'pending' "
                        "ELSE state END, "
                        "updated_at = CASE WHEN state IN ('done', 'failed') THEN ? "
                        "ELSE updated_at END "
                        "WHERE job = ? AND source_id = ? AND target_key = ?",
                        (now, ticket.job, source_id, target_key),
                    )
                    if cursor.rowcount == 0:
                        missing.append((source_id, target_key))
                if missing:
                    raise missing_entries(str(self.path), ticket.job, missing)

            await self._call(self._write, write)
            plan.members = {key: rank for rank, key in enumerate(keys)}
            plan.queue = deque(keys)
            plan.ready_at = _now()
            plan.deadline = time.monotonic() + plan.lease_seconds
            self._published[ticket.job] = plan
        return len(keys)

    async def plan_status(self, job: str, plan_id: int | None = None) -> PlanRecord | None:
        """The job's latest plan (or plan ``plan_id``), with its item counts."""
        async with self._share():
            plan = self._plans.get(job)
            if plan_id is not None and (plan is None or plan.plan_id != plan_id):
                plan = self._published.get(job)
            if plan is None or (plan_id is not None and plan.plan_id != plan_id):
                return None
            open_keys = await self._call(self._open_members, plan)
            now = time.monotonic()
            return PlanRecord(
                job=job,
                plan_id=plan.plan_id,
                planner=plan.planner,
                started_at=plan.started_at,
                ready_at=plan.ready_at,
                lease_expires=_wall_clock(plan.deadline),
                items=len(plan.members),
                open=len(open_keys),
                held=sum(1 for key in plan.members if self._live_lease(job, key, now)),
            )

    async def claim(
        self,
        job: str,
        worker: str,
        *,
        limit: int,
        lease_seconds: float,
        plan_id: int | None = None,
    ) -> list[ItemKey]:
        """Lease up to ``limit`` open items of the job's published plan that nobody holds
        (including those whose lease ran out: their worker died) to ``worker``.

        ``plan_id`` (from the ticket) makes sure the items come from the plan the worker
        joined: once a newer plan is published, an older one has nothing to hand out.
        """
        check_lease(lease_seconds)
        if limit < 1:
            return []
        async with self._share():
            plan = self._published.get(job)
            if plan is None or (plan_id is not None and plan.plan_id != plan_id):
                return []
            now = time.monotonic()
            # Takeovers first: their work is the oldest and partly done.
            expired = sorted(
                (
                    (source_id, target_key)
                    for (lease_job, source_id, target_key), (_, deadline) in self._leases.items()
                    if lease_job == job
                    and deadline <= now
                    and (source_id, target_key) in plan.members
                ),
                key=plan.members.__getitem__,
            )
            still_open = await self._call(self._open_of, job, expired)
            claimed: list[ItemKey] = []
            for key in expired:
                if key not in still_open:
                    del self._leases[(job, *key)]  # finished: the lease guards nothing
                elif len(claimed) < limit:
                    claimed.append(key)
            taken = set(claimed)
            while len(claimed) < limit and plan.queue:
                batch: list[ItemKey] = []
                while plan.queue and len(batch) < limit - len(claimed):
                    key = plan.queue.popleft()
                    # A live lease from an older plan: ``release`` puts the item back.
                    if self._live_lease(job, key, now) is None and key not in taken:
                        batch.append(key)
                open_now = await self._call(self._open_of, job, batch)
                claimed.extend(key for key in batch if key in open_now)
            for key in claimed:
                self._leases[(job, *key)] = (worker, now + lease_seconds)
            return claimed

    async def renew(
        self, job: str, worker: str, items: Collection[ItemKey], lease_seconds: float
    ) -> set[ItemKey]:
        """Extend ``worker``'s leases on these items; returns those it still holds (an item
        missing from the answer was taken over: stop working on it)."""
        check_lease(lease_seconds)
        async with self._share():
            deadline = time.monotonic() + lease_seconds
            held: set[ItemKey] = set()
            for key in items:
                lease = self._leases.get((job, *key))
                if lease is not None and lease[0] == worker:
                    self._leases[(job, *key)] = (worker, deadline)
                    held.add(key)
            return held

    async def release(self, job: str, worker: str, items: Collection[ItemKey]) -> None:
        """Give up ``worker``'s leases on these items (others' leases are left alone); an
        item released before it was done or failed can be claimed again."""
        async with self._share():
            mine = [
                key
                for key in dict.fromkeys(items)
                if (lease := self._leases.get((job, *key))) is not None and lease[0] == worker
            ]
            for key in mine:
                del self._leases[(job, *key)]
            plan = self._published.get(job)
            if plan is None:
                return
            back = [key for key in mine if key in plan.members]
            open_now = await self._call(self._open_of, job, back)
            plan.queue.extend(key for key in back if key in open_now)
