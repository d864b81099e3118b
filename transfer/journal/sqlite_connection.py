"""The SQLite journal's plumbing: its file and the one connection to it.

Creating the file (mode 0600, its folder 0700), opening it in WAL mode with
``synchronous=FULL``, refusing a file that is not a journal, applying the numbered migrations
(``schema_migrations``, one transaction each), and running every call on one worker thread,
never on the event loop.  SQLite's own errors become ``JournalError`` naming the file.

**Group commit.**  Writes are queued; the worker thread takes every write queued so far and
runs them, in the order they were queued, in one ``BEGIN IMMEDIATE`` transaction, each under
its own savepoint (a write that raises is undone alone, and its caller gets the error), then
commits once: one fsync for all of them.  Each caller returns only after the commit that holds
its write, so a write is durable when its call returns, as before; what changes is only that
writes made at the same moment by several images share a commit.  The batch costs one trip to
the worker thread, made by the caller that found no commit under way; the others wait for it
(and the next of them makes the next trip for what came meanwhile).  A restart finds each write
whole or absent, never in part, and a write is never committed before one queued earlier.
``commits`` counts the transactions committed, ``writes`` the write calls.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread

from transfer.errors import JournalError
from transfer.journal.records import stamp

_T = TypeVar("_T")


def now() -> str:
    """The journal's timestamp text for this instant (this host's clock)."""
    return stamp(datetime.now(UTC))


class SqliteConnection:
    """One SQLite journal file, opened by ``open`` and used by ``read`` and ``write``."""

    def __init__(self, path: Path, *, migrations: Sequence[Sequence[str]], busy_timeout: float):
        self.path = path
        self._migrations = migrations
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        #: Writes queued and not yet taken by the worker thread (guarded by ``_queue_lock``).
        self._queue: list[_Write[Any]] = []
        self._queue_lock = threading.Lock()
        #: Set when the commit under way (made by one of the writers) is over; None: none is.
        self._committing: anyio.Event | None = None
        #: Transactions committed (migrations included) and write calls, since this object
        #: was made: what the tests and the benchmark count.
        self.commits = 0
        self.writes = 0

    async def read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(connection)`` on the worker thread."""
        return await self._call(lambda: fn(self._db))

    async def rows(self, query: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        """The rows one query selects."""
        return await self.read(lambda conn: conn.execute(query, args).fetchall())

    async def write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(connection)`` on the worker thread, in a transaction committed on return (one it
        may share with writes queued at the same time: see the module docstring)."""
        op = _Write(fn)
        with self._queue_lock:
            self._queue.append(op)
        self.writes += 1
        try:
            while not op.done:
                if self._committing is None:
                    # This caller commits every write queued so far, its own among them.
                    self._committing = over = anyio.Event()
                    try:
                        await self._call(self._commit_queued)
                    finally:
                        self._committing = None
                        over.set()
                else:
                    await self._committing.wait()
        except BaseException:
            with self._queue_lock:
                if op in self._queue:  # cancelled while waiting: never written
                    self._queue.remove(op)
                    raise
            # Taken by the commit under way: its outcome is known before the cancellation.
            with anyio.CancelScope(shield=True):
                while not op.done and self._committing is not None:
                    await self._committing.wait()
            if not op.done:
                raise
        try:
            return op.outcome()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc

    async def open(self) -> None:
        await self._call(self._open)

    async def close(self) -> None:
        await self._call(self._close)

    async def _call(self, fn: Callable[[], _T]) -> _T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        # Not abandoned on cancel: a write that started is committed (or not) before the
        # cancellation is delivered, so the journal never depends on where a task was stopped.
        return await anyio.to_thread.run_sync(
            functools.partial(self._guarded, fn), limiter=self._limiter
        )

    def _guarded(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.DatabaseError) -> JournalError:
        if isinstance(exc, sqlite3.OperationalError):
            return JournalError(f"journal {self.path}: {exc} (is its disk full or read-only?)")
        return JournalError(f"journal {self.path}: {exc}")

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
        self.commits += 1
        return result

    def _commit_queued(self) -> None:
        """On the worker thread: every queued write in one transaction, each under a
        savepoint, then one commit; each write's result (or error) is kept for its caller."""
        with self._queue_lock:
            batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            self._write(functools.partial(_run_batch, batch))
        except BaseException as exc:  # undone, or the commit failed: none of it was written
            for op in batch:
                op.fail(exc)
            if not isinstance(exc, Exception):
                raise

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
            raise JournalError(f"journal {path}: cannot create: {exc.strerror}") from None
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout
            )
        except sqlite3.Error as exc:
            raise JournalError(f"journal {path}: cannot open: {exc}") from None
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal {path}: cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
            self._migrate()
        except sqlite3.DatabaseError as exc:
            damage = _damage(conn, exc)
            conn.close()
            self._conn = None
            if damage is not None:
                raise JournalError(
                    f"journal {path} is damaged ({damage}): move it aside (for example to "
                    f"{path.name}.damaged) and run again; the markers on the targets let the "
                    "next run adopt what was already copied, without duplicates"
                ) from None
            if isinstance(exc, sqlite3.OperationalError):
                # I/O trouble (a full or read-only disk), not a foreign file.
                raise JournalError(
                    f"journal {path}: cannot use it: {exc} (is its disk full or read-only?)"
                ) from None
            raise JournalError(f"journal {path}: not an image-transfer journal ({exc})") from None
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        return int(row[0])

    def _prepare(self, conn: sqlite3.Connection) -> int:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "schema_migrations" not in tables:
            if tables - {"sqlite_sequence"}:
                raise JournalError(
                    f"journal {self.path}: an SQLite database of something else "
                    f"(tables: {', '.join(sorted(tables))}), not an image-transfer journal"
                )
            conn.execute(
                "CREATE TABLE schema_migrations ("
                "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
        return self._version(conn)

    def _apply(self, conn: sqlite3.Connection, number: int) -> None:
        # Another process may have applied it while this one waited for the lock.
        if self._version(conn) >= number:
            return
        for statement in self._migrations[number - 1]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (number, now())
        )

    def _migrate(self) -> None:
        known = len(self._migrations)
        version = self._write(self._prepare)
        if version > known:
            raise JournalError(
                f"journal {self.path}: schema version {version} is newer than this "
                f"image-transfer knows ({known}); upgrade image-transfer to use it"
            )
        for number in range(version + 1, known + 1):
            self._write(functools.partial(self._apply, number=number))


