"""The PostgreSQL journal's plumbing: its one connection and how every call runs on it.

- **Naming.**  The URL (or libpq connection string) is parsed once; the journal is named by it
  without the password (``display``).  The password (``password``, or libpq's ``~/.pgpass``
  and ``PGPASSWORD``) never shows in a message or a repr.
- **Connecting** with TCP keepalives, a connect timeout and an idle-in-transaction timeout.
- **Calls.**  One call at a time (the journal's record and its work queue share the lock),
  shielded from cancellation (a write that started finishes) and bounded by a timeout; each
  write is one transaction.  A dropped connection is reopened, and a server that went away (a
  restart) is waited for up to ``reconnect`` seconds: a call that failed before it sent
  COMMIT runs again on the new connection (nothing of it was committed); a call that lost the
  connection while committing raises a ``JournalError`` saying the write may or may not have
  been saved.
- **Schema.**  Tables are created in the first schema of the role's ``search_path`` and
  migrated by numbered migrations (``schema_migrations``), each in one transaction, under an
  advisory lock so that workers starting together do not race.

psycopg's errors become ``JournalError`` naming the database here, and nowhere else.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg import sql
from psycopg.abc import Params
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from transfer.config.settings import Secret
from transfer.errors import JournalError

_T = TypeVar("_T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Op = Callable[[Conn], Awaitable[_T]]

# Advisory lock key (two int4s) of the migrations: a namespace of ours, then 0.  The work
# queue's plan locks use the next namespace.
_LOCK_SPACE_MIGRATIONS = 0x1A6E_7001

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


class PgConnection:
    """The one connection of a PostgreSQL journal (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        password: Secret | None,
        migrations: Sequence[Sequence[str]],
        tables: Collection[str],
        timeout: float,
        connect_timeout: float,
        reconnect: float,
    ) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # Not echoed: a malformed URL may still hold a password.
            raise JournalError("journal: not a PostgreSQL URL or connection string") from None
        inline = params.pop("password", None)
        self._params = params
        self._password = password or (Secret(str(inline)) if inline else None)
        self.display = _display(params)
        self._migrations = migrations
        self._tables = frozenset(tables)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._reconnect = reconnect
        self._conn: Conn | None = None
        self._lock: anyio.Lock | None = None
        self._opened = False
        #: Write transactions committed (migrations not counted): what tests and benchmarks count.
        self.commits = 0

    def __repr__(self) -> str:
        return f"PgConnection({self.display!r})"

    async def read(self, op: Op[_T]) -> _T:
        """``op(connection)``, outside any transaction."""
        return await self._run(op, write=False)

    async def rows(
        self, query: str | sql.Composed, args: Params | None = None
    ) -> list[tuple[Any, ...]]:
        """The rows one query selects."""

        async def read(conn: Conn) -> list[tuple[Any, ...]]:
            return await (await conn.execute(query, args)).fetchall()

        return await self.read(read)

    async def write(self, op: Op[_T]) -> _T:
        """``op(connection)`` in one transaction, committed on return."""
        return await self._run(op, write=True)

    async def open(self) -> None:
        """Connect, then create or migrate the tables."""
        conn = await self._connect()
        try:
            await self._migrate(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._lock = anyio.Lock()
        self._opened = True

    async def close(self) -> None:
        self._opened = False
        with anyio.CancelScope(shield=True):
            await self._drop()

    def _clean(self, exc: BaseException) -> str:
        """An error's message on one line, never holding the password."""
        text = " ".join(str(exc).split())
        if self._password:
            text = text.replace(self._password.reveal(), "***")
        return text or type(exc).__name__

    async def _connect(self) -> Conn:
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
            raise JournalError(
                f"journal {self.display}: cannot connect: no answer in {self._connect_timeout:g} s"
            ) from None
        except psycopg.Error as exc:
            raise JournalError(
                f"journal {self.display}: cannot connect: {self._clean(exc)}"
            ) from None
        try:
            # A worker frozen inside a transaction must not hold its row locks for long.
            await conn.execute("SET idle_in_transaction_session_timeout = '60s'")
        except psycopg.Error as exc:
            await conn.close()
            raise JournalError(
                f"journal {self.display}: cannot connect: {self._clean(exc)}"
            ) from None
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _rollback(self, conn: Conn) -> None:
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

    async def _run(self, op: Op[_T], *, write: bool) -> _T:
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

    async def _attempt(self, op: Op[_T], *, write: bool) -> _T:
        # A server that went away (a restart, a fail-over) is waited for, reconnecting with
        # backoff, for up to ``reconnect`` seconds; only a call that may have been committed
        # is not run again.
        give_up = anyio.current_time() + self._reconnect
        delay = 0.1

        async def pause() -> bool:
            nonlocal delay
            if anyio.current_time() + delay > give_up:
                return False
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)
            return True

        for attempt in itertools.count(1):
            if self._conn is None or self._conn.closed:
                await self._drop()
                try:
                    self._conn = await self._connect()
                except JournalError:
                    if await pause():
                        continue
                    raise
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
                    self.commits += 1
                    return result
            except TimeoutError:
                await self._drop()
                maybe = _MAYBE_SAVED if committing else ""
                raise JournalError(
                    f"journal {self.display}: no answer in {self._timeout:g} s{maybe}"
                ) from None
            except psycopg.Error as exc:
                if conn.closed or conn.broken:
                    await self._drop()
                    if committing:
                        raise JournalError(
                            f"journal {self.display}: connection lost while committing"
                            f"{_MAYBE_SAVED}: {self._clean(exc)}"
                        ) from exc
                    if attempt == 1 or await pause():
                        continue  # nothing of it was committed: again, reconnected
                    raise JournalError(
                        f"journal {self.display}: connection lost: {self._clean(exc)}"
                    ) from exc
                await self._rollback(conn)
                conflict = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
                if isinstance(exc, conflict) and not committing and attempt < 3:
                    continue  # rolled back by the server: safe to run again
                raise JournalError(f"journal {self.display}: {self._clean(exc)}") from exc
            except BaseException:
                # The journal's own refusals (LookupError, LeaseLost, ...) undo the transaction.
                await self._rollback(conn)
                raise
        raise AssertionError("unreachable")

    async def _migrate(self, conn: Conn) -> None:
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
            raise JournalError(
                f"journal {self.display}: cannot prepare the tables: {self._clean(exc)}"
            ) from exc

    async def _migrate_locked(self, conn: Conn) -> None:
        version = await self._version(conn)
        known = len(self._migrations)
        if version > known:
            raise JournalError(
                f"journal {self.display}: schema version {version} is newer than this "
                f"image-transfer knows ({known}); upgrade image-transfer to use it"
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
                raise JournalError(
                    f"journal {self.display}: migration {number} failed: {self._clean(exc)}"
                ) from exc
            await conn.execute("COMMIT")

    async def _version(self, conn: Conn) -> int:
        """The schema's version; creates ``schema_migrations`` in a schema without tables of
        ours, and refuses one with tables of ours or of another tool but no such table."""
        where = f"journal {self.display}"
        row = await (await conn.execute("SELECT current_schema()")).fetchone()
        schema = row[0] if row else None
        if schema is None:
            raise JournalError(
                f"{where}: no schema to create the tables in (none of the role's search_path "
                "exists)"
            )
        cursor = await conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        tables = {r[0] for r in await cursor.fetchall()}
        if "schema_migrations" not in tables:
            ours = sorted(tables & self._tables)
            if ours:
                raise JournalError(
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
                raise JournalError(
                    f"{where}: schema {schema} has a schema_migrations table of another tool; "
                    "give image-transfer a schema of its own (options=-csearch_path=...)"
                )
        row = await (
            await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        ).fetchone()
        return int(row[0]) if row else 0
