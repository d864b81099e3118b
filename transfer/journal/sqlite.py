"""The journal in one local SQLite file: ``SqliteJournal``, the record, and its schema.

Every write is durable when its call returns (``synchronous=FULL``); writes made at the same
moment share one commit (group commit, ``transfer.journal.sqlite_connection``), each whole.

One host's file serves one run per job at a time (``transfer.journal.lock``), so it has no work
queue.  The file itself (0600, WAL, ``synchronous=FULL``, migrations, the worker thread) is
``transfer.journal.sqlite_connection``'s.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self, Unpack

from transfer.journal import records
from transfer.journal.records import Ended, EntryFacts, ItemKey, SpoolFacts
from transfer.journal.samples import WRITTEN_COLUMNS, Sample, SampleReads, sample_values
from transfer.journal.sqlite_connection import SqliteConnection, now

# Each migration is a tuple of statements applied in one transaction; never edit a published
# one, append a new one.  This history differs from PostgreSQL's (where everything is
# migration 1): spools came later here, as migration 2.  Both stay as published.
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
    # 3: the step whose failure an entry's last_error reports, and whether that failure was
    # transient (what ``status`` shows and its exit code).
    (
        "ALTER TABLE entries ADD COLUMN failed_step TEXT",
        "ALTER TABLE entries ADD COLUMN retryable INTEGER NOT NULL DEFAULT 0",
    ),
    # 4: the samples a running worker writes every few seconds (``transfer.journal.samples``):
    # the live page's throughput over time, and the bytes of what each worker holds now.
    (
        """CREATE TABLE samples (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job TEXT NOT NULL,
            run_id INTEGER NOT NULL REFERENCES runs (id),
            worker TEXT NOT NULL,
            at TEXT NOT NULL,
            bytes_done INTEGER NOT NULL,
            bytes_total INTEGER NOT NULL,
            images_done INTEGER NOT NULL,
            images_failed INTEGER NOT NULL,
            images_total INTEGER NOT NULL,
            active TEXT
        )""",
        "CREATE INDEX samples_by_job ON samples (job, at)",
    ),
)

_KEY = "job = :job AND source_id = :source_id AND target_key = :target_key"
_ENTRY_COLUMNS = ", ".join(records.ENTRY_COLUMNS)
# A new target id (a new generation) resets what was recorded of the old target's progress.
_NEW_TARGET = "excluded.target_id IS NOT NULL AND excluded.target_id IS NOT target_id"
_ENSURE_ENTRY = f"""INSERT INTO entries (job, source_id, target_key, source_name,
        source_checksum, source_size, target_id, generation, updated_at)
    VALUES (:job, :source_id, :target_key, :source_name, :source_checksum, :source_size,
        :target_id, :generation, :updated_at)
    ON CONFLICT (job, source_id, target_key) DO UPDATE SET
        source_name = excluded.source_name,
        source_checksum = excluded.source_checksum,
        source_size = excluded.source_size,
        last_step = CASE WHEN {_NEW_TARGET} THEN NULL ELSE last_step END,
        bytes_done = CASE WHEN {_NEW_TARGET} THEN 0 ELSE bytes_done END,
        md5 = CASE WHEN {_NEW_TARGET} THEN NULL ELSE md5 END,
        sha512 = CASE WHEN {_NEW_TARGET} THEN NULL ELSE sha512 END,
        state = CASE WHEN {_NEW_TARGET} THEN 'pending' ELSE state END,
        generation = CASE WHEN excluded.target_id IS NOT NULL
            THEN excluded.generation ELSE generation END,
        target_id = COALESCE(excluded.target_id, target_id),
        updated_at = excluded.updated_at"""
_SAVE_SPOOL = records.upsert(
    "spools", records.SPOOL_COLUMNS, [f":{c}" for c in records.SPOOL_COLUMNS], key=3
)
_RECORD_SAMPLE = (
    f"INSERT INTO samples ({', '.join(WRITTEN_COLUMNS)}, at) "
    f"VALUES ({', '.join('?' for _ in WRITTEN_COLUMNS)}, ?)"
)


def _dumps(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else records.json_text(dict(value))


def _loads(text: str | None) -> dict[str, Any]:
    return records.json_object(json.loads(text)) if text else {}


class SqliteJournal(SampleReads):
    """The journal in one SQLite file (WAL mode; the file and its -wal/-shm are mode 0600)."""

    #: One host's file: one run per job at a time (the job lock), no claiming needed.
    work_queue = None

    @property
    def commits(self) -> int:
        """Transactions committed through this object (migrations included)."""
        return self._db.commits

    @property
    def writes(self) -> int:
        """Write calls made through this object (several may share one commit)."""
        return self._db.writes

    def __init__(
        self,
        path: Path,
        *,
        migrations: Sequence[Sequence[str]] = MIGRATIONS,
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = path
        self._db = SqliteConnection(path, migrations=migrations, busy_timeout=busy_timeout)
        # Timestamps are stored as the journal's text already, JSON as its text.
        super().__init__(rows=self._db.rows, mark="?", stamp=str, json=_loads)

    async def __aenter__(self) -> Self:
        await self._db.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._db.close()

    def _update(
        self, conn: sqlite3.Connection, job: str, key: ItemKey, sets: str, values: Mapping[str, Any]
    ) -> None:
        """Change one entry (``sets``: the assignments, with the named parameters ``values``)."""
        args = {**values, "job": job, "source_id": key[0], "target_key": key[1]}
        if conn.execute(f"UPDATE entries SET {sets} WHERE {_KEY}", args).rowcount == 0:
            raise records.missing_entries(str(self.path), job, [key])

    # -- runs ------------------------------------------------------------------------------

    async def start_run(self, job: str, worker: str) -> int:
        def write(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO runs (job, worker, started_at) VALUES (?, ?, ?)", (job, worker, now())
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        return await self._db.write(write)

    async def finish_run(self, run_id: int, outcome: str, summary: Mapping[str, Any]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            query = "UPDATE runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ?"
            if conn.execute(query, (now(), outcome, _dumps(summary), run_id)).rowcount == 0:
                raise LookupError(f"journal {self.path}: no run {run_id}")

        await self._db.write(write)

    # -- entries ---------------------------------------------------------------------------

    async def ensure_entry(
        self, job: str, source_id: str, target_key: str, **kw: Unpack[EntryFacts]
    ) -> records.JournalEntry:
        # Read back by a SELECT: RETURNING needs SQLite 3.35, newer than some Pythons link.
        key = {"job": job, "source_id": source_id, "target_key": target_key}

        def write(conn: sqlite3.Connection) -> records.JournalEntry:
            conn.execute(_ENSURE_ENTRY, {**kw, **key, "updated_at": now()})
            select = f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE {_KEY}"
            return self._entry(conn.execute(select, key).fetchone())

        return await self._db.write(write)

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
        records.no_fence(str(self.path), fence)
        changes = records.entry_changes(fields)
        sets = ", ".join(f"{name} = :{name}" for name in [*changes, "updated_at"])

        def write(conn: sqlite3.Connection) -> None:
            self._update(conn, job, (source_id, target_key), sets, {**changes, "updated_at": now()})

        await self._db.write(write)

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
        records.no_fence(str(self.path), fence)
        name = records.check_step(step)
        changes = records.step_changes(name, None, fields)

        def write(conn: sqlite3.Connection) -> None:
            at = now()
            self._set_entry(conn, job, (source_id, target_key), changes, at)
            self._insert_start(conn, job, (source_id, target_key), name, run_id, at)

        await self._db.write(write)

    async def step_finished(
        self, job: str, source_id: str, target_key: str, step: str, run_id: int, **kw: Unpack[Ended]
    ) -> None:
        records.no_fence(str(self.path), kw.get("fence"))
        name, ok, error = records.check_step(step), kw["ok"], kw.get("error")
        then = kw.get("then")
        then = None if then is None else records.check_step(then)
        changes = records.step_changes(then, (name, ok, error), kw.get("fields"))
        key = (source_id, target_key)

        def write(conn: sqlite3.Connection) -> None:
            at = now()
            self._set_entry(conn, job, key, changes, at)
            ended = (at, 1 if ok else 0, _dumps(kw.get("detail")), error)
            open_step = conn.execute(
                "SELECT MAX(id) FROM steps WHERE job = ? AND source_id = ? AND target_key = ? "
                "AND step = ? AND run_id = ? AND finished_at IS NULL",
                (job, source_id, target_key, name, run_id),
            ).fetchone()[0]
            if open_step is not None:
                conn.execute(
                    "UPDATE steps SET finished_at = ?, ok = ?, detail = ?, error = ? WHERE id = ?",
                    (*ended, open_step),
                )
            else:  # a step finished without a recorded start still belongs in the history
                conn.execute(
                    "INSERT INTO steps (run_id, job, source_id, target_key, step, started_at, "
                    "finished_at, ok, detail, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, job, source_id, target_key, name, at, *ended),
                )
            if then is not None:
                self._insert_start(conn, job, key, then, run_id, at)

        await self._db.write(write)

    def _set_entry(
        self, conn: sqlite3.Connection, job: str, key: ItemKey, changes: Mapping[str, Any], at: str
    ) -> None:
        sets = ", ".join(f"{name} = :{name}" for name in [*changes, "updated_at"])
        self._update(conn, job, key, sets, {**changes, "updated_at": at})

    @staticmethod
    def _insert_start(
        conn: sqlite3.Connection, job: str, key: ItemKey, step: str, run_id: int, at: str
    ) -> None:
        conn.execute(
            "INSERT INTO steps (run_id, job, source_id, target_key, step, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, job, *key, step, at),
        )

    # -- whole jobs ------------------------------------------------------------------------

    async def reset_job(self, job: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            for table in ("steps", "entries", "spools"):
                conn.execute(f"DELETE FROM {table} WHERE job = ?", (job,))

        await self._db.write(write)

    # -- samples ---------------------------------------------------------------------------

    async def record_sample(self, sample: Sample) -> None:
        values = sample_values(sample)
        row = (*values[:-1], _dumps(values[-1]))

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_RECORD_SAMPLE, (*row, now()))

        await self._db.write(write)

    async def clock(self) -> str:
        return now()

    # -- spool files -----------------------------------------------------------------------

    async def save_spool(
        self, job: str, source_id: str, host: str, **kw: Unpack[SpoolFacts]
    ) -> None:
        key = {"job": job, "source_id": source_id, "host": host}

        def write(conn: sqlite3.Connection) -> None:
            complete = 1 if kw["complete"] else 0
            conn.execute(_SAVE_SPOOL, {**kw, **key, "complete": complete, "updated_at": now()})

        await self._db.write(write)

    async def forget_spool(self, job: str, source_id: str, host: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM spools WHERE job = ? AND source_id = ? AND host = ?",
                (job, source_id, host),
            )

        await self._db.write(write)
