"""The journal on PostgreSQL: ``PgJournal``, the record that ``image-transfer run`` processes on
several hosts share (its schema: ``transfer.journal.pg_schema``).

It answers the same calls as the SQLite journal with the same records; what several hosts
need besides, plans and leases, is its work queue (``transfer.journal.pg_queue``).  Both run
on the journal's one connection (``transfer.journal.pg_connection``: reconnecting,
timeouts, migrations, the password kept out of every message).  Timestamps are the server's
clock (``now()``), so the workers' clocks do not matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self, Unpack

from psycopg import sql
from psycopg.types.json import Jsonb

from transfer.config.settings import Secret
from transfer.journal import records
from transfer.journal.pg_connection import Conn, PgConnection
from transfer.journal.pg_queue import PgWorkQueue
from transfer.journal.pg_schema import OUR_TABLES
from transfer.journal.pg_schema import PG_MIGRATIONS as PG_MIGRATIONS  # re-exported
from transfer.journal.records import Ended, EntryFacts, ItemKey, SpoolFacts
from transfer.journal.samples import WRITTEN_COLUMNS, Sample, SampleReads, sample_values

# The columns of JournalEntry, then the lease only while it is live (an expired lease is as
# good as none: its worker is gone).
_ENTRY_SELECT = (
    ", ".join(records.ENTRY_COLUMNS)
    + ", CASE WHEN lease_expires > now() THEN lease_owner END"
    + ", CASE WHEN lease_expires > now() THEN lease_expires END"
)
# A new target id (a new generation) resets what was recorded of the old target's progress.
_NEW_TARGET = "excluded.target_id IS NOT NULL AND excluded.target_id IS DISTINCT FROM e.target_id"
_ENSURE_ENTRY = f"""INSERT INTO entries AS e (job, source_id, target_key, source_name,
        source_checksum, source_size, target_id, generation, updated_at)
    VALUES (%(job)s, %(source_id)s, %(target_key)s, %(source_name)s, %(source_checksum)s,
        %(source_size)s, %(target_id)s, %(generation)s, now())
    ON CONFLICT (job, source_id, target_key) DO UPDATE SET
        source_name = excluded.source_name,
        source_checksum = excluded.source_checksum,
        source_size = excluded.source_size,
        last_step = CASE WHEN {_NEW_TARGET} THEN NULL ELSE e.last_step END,
        bytes_done = CASE WHEN {_NEW_TARGET} THEN 0 ELSE e.bytes_done END,
        md5 = CASE WHEN {_NEW_TARGET} THEN NULL ELSE e.md5 END,
        sha512 = CASE WHEN {_NEW_TARGET} THEN NULL ELSE e.sha512 END,
        state = CASE WHEN {_NEW_TARGET} THEN 'pending' ELSE e.state END,
        generation = CASE WHEN excluded.target_id IS NOT NULL
            THEN excluded.generation ELSE e.generation END,
        target_id = COALESCE(excluded.target_id, e.target_id),
        updated_at = excluded.updated_at
    RETURNING {_ENTRY_SELECT}"""
_SAVE_SPOOL = records.upsert(
    "spools",
    records.SPOOL_COLUMNS,
    ["now()" if c == "updated_at" else f"%({c})s" for c in records.SPOOL_COLUMNS],
    key=3,
)
_RECORD_SAMPLE = (
    f"INSERT INTO samples ({', '.join(WRITTEN_COLUMNS)}, at) "
    f"VALUES ({', '.join('%s' for _ in WRITTEN_COLUMNS)}, now())"
)


def _jsonb(value: Mapping[str, Any] | None) -> Jsonb | None:
    # Encoded as SQLite's journal encodes it.
    return None if value is None else Jsonb(dict(value), dumps=records.json_text)


def _json(value: Any) -> dict[str, Any]:
    return {} if value is None else records.json_object(value)


def _sets(changes: Mapping[str, Any]) -> sql.Composable:
    """The assignments of an entry's ``changes`` (parameters: their values, in order)."""
    assigned = [sql.SQL("{} = %s").format(sql.Identifier(name)) for name in changes]
    return sql.SQL(", ").join([*assigned, sql.SQL("updated_at = now()")])