def _damage(conn: sqlite3.Connection, error: sqlite3.DatabaseError) -> str | None:
    """What is damaged in an SQLite file that failed to open as a journal, or None when it is
    sound (then the error is the disk's, or the file is not a journal at all)."""
    text = str(error)
    if "malformed" in text or "already exists" in text:
        # Pages lost, or the schema disagrees with the record of its migrations.
        return text
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        # Unreadable (a full or failing disk) or not SQLite at all: no proof of damage.
        return str(exc) if "malformed" in str(exc) else None
    found = [str(row[0]) for row in rows if str(row[0]) != "ok"]
    return "; ".join(found[:3]) if found else None


class _Write(Generic[_T]):
    """One queued write: its function, then its result or error once its batch committed."""

    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[sqlite3.Connection], _T]) -> None:
        self.fn = fn
        self.done = False
        self.result: _T | None = None
        self.error: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        self.result, self.error, self.done = None, exc, True

    def outcome(self) -> _T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


def _run_batch(batch: Sequence[_Write[Any]], conn: sqlite3.Connection) -> None:
    if len(batch) == 1:  # alone: its error undoes the transaction, no savepoint needed
        batch[0].result = batch[0].fn(conn)
        batch[0].done = True
        return
    for op in batch:
        conn.execute("SAVEPOINT one_write")
        try:
            op.result = op.fn(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO one_write")
            op.error = exc
        conn.execute("RELEASE one_write")
    for op in batch:
        op.done = True
