"""The job journal on PostgreSQL: one database that ``image-transfer run`` processes on
several hosts share.

``PgJournal`` implements ``transfer.journal.Journal`` with the SQLite journal's semantics (the
same answers to the same calls) plus what several hosts need:

- **Claims.**  ``claim`` takes open items of the published plan with ``SELECT ... FOR UPDATE
  SKIP LOCKED``, so concurrent workers never get the same item and never wait for each other.
  A lease (``entries.lease_owner``, ``entries.lease_expires``) is stamped with the server's
  clock (``now()``), so the workers' clocks do not matter.
- **Planning once.**  ``join_plan`` decides under a per-job advisory lock whether the caller
  plans or joins; the ``plans`` table holds each plan, its planner and the planner's lease.
- **Schema.**  Tables are created in the first schema of the role's ``search_path`` and
  migrated by numbered migrations (``schema_migrations``), each in one transaction, under an
  advisory lock so that workers starting together do not race.

Every call runs on the journal's one connection, one call at a time, and each write is one
transaction.  A dropped connection is reopened: a call that failed before it sent COMMIT is
retried once on the new connection (nothing of it was committed); a call that lost the
connection while committing raises a ``TransferError`` saying the write may or may not be
saved.  Calls are shielded from cancellation (a write that started finishes) and bounded by a
timeout.  The password (``password``, or libpq's ``~/.pgpass`` and ``PGPASSWORD``) never shows
in a message or a repr: the journal is named by its URL without it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from transfer.config.settings import Secret
from transfer.errors import LeaseLost, TransferError
from transfer.journal.records import (
    ENTRY_COLUMNS,
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
    missing_entries,
)

_T = TypeVar("_T")
_Conn = psycopg.AsyncConnection[tuple[Any, ...]]

# Advisory lock keys (two int4s): a namespace of ours, then 0 for migrations or a job's hash
# for its planning decisions.
_LOCK_SPACE_MIGRATIONS = 0x1A6E_7001
_LOCK_SPACE_PLANS = 0x1A6E_7002

# Identifiers compare byte-wise (COLLATE "C"), as in SQLite, whatever the database's locale.
# Each migration is a tuple of statements applied in one transaction; never edit a published
# one, append a new one.
PG_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job TEXT COLLATE "C" NOT NULL,
            worker TEXT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            outcome TEXT,
            summary JSONB
        )""",
        "CREATE INDEX runs_by_job ON runs (job, id)",
        """CREATE TABLE plans (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job TEXT COLLATE "C" NOT NULL,
            planner TEXT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            ready_at TIMESTAMPTZ,
            lease_seconds DOUBLE PRECISION NOT NULL,
            lease_expires TIMESTAMPTZ NOT NULL,
            items INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX plans_by_job ON plans (job, id)",
        """CREATE TABLE entries (
            job TEXT COLLATE "C" NOT NULL,
            source_id TEXT COLLATE "C" NOT NULL,
            target_key TEXT COLLATE "C" NOT NULL,
            source_name TEXT,
            source_checksum TEXT,
            source_size BIGINT,
            target_id TEXT,
            generation INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'done', 'failed')),
            last_step TEXT,
            bytes_done BIGINT NOT NULL DEFAULT 0,
            md5 TEXT,
            sha512 TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            updated_at TIMESTAMPTZ NOT NULL,
            plan_id BIGINT,
            plan_rank BIGINT,
            lease_owner TEXT,
            lease_expires TIMESTAMPTZ,
            PRIMARY KEY (job, source_id, target_key)
        )""",
        "CREATE INDEX entries_by_state ON entries (job, state)",
        "CREATE INDEX entries_claimable ON entries (job, plan_id, plan_rank) "
        "WHERE state IN ('pending', 'running')",
        """CREATE TABLE steps (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id BIGINT NOT NULL REFERENCES runs (id),
            job TEXT COLLATE "C" NOT NULL,
            source_id TEXT COLLATE "C" NOT NULL,
            target_key TEXT COLLATE "C" NOT NULL,
            step TEXT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            ok BOOLEAN,
            detail JSONB,
            error TEXT
        )""",
        "CREATE INDEX steps_by_entry ON steps (job, source_id, target_key, id)",
        "CREATE INDEX steps_by_run ON steps (run_id)",
        """CREATE TABLE spools (
            job TEXT COLLATE "C" NOT NULL,
            source_id TEXT COLLATE "C" NOT NULL,
            host TEXT COLLATE "C" NOT NULL,
            path TEXT NOT NULL,
            source_checksum TEXT,
            size BIGINT,
            bytes_done BIGINT NOT NULL DEFAULT 0,
            complete BOOLEAN NOT NULL DEFAULT false,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (job, source_id, host)
        )""",
    ),
)
_OUR_TABLES = frozenset({"runs", "plans", "entries", "steps", "spools"})

# libpq settings the journal wants unless the URL says otherwise: a name in pg_stat_activity,
# and TCP keepalives so a vanished server or network is noticed within a minute or so.
_CONNECT_DEFAULTS: Mapping[str, str] = {
    "application_name": "image-transfer",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}
_MAYBE_SAVED = " (the write may or may not have been saved)"

# The columns of JournalEntry, then the lease only while it is live (an expired lease is as
# good as none: its worker is gone).
_ENTRY_SELECT = (
    ", ".join(ENTRY_COLUMNS)
    + ", CASE WHEN lease_expires > now() THEN lease_owner END"
    + ", CASE WHEN lease_expires > now() THEN lease_expires END"
)


def _iso(moment: datetime | None) -> str | None:
    """The journal's timestamp text (as SQLite's: UTC, milliseconds, ``Z``)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stamp(moment: datetime) -> str:
    text = _iso(moment)
    assert text is not None
    return text