async def _insert_start(conn: Conn, job: str, key: ItemKey, step: str, run_id: int) -> None:
    await conn.execute(
        "INSERT INTO steps (run_id, job, source_id, target_key, step, started_at) "
        "VALUES (%s, %s, %s, %s, %s, now())",
        (run_id, job, *key, step),
    )


class PgJournal(SampleReads):
    """The journal in a PostgreSQL database (see the module docstring)."""

    time_param = "CAST({} AS timestamptz)"

    def __init__(
        self,
        url: str,
        *,
        password: Secret | None = None,
        migrations: Sequence[Sequence[str]] = PG_MIGRATIONS,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        reconnect: float = 10.0,
    ) -> None:
        self._db = PgConnection(
            url,
            password=password,
            migrations=migrations,
            tables=OUR_TABLES,
            timeout=timeout,
            connect_timeout=connect_timeout,
            reconnect=reconnect,
        )
        self._queue = PgWorkQueue(self._db)
        # Timestamps come as datetimes, JSON columns decoded (NULL as None).
        super().__init__(
            rows=self._db.rows,
            mark="%s",
            stamp=records.stamp,
            json=_json,
            entry_select=_ENTRY_SELECT,
        )

    @property
    def commits(self) -> int:
        """Transactions committed through this object's connection (its work queue's too)."""
        return self._db.commits

    @property
    def display(self) -> str:
        """The database's URL without the password, as messages name it."""
        return self._db.display

    @property
    def work_queue(self) -> PgWorkQueue:
        """Several workers on several hosts claim the items of one job through it."""
        return self._queue

    def __repr__(self) -> str:
        return f"PgJournal({self.display!r})"

    async def __aenter__(self) -> Self:
        await self._db.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._db.close()

    async def _update(
        self,
        conn: Conn,
        job: str,
        key: ItemKey,
        sets: sql.Composable,
        *values: Any,
        fence: int | None = None,
    ) -> None:
        """Change one entry (``sets``: the assignments, with the parameters ``values``); with a
        ``fence``, only while it is still the entry's epoch (else ``LeaseLost``)."""
        query = sql.SQL(
            "UPDATE entries SET {} WHERE job = %s AND source_id = %s AND target_key = %s "
            "AND (%s::bigint IS NULL OR epoch = %s::bigint)"
        ).format(sets)
        cursor = await conn.execute(query, (*values, job, *key, fence, fence))
        if cursor.rowcount == 1:
            return
        cursor = await conn.execute(
            "SELECT epoch FROM entries WHERE job = %s AND source_id = %s AND target_key = %s",
            (job, *key),
        )
        row = await cursor.fetchone()
        if row is None:
            raise records.missing_entries(self.display, job, [key])
        assert fence is not None
        raise records.fenced_off(self.display, job, key, fence, int(row[0]))

    # -- runs ------------------------------------------------------------------------------

    async def start_run(self, job: str, worker: str) -> int:
        async def write(conn: Conn) -> int:
            cursor = await conn.execute(
                "INSERT INTO runs (job, worker, started_at) VALUES (%s, %s, now()) RETURNING id",
                (job, worker),
            )
            row = await cursor.fetchone()
            assert row is not None
            return int(row[0])

        return await self._db.write(write)

    async def finish_run(self, run_id: int, outcome: str, summary: Mapping[str, Any]) -> None:
        async def write(conn: Conn) -> None:
            cursor = await conn.execute(
                "UPDATE runs SET finished_at = now(), outcome = %s, summary = %s WHERE id = %s",
                (outcome, _jsonb(summary), run_id),
            )
            if cursor.rowcount == 0:
                raise LookupError(f"journal {self.display}: no run {run_id}")

        await self._db.write(write)

    # -- entries ---------------------------------------------------------------------------

    async def ensure_entry(
        self, job: str, source_id: str, target_key: str, **kw: Unpack[EntryFacts]
    ) -> records.JournalEntry:
        args = {**kw, "job": job, "source_id": source_id, "target_key": target_key}

        async def write(conn: Conn) -> records.JournalEntry:
            row = await (await conn.execute(_ENSURE_ENTRY, args)).fetchone()
            assert row is not None
            return self._entry(row)

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
        changes = records.entry_changes(fields)
        sets = _sets(changes)

        async def write(conn: Conn) -> None:
            key = (source_id, target_key)
            await self._update(conn, job, key, sets, *changes.values(), fence=fence)

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
        name = records.check_step(step)
        changes = records.step_changes(name, None, fields)

        async def write(conn: Conn) -> None:
            key = (source_id, target_key)
            await self._update(conn, job, key, _sets(changes), *changes.values(), fence=fence)
            await _insert_start(conn, job, key, name, run_id)

        await self._db.write(write)

    async def step_finished(
        self, job: str, source_id: str, target_key: str, step: str, run_id: int, **kw: Unpack[Ended]
    ) -> None:
        name, ok, error = records.check_step(step), kw["ok"], kw.get("error")
        then = kw.get("then")
        then = None if then is None else records.check_step(then)
        detail = _jsonb(kw.get("detail"))
        changes = records.step_changes(then, (name, ok, error), kw.get("fields"))

        async def write(conn: Conn) -> None:
            key = (source_id, target_key)
            sets = _sets(changes)
            await self._update(conn, job, key, sets, *changes.values(), fence=kw.get("fence"))
            cursor = await conn.execute(
                "SELECT id FROM steps WHERE job = %s AND source_id = %s AND target_key = %s "
                "AND step = %s AND run_id = %s AND finished_at IS NULL "
                "ORDER BY id DESC LIMIT 1",
                (job, source_id, target_key, name, run_id),
            )
            open_step = await cursor.fetchone()
            if open_step is not None:
                await conn.execute(
                    "UPDATE steps SET finished_at = now(), ok = %s, detail = %s, error = %s "
                    "WHERE id = %s",
                    (ok, detail, error, open_step[0]),
                )
            else:  # a step finished without a recorded start still belongs in the history
                await conn.execute(
                    "INSERT INTO steps (run_id, job, source_id, target_key, step, started_at, "
                    "finished_at, ok, detail, error) "
                    "VALUES (%s, %s, %s, %s, %s, now(), now(), %s, %s, %s)",
                    (run_id, job, source_id, target_key, name, ok, detail, error),
                )
            if then is not None:
                await _insert_start(conn, job, key, then, run_id)

        await self._db.write(write)

    # -- whole jobs ------------------------------------------------------------------------

    async def reset_job(self, job: str) -> None:
        async def write(conn: Conn) -> None:
            for table in ("steps", "entries", "spools", "plans"):
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE job = %s").format(sql.Identifier(table)), (job,)
                )

        await self._db.write(write)

    # -- samples ---------------------------------------------------------------------------

    async def record_sample(self, sample: Sample) -> None:
        values = sample_values(sample)
        row = (*values[:-1], _jsonb(values[-1]))

        async def write(conn: Conn) -> None:
            await conn.execute(_RECORD_SAMPLE, row)

        await self._db.write(write)

    async def clock(self) -> str:
        [(moment,)] = await self._db.rows("SELECT now()", ())
        return records.stamp(moment)

    # -- spool files -----------------------------------------------------------------------

    async def save_spool(
        self, job: str, source_id: str, host: str, **kw: Unpack[SpoolFacts]
    ) -> None:
        args = {**kw, "job": job, "source_id": source_id, "host": host}

        async def write(conn: Conn) -> None:
            await conn.execute(_SAVE_SPOOL, args)

        await self._db.write(write)

    async def forget_spool(self, job: str, source_id: str, host: str) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(
                "DELETE FROM spools WHERE job = %s AND source_id = %s AND host = %s",
                (job, source_id, host),
            )

        await self._db.write(write)
