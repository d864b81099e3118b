"""The durable job journal: runs, one entry per (job, source image, target), and every step.

``Journal`` is the async interface the engine uses; ``SqliteJournal`` implements it on one
local SQLite file (a PostgreSQL backend can implement the same Protocol).  Every write is
committed durably (WAL, ``synchronous=FULL``) before the call returns, so a run killed at any
instant finds on restart exactly the steps that were finished.  SQLite runs in one worker
thread at a time, never in the event loop, so an fsync never stalls the transfers.

Tables: ``runs`` (one per ``image-transfer run``), ``entries`` (the latest state of each
source x target pair), ``steps`` (the history: each step's start and end), and
``schema_migrations`` (which numbered migrations were applied, each in one transaction).
Nothing secret is ever stored.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import anyio
import anyio.to_thread

from transfer.errors import TransferError

STEPS = ("create", "upload", "verify", "tags", "properties", "share", "accept", "protect")
STATES = ("pending", "running", "done", "failed")

_T = TypeVar("_T")

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
)

_ENTRY_COLUMNS = (
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
UPDATABLE_FIELDS = frozenset(_ENTRY_COLUMNS) - {"job", "source_id", "target_key", "updated_at"}


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


class Journal(Protocol):
    """What the engine needs from a journal; every write is durable when the call returns."""

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


def _entry(row: Sequence[Any]) -> JournalEntry:
    return JournalEntry(**dict(zip(_ENTRY_COLUMNS, row, strict=True)))


def _check_step(step: str) -> None:
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r} (expected one of {', '.join(STEPS)})")


class SqliteJournal:
    """The journal in one SQLite file (WAL mode; the file and its -wal/-shm are mode 0600)."""

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
                f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM entries WHERE job = ?", (job,)
            ).fetchall()
            return {(row[1], row[2]): _entry(row) for row in rows}

        return await self._call(read)

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
                f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM entries "
                "WHERE job = ? AND source_id = ? AND target_key = ?",
                (job, source_id, target_key),
            ).fetchone()
            return _entry(row)

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
            _check_step(fields["last_step"])
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
        _check_step(step)

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
        _check_step(step)

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
        """Forget a job's entries and step history (``--restart``); its runs stay listed."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM steps WHERE job = ?", (job,))
            conn.execute("DELETE FROM entries WHERE job = ?", (job,))

        await self._call(self._write, write)

    async def jobs(self) -> list[str]:
        """Every job the journal knows of, sorted."""

        def read() -> list[str]:
            rows = self._db.execute(
                "SELECT job FROM runs UNION SELECT job FROM entries ORDER BY 1"
            ).fetchall()
            return [row[0] for row in rows]

        return await self._call(read)


def open_journal(path: Path) -> SqliteJournal:
    """The journal at ``path`` (opened, created or migrated by ``async with``)."""
    return SqliteJournal(path)