def _json(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def _dumps(value: Any) -> str:
    # As SQLite's journal: what JSON cannot encode is kept as its str.
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _jsonb(value: Mapping[str, Any] | None) -> Jsonb | None:
    return None if value is None else Jsonb(dict(value), dumps=_dumps)


def _entry(row: Sequence[Any]) -> JournalEntry:
    fields = dict(zip(ENTRY_COLUMNS, row[: len(ENTRY_COLUMNS)], strict=True))
    fields["updated_at"] = _iso(fields["updated_at"])
    return JournalEntry(**fields, lease_owner=row[len(ENTRY_COLUMNS)], lease_expires=_iso(row[-1]))


def _display(params: Mapping[str, Any]) -> str:
    """A URL naming the database for messages: user, hosts, ports, database, never a password."""
    user = params.get("user") or ""
    hosts = str(params.get("host") or params.get("hostaddr") or "").split(",")
    ports = str(params.get("port") or "").split(",")
    sockets = [h for h in hosts if h.startswith("/")]
    names = []
    for index, host in enumerate(h for h in hosts if not h.startswith("/")):
        port = ports[index] if index < len(ports) else ports[-1]
        names.append(f"{host}:{port}" if host and port else host)
    netloc = (f"{user}@" if user else "") + ",".join(names)
    text = f"postgresql://{netloc}/{params.get('dbname') or ''}"
    return text + (f"?host={sockets[0]}" if sockets else "")


class PgJournal:
    """The journal in a PostgreSQL database (see the module docstring)."""

    @property
    def work_queue(self) -> PgJournal:
        """Several workers on several hosts claim the items of one job through it."""
        return self

    def __init__(
        self,
        url: str,
        *,
        password: Secret | None = None,
        migrations: Sequence[Sequence[str]] = PG_MIGRATIONS,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # Not echoed: a malformed URL may still hold a password.
            raise TransferError("journal: not a PostgreSQL URL or connection string") from None
        inline = params.pop("password", None)
        self._params = params
        self._password = password or (Secret(str(inline)) if inline else None)
        self.display = _display(params)
        self._migrations = migrations
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._conn: _Conn | None = None
        self._lock: anyio.Lock | None = None
        self._opened = False

    def __repr__(self) -> str:
        return f"PgJournal({self.display!r})"

    # -- plumbing --------------------------------------------------------------------------

    def _clean(self, exc: BaseException) -> str:
        """An error's message on one line, never holding the password."""
        text = " ".join(str(exc).split())
        if self._password:
            text = text.replace(self._password.reveal(), "***")
        return text or type(exc).__name__

    async def _connect(self) -> _Conn:
        params: dict[str, Any] = {**_CONNECT_DEFAULTS, **self._params}
        params.setdefault("connect_timeout", str(max(2, round(self._connect_timeout))))
        if self._password is not None:
            params["password"] = self._password.reveal()
        try:
            with anyio.fail_after(self._connect_timeout + 1):
                conn = await psycopg.AsyncConnection.connect(
                    make_conninfo(**params), autocommit=True
                )
        except TimeoutError:
            raise TransferError(
                f"journal {self.display}: cannot connect: no answer in {self._connect_timeout:g} s"
            ) from None
        except psycopg.Error as exc:
            raise TransferError(
                f"journal {self.display}: cannot connect: {self._clean(exc)}"
            ) from None
        try:
            # A worker frozen inside a transaction must not hold its row locks for long.
            await conn.execute("SET idle_in_transaction_session_timeout = '60s'")
        except psycopg.Error as exc:
            await conn.close()
            raise TransferError(
                f"journal {self.display}: cannot connect: {self._clean(exc)}"
            ) from None
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _rollback(self, conn: _Conn) -> None:
        if conn.closed or conn.broken:
            await self._drop()
            return
        if conn.info.transaction_status == TransactionStatus.IDLE:
            return
        try:
            with anyio.fail_after(self._timeout):
                await conn.execute("ROLLBACK")
        except (psycopg.Error, TimeoutError):
            await self._drop()

    async def _run(self, op: Callable[[_Conn], Awaitable[_T]], *, write: bool) -> _T:
        if not self._opened:
            raise RuntimeError("the journal is not open: use 'async with'")
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            # Not abandoned on cancel: a write that started is committed (or not) before the
            # cancellation is delivered; the timeout bounds how long that may take.
            with anyio.CancelScope(shield=True):
                result = await self._attempt(op, write=write)
        return result

    async def _attempt(self, op: Callable[[_Conn], Awaitable[_T]], *, write: bool) -> _T:
        for attempt in itertools.count(1):
            if self._conn is None or self._conn.closed:
                await self._drop()
                self._conn = await self._connect()
            conn = self._conn
            committing = False
            try:
                with anyio.fail_after(self._timeout):
                    if not write:
                        return await op(conn)
                    await conn.execute("BEGIN")
                    result = await op(conn)
                    committing = True
                    await conn.execute("COMMIT")
                    return result
            except TimeoutError:
                await self._drop()
                maybe = _MAYBE_SAVED if committing else ""
                raise TransferError(
                    f"journal {self.display}: no answer in {self._timeout:g} s{maybe}"
                ) from None
            except psycopg.Error as exc:
                if conn.closed or conn.broken:
                    await self._drop()
                    if committing:
                        raise TransferError(
                            f"journal {self.display}: connection lost while committing"
                            f"{_MAYBE_SAVED}: {self._clean(exc)}"
                        ) from exc
                    if attempt == 1:
                        continue  # nothing of it was committed: once more, reconnected
                    raise TransferError(
                        f"journal {self.display}: connection lost: {self._clean(exc)}"
                    ) from exc
                await self._rollback(conn)
                conflict = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
                if isinstance(exc, conflict) and not committing and attempt < 3:
                    continue  # rolled back by the server: safe to run again
                raise TransferError(f"journal {self.display}: {self._clean(exc)}") from exc
            except BaseException:
                # The journal's own refusals (LookupError, LeaseLost, ...) undo the transaction.
                await self._rollback(conn)
                raise
        raise AssertionError("unreachable")

    async def _plan_lock(self, conn: _Conn, job: str) -> None:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_SPACE_PLANS, job)
        )

    # -- opening ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        conn = await self._connect()
        try:
            await self._migrate(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._lock = anyio.Lock()
        self._opened = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._opened = False
        with anyio.CancelScope(shield=True):
            await self._drop()

    async def _migrate(self, conn: _Conn) -> None:
        lock = (_LOCK_SPACE_MIGRATIONS, 0)
        try:
            await conn.execute("SELECT pg_advisory_lock(%s, %s)", lock)
            try:
                await self._migrate_locked(conn)
            finally:
                if not conn.broken:
                    await self._rollback(conn)
                    await conn.execute("SELECT pg_advisory_unlock(%s, %s)", lock)
        except psycopg.Error as exc:
            raise TransferError(
                f"journal {self.display}: cannot prepare the tables: {self._clean(exc)}"
            ) from exc

    async def _migrate_locked(self, conn: _Conn) -> None:
        where = f"journal {self.display}"
        row = await (await conn.execute("SELECT current_schema()")).fetchone()
        schema = row[0] if row else None
        if schema is None:
            raise TransferError(
                f"{where}: no schema to create the tables in (none of the role's search_path "
                "exists)"
            )
        cursor = await conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        tables = {r[0] for r in await cursor.fetchall()}
        if "schema_migrations" not in tables:
            ours = sorted(tables & _OUR_TABLES)
            if ours:
                raise TransferError(
                    f"{where}: schema {schema} has tables named {', '.join(ours)} but no "
                    "schema_migrations: not an image-transfer journal"
                )
            await conn.execute(
                "CREATE TABLE schema_migrations ("
                "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
        else:
            cursor = await conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
            )
            if not {"version", "applied_at"} <= {r[0] for r in await cursor.fetchall()}:
                raise TransferError(
                    f"{where}: schema {schema} has a schema_migrations table of another tool; "
                    "give image-transfer a schema of its own (options=-csearch_path=...)"
                )
        row = await (
            await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        ).fetchone()
        version = int(row[0]) if row else 0
        known = len(self._migrations)
        if version > known:
            raise TransferError(
                f"{where}: schema version {version} is newer than this image-transfer knows "
                f"({known}); upgrade image-transfer to use it"
            )
        for number in range(version + 1, known + 1):
            await conn.execute("BEGIN")
            try:
                for statement in self._migrations[number - 1]:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, now())",
                    (number,),
                )
            except psycopg.Error as exc:
                await self._rollback(conn)
                raise TransferError(
                    f"{where}: migration {number} failed: {self._clean(exc)}"
                ) from exc
            await conn.execute("COMMIT")

    # -- runs ------------------------------------------------------------------------------

    async def start_run(self, job: str, worker: str) -> int:
        async def write(conn: _Conn) -> int:
            cursor = await conn.execute(
                "INSERT INTO runs (job, worker, started_at) VALUES (%s, %s, now()) RETURNING id",
                (job, worker),
            )
            row = await cursor.fetchone()
            assert row is not None
            return int(row[0])

        return await self._run(write, write=True)

    async def finish_run(self, run_id: int, outcome: str, summary: Mapping[str, Any]) -> None:
        async def write(conn: _Conn) -> None:
            cursor = await conn.execute(
                "UPDATE runs SET finished_at = now(), outcome = %s, summary = %s WHERE id = %s",
                (outcome, _jsonb(summary), run_id),
            )
            if cursor.rowcount == 0:
                raise LookupError(f"journal {self.display}: no run {run_id}")

        await self._run(write, write=True)

    async def runs(self, job: str | None = None, limit: int = 20) -> list[RunRecord]:
        """The latest runs, newest first."""

        async def read(conn: _Conn) -> list[RunRecord]:
            columns = "id, job, worker, started_at, finished_at, outcome, summary"
            if job is None:
                cursor = await conn.execute(
                    f"SELECT {columns} FROM runs ORDER BY id DESC LIMIT %s", (limit,)
                )
            else:
                cursor = await conn.execute(
                    f"SELECT {columns} FROM runs WHERE job = %s ORDER BY id DESC LIMIT %s",
                    (job, limit),
                )
            return [
                RunRecord(
                    id=r[0],
                    job=r[1],
                    worker=r[2],
                    started_at=_stamp(r[3]),
                    finished_at=_iso(r[4]),
                    outcome=r[5],
                    summary=_json(r[6]),
                )
                for r in await cursor.fetchall()
            ]

        return await self._run(read, write=False)

    # -- entries ---------------------------------------------------------------------------

    async def entries(self, job: str) -> dict[tuple[str, str], JournalEntry]:
        """Every entry of a job, keyed by (source_id, target_key)."""

        async def read(conn: _Conn) -> dict[tuple[str, str], JournalEntry]:
            cursor = await conn.execute(
                f"SELECT {_ENTRY_SELECT} FROM entries WHERE job = %s", (job,)
            )
            return {(row[1], row[2]): _entry(row) for row in await cursor.fetchall()}

        return await self._run(read, write=False)

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
        target (last step, bytes, hashes) is reset; attempts, history and lease are kept.
        """
        changed = (
            "excluded.target_id IS NOT NULL AND excluded.target_id IS DISTINCT FROM e.target_id"
        )

        async def write(conn: _Conn) -> JournalEntry:
            cursor = await conn.execute(
                f"""INSERT INTO entries AS e (job, source_id, target_key, source_name,
                       source_checksum, source_size, target_id, generation, updated_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())
                   ON CONFLICT (job, source_id, target_key) DO UPDATE SET
                       source_name = excluded.source_name,
                       source_checksum = excluded.source_checksum,
                       source_size = excluded.source_size,
                       last_step = CASE WHEN {changed} THEN NULL ELSE e.last_step END,
                       bytes_done = CASE WHEN {changed} THEN 0 ELSE e.bytes_done END,
                       md5 = CASE WHEN {changed} THEN NULL ELSE e.md5 END,
                       sha512 = CASE WHEN {changed} THEN NULL ELSE e.sha512 END,
                       state = CASE WHEN {changed} THEN 'pending' ELSE e.state END,
                       generation = CASE WHEN excluded.target_id IS NOT NULL
                           THEN excluded.generation ELSE e.generation END,
                       target_id = COALESCE(excluded.target_id, e.target_id),
                       updated_at = excluded.updated_at
                   RETURNING {_ENTRY_SELECT}""",
                (
                    job,
                    source_id,
                    target_key,
                    source_name,
                    source_checksum,
                    source_size,
                    target_id,
                    generation,
                ),
            )
            row = await cursor.fetchone()
            assert row is not None
            return _entry(row)

        return await self._run(write, write=True)

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
        query = sql.SQL(
            "UPDATE entries SET {}, updated_at = now() "
            "WHERE job = %s AND source_id = %s AND target_key = %s"
        ).format(
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in names)
        )

        async def write(conn: _Conn) -> None:
            cursor = await conn.execute(
                query, (*(fields[n] for n in names), job, source_id, target_key)
            )
            if cursor.rowcount == 0:
                raise LookupError(
                    f"journal {self.display}: no entry for {job} {source_id} -> {target_key}"
                )

        await self._run(write, write=True)

    async def state_counts(self, job: str) -> dict[str, int]:
        """How many entries of a job are in each state."""

        async def read(conn: _Conn) -> dict[str, int]:
            cursor = await conn.execute(
                "SELECT state, COUNT(*) FROM entries WHERE job = %s GROUP BY state", (job,)
            )
            return {state: int(count) for state, count in await cursor.fetchall()}

        return await self._run(read, write=False)

    # -- steps -----------------------------------------------------------------------------

    async def step_started(
        self, job: str, source_id: str, target_key: str, step: str, run_id: int
    ) -> None:
        """Record a step's start; the entry becomes ``running``."""
        check_step(step)

        async def write(conn: _Conn) -> None:
            cursor = await conn.execute(
                "UPDATE entries SET state = 'running', updated_at = now() "
                "WHERE job = %s AND source_id = %s AND target_key = %s",
                (job, source_id, target_key),
            )
            if cursor.rowcount == 0:
                raise LookupError(
                    f"journal {self.display}: no entry for {job} {source_id} -> {target_key}"
                )
            await conn.execute(
                "INSERT INTO steps (run_id, job, source_id, target_key, step, started_at) "
                "VALUES (%s, %s, %s, %s, %s, now())",
                (run_id, job, source_id, target_key, step),
            )

        await self._run(write, write=True)

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

        async def write(conn: _Conn) -> None:
            if ok:
                cursor = await conn.execute(
                    "UPDATE entries SET last_step = %s, last_error = NULL, updated_at = now() "
                    "WHERE job = %s AND source_id = %s AND target_key = %s",
                    (step, job, source_id, target_key),
                )
            else:
                cursor = await conn.execute(
                    "UPDATE entries SET last_error = %s, updated_at = now() "
                    "WHERE job = %s AND source_id = %s AND target_key = %s",
                    (error, job, source_id, target_key),
                )
            if cursor.rowcount == 0:
                raise LookupError(
                    f"journal {self.display}: no entry for {job} {source_id} -> {target_key}"
                )
            cursor = await conn.execute(
                "SELECT id FROM steps WHERE job = %s AND source_id = %s AND target_key = %s "
                "AND step = %s AND run_id = %s AND finished_at IS NULL "
                "ORDER BY id DESC LIMIT 1",
                (job, source_id, target_key, step, run_id),
            )
            open_step = await cursor.fetchone()
            if open_step is not None:
                await conn.execute(
                    "UPDATE steps SET finished_at = now(), ok = %s, detail = %s, error = %s "
                    "WHERE id = %s",
                    (ok, _jsonb(detail), error, open_step[0]),
                )
            else:  # a step finished without a recorded start still belongs in the history
                await conn.execute(
                    "INSERT INTO steps (run_id, job, source_id, target_key, step, started_at, "
                    "finished_at, ok, detail, error) "
                    "VALUES (%s, %s, %s, %s, %s, now(), now(), %s, %s, %s)",
                    (run_id, job, source_id, target_key, step, ok, _jsonb(detail), error),
                )

        await self._run(write, write=True)

    async def steps(self, job: str, source_id: str, target_key: str) -> list[StepRecord]:
        """One entry's step history, oldest first."""

        async def read(conn: _Conn) -> list[StepRecord]:
            cursor = await conn.execute(
                "SELECT id, run_id, job, source_id, target_key, step, started_at, finished_at, "
                "ok, detail, error FROM steps "
                "WHERE job = %s AND source_id = %s AND target_key = %s ORDER BY id",
                (job, source_id, target_key),
            )
            return [
                StepRecord(
                    id=r[0],
                    run_id=r[1],
                    job=r[2],
                    source_id=r[3],
                    target_key=r[4],
                    step=r[5],
                    started_at=_stamp(r[6]),
                    finished_at=_iso(r[7]),
                    ok=r[8],
                    detail=_json(r[9]),
                    error=r[10],
                )
                for r in await cursor.fetchall()
            ]

        return await self._run(read, write=False)

    # -- whole jobs ------------------------------------------------------------------------

    async def reset_job(self, job: str) -> None:
        """Forget a job's entries, step history, spool records and plans (``--restart``); its
        runs stay listed."""

        async def write(conn: _Conn) -> None:
            for table in ("steps", "entries", "spools", "plans"):
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE job = %s").format(sql.Identifier(table)), (job,)
                )

        await self._run(write, write=True)

    async def jobs(self) -> list[str]:
        """Every job the journal knows of, sorted."""

        async def read(conn: _Conn) -> list[str]:
            cursor = await conn.execute(
                "SELECT job FROM runs UNION SELECT job FROM entries ORDER BY 1"
            )
            return [row[0] for row in await cursor.fetchall()]

        return await self._run(read, write=False)

    # -- spool files -----------------------------------------------------------------------

    async def spools(self, job: str, host: str | None = None) -> list[SpoolRecord]:
        """The spool records of a job (of one host, or of every host), by source id."""

        async def read(conn: _Conn) -> list[SpoolRecord]:
            columns = (
                "job, source_id, host, path, source_checksum, size, bytes_done, complete, "
                "updated_at"
            )
            if host is None:
                cursor = await conn.execute(
                    f"SELECT {columns} FROM spools WHERE job = %s ORDER BY source_id, host",
                    (job,),
                )
            else:
                cursor = await conn.execute(
                    f"SELECT {columns} FROM spools WHERE job = %s AND host = %s ORDER BY source_id",
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
                    complete=r[7],
                    updated_at=_stamp(r[8]),
                )
                for r in await cursor.fetchall()
            ]

        return await self._run(read, write=False)

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

        async def write(conn: _Conn) -> None:
            await conn.execute(
                """INSERT INTO spools (job, source_id, host, path, source_checksum, size,
                       bytes_done, complete, updated_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())
                   ON CONFLICT (job, source_id, host) DO UPDATE SET
                       path = excluded.path,
                       source_checksum = excluded.source_checksum,
                       size = excluded.size,
                       bytes_done = excluded.bytes_done,
                       complete = excluded.complete,
                       updated_at = excluded.updated_at""",
                (job, source_id, host, path, source_checksum, size, bytes_done, complete),
            )

        await self._run(write, write=True)

    async def forget_spool(self, job: str, source_id: str, host: str) -> None:
        """Drop the record of one spool file (the file itself is the caller's to remove)."""

        async def write(conn: _Conn) -> None:
            await conn.execute(
                "DELETE FROM spools WHERE job = %s AND source_id = %s AND host = %s",
                (job, source_id, host),
            )

        await self._run(write, write=True)

    # -- work sharing (see transfer.journal's docstring) -----------------------------------

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

        async def decide(conn: _Conn) -> PlanTicket | int:
            await self._plan_lock(conn, job)
            cursor = await conn.execute(
                "SELECT id, ready_at IS NOT NULL, lease_expires > now() FROM plans "
                "WHERE job = %s ORDER BY id DESC LIMIT 1",
                (job,),
            )
            latest = await cursor.fetchone()
            if latest is not None:
                plan_id, ready, fresh = latest
                if not ready and fresh:
                    return int(plan_id)  # being planned: wait for it
                if ready:
                    joined = PlanTicket(job=job, plan_id=plan_id, worker=worker, planner=False)
                    if plan_id == waited:
                        return joined
                    cursor = await conn.execute(
                        "SELECT EXISTS (SELECT 1 FROM entries WHERE job = %(job)s "
                        "AND plan_id = %(plan)s AND state IN ('pending', 'running')), "
                        "EXISTS (SELECT 1 FROM entries WHERE job = %(job)s "
                        "AND plan_id = %(plan)s AND state IN ('pending', 'running') "
                        "AND lease_expires > now())",
                        {"job": job, "plan": plan_id},
                    )
                    row = await cursor.fetchone()
                    assert row is not None
                    has_open, has_live_lease = row
                    if has_open and (fresh or has_live_lease):
                        return joined
            cursor = await conn.execute(
                "INSERT INTO plans (job, planner, started_at, lease_seconds, lease_expires) "
                "VALUES (%s, %s, now(), %s, now() + make_interval(secs => %s)) RETURNING id",
                (job, worker, lease_seconds, lease_seconds),
            )
            row = await cursor.fetchone()
            assert row is not None
            return PlanTicket(job=job, plan_id=int(row[0]), worker=worker, planner=True)

        while True:
            answer = await self._run(decide, write=True)
            if isinstance(answer, PlanTicket):
                return answer
            waited = answer
            await anyio.sleep(poll_interval)

    _PLANNING = (
        "FROM plans p WHERE p.id = %(plan)s AND p.job = %(job)s AND p.planner = %(worker)s "
        "AND p.ready_at IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM plans q WHERE q.job = p.job AND q.id > p.id)"
    )

    async def renew_plan(self, ticket: PlanTicket) -> bool:
        """Extend the planner's lease; False when the plan is no longer its to publish."""
        args = {"plan": ticket.plan_id, "job": ticket.job, "worker": ticket.worker}

        async def write(conn: _Conn) -> bool:
            cursor = await conn.execute(
                "UPDATE plans SET lease_expires = now() + make_interval(secs => lease_seconds) "
                f"WHERE id IN (SELECT p.id {self._PLANNING})",
                args,
            )
            return cursor.rowcount == 1

        return await self._run(write, write=True)

    async def publish_plan(self, ticket: PlanTicket, items: Iterable[ItemKey]) -> int:
        """Publish the planner's work items (their entries must exist), in the order to work
        them; returns how many.  Raises ``LeaseLost`` when another worker took over."""
        keys = list(dict.fromkeys(items))
        args = {"plan": ticket.plan_id, "job": ticket.job, "worker": ticket.worker}

        async def write(conn: _Conn) -> int:
            await self._plan_lock(conn, ticket.job)
            cursor = await conn.execute(f"SELECT p.id {self._PLANNING} FOR UPDATE", args)
            if await cursor.fetchone() is None:
                raise LeaseLost(
                    f"journal {self.display}: plan {ticket.plan_id} of {ticket.job} is no "
                    f"longer {ticket.worker}'s to publish"
                )
            if keys:
                cursor = await conn.execute(
                    """UPDATE entries e SET plan_id = %s, plan_rank = i.rank,
                           state = CASE WHEN e.state IN ('done', 'failed') THEN 'pending'
                               ELSE e.state END,
                           updated_at = CASE WHEN e.state IN ('done', 'failed') THEN now()
                               ELSE e.updated_at END
                       FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY
                           AS i(source_id, target_key, rank)
                       WHERE e.job = %s AND e.source_id = i.source_id
                           AND e.target_key = i.target_key
                       RETURNING e.source_id, e.target_key""",
                    (
                        ticket.plan_id,
                        [k[0] for k in keys],
                        [k[1] for k in keys],
                        ticket.job,
                    ),
                )
                found = {(r[0], r[1]) for r in await cursor.fetchall()}
                if len(found) != len(keys):
                    missing = [key for key in keys if key not in found]
                    raise missing_entries(self.display, ticket.job, missing)
            await conn.execute(
                "UPDATE plans SET ready_at = now(), items = %s, "
                "lease_expires = now() + make_interval(secs => lease_seconds) WHERE id = %s",
                (len(keys), ticket.plan_id),
            )
            return len(keys)

        return await self._run(write, write=True)

    async def plan_status(self, job: str, plan_id: int | None = None) -> PlanRecord | None:
        """The job's latest plan (or plan ``plan_id``), with its item counts."""

        async def read(conn: _Conn) -> PlanRecord | None:
            cursor = await conn.execute(
                """SELECT p.id, p.planner, p.started_at, p.ready_at, p.lease_expires, p.items,
                       (SELECT COUNT(*) FROM entries e WHERE e.job = p.job AND e.plan_id = p.id
                           AND e.state IN ('pending', 'running')),
                       (SELECT COUNT(*) FROM entries e WHERE e.job = p.job AND e.plan_id = p.id
                           AND e.lease_expires > now())
                   FROM plans p WHERE p.job = %(job)s
                       AND (%(plan)s::bigint IS NULL OR p.id = %(plan)s::bigint)
                   ORDER BY p.id DESC LIMIT 1""",
                {"job": job, "plan": plan_id},
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            return PlanRecord(
                job=job,
                plan_id=row[0],
                planner=row[1],
                started_at=_stamp(row[2]),
                ready_at=_iso(row[3]),
                lease_expires=_stamp(row[4]),
                items=row[5],
                open=int(row[6]),
                held=int(row[7]),
            )

        return await self._run(read, write=False)

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
        (including those whose lease ran out: their worker died) to ``worker``, in the
        planner's order.

        ``plan_id`` (from the ticket) makes sure the items come from the plan the worker
        joined: once a newer plan is published, an older one has nothing to hand out.
        """
        check_lease(lease_seconds)
        if limit < 1:
            return []
        args = {
            "job": job,
            "worker": worker,
            "limit": limit,
            "secs": lease_seconds,
            "plan": plan_id,
        }

        async def write(conn: _Conn) -> list[ItemKey]:
            # SKIP LOCKED: rows another worker is claiming right now are passed over, and a
            # row claimed since this statement's snapshot is re-checked (and skipped) on lock.
            cursor = await conn.execute(
                """WITH current AS (
                       SELECT id FROM plans WHERE job = %(job)s AND ready_at IS NOT NULL
                       ORDER BY id DESC LIMIT 1
                   ), picked AS (
                       SELECT e.source_id, e.target_key FROM entries e
                       JOIN current c ON e.plan_id = c.id
                       WHERE e.job = %(job)s AND e.state IN ('pending', 'running')
                           AND (e.lease_owner IS NULL OR e.lease_expires <= now())
                           AND (%(plan)s::bigint IS NULL OR c.id = %(plan)s::bigint)
                       ORDER BY e.plan_rank LIMIT %(limit)s
                       FOR UPDATE OF e SKIP LOCKED
                   )
                   UPDATE entries e SET lease_owner = %(worker)s,
                       lease_expires = now() + make_interval(secs => %(secs)s)
                   FROM picked p
                   WHERE e.job = %(job)s AND e.source_id = p.source_id
                       AND e.target_key = p.target_key
                   RETURNING e.source_id, e.target_key, e.plan_rank""",
                args,
            )
            rows = sorted(await cursor.fetchall(), key=lambda r: r[2])
            return [(r[0], r[1]) for r in rows]

        return await self._run(write, write=True)

    async def renew(
        self, job: str, worker: str, items: Collection[ItemKey], lease_seconds: float
    ) -> set[ItemKey]:
        """Extend ``worker``'s leases on these items; returns those it still holds (an item
        missing from the answer was taken over: stop working on it)."""
        check_lease(lease_seconds)
        keys = list(dict.fromkeys(items))
        if not keys:
            return set()

        async def write(conn: _Conn) -> set[ItemKey]:
            cursor = await conn.execute(
                """UPDATE entries e SET lease_expires = now() + make_interval(secs => %s)
                   FROM unnest(%s::text[], %s::text[]) AS i(source_id, target_key)
                   WHERE e.job = %s AND e.source_id = i.source_id
                       AND e.target_key = i.target_key AND e.lease_owner = %s
                   RETURNING e.source_id, e.target_key""",
                (lease_seconds, [k[0] for k in keys], [k[1] for k in keys], job, worker),
            )
            return {(r[0], r[1]) for r in await cursor.fetchall()}

        return await self._run(write, write=True)

    async def release(self, job: str, worker: str, items: Collection[ItemKey]) -> None:
        """Give up ``worker``'s leases on these items (others' leases are left alone); an
        item released before it was done or failed can be claimed again."""
        keys = list(dict.fromkeys(items))
        if not keys:
            return

        async def write(conn: _Conn) -> None:
            await conn.execute(
                """UPDATE entries e SET lease_owner = NULL, lease_expires = NULL
                   FROM unnest(%s::text[], %s::text[]) AS i(source_id, target_key)
                   WHERE e.job = %s AND e.source_id = i.source_id
                       AND e.target_key = i.target_key AND e.lease_owner = %s""",
                ([k[0] for k in keys], [k[1] for k in keys], job, worker),
            )

        await self._run(write, write=True)
