"""A throwaway PostgreSQL server for the journal tests, and a fresh database for each test.

``IMAGE_TRANSFER_PG_URL`` (a ``postgresql://`` URL of a role that may create databases) uses a
server that is already running; otherwise the session starts its own (``tests.pgserver``) from
the machine's binaries (``initdb``, ``pg_ctl``) on a free loopback port, as the ``postgres``
system user when the tests run as root (PostgreSQL refuses to run as root), and removes it at
the end.  Without the binaries the tests skip with the reason, unless
``IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1`` (CI sets it): then they fail.

The ``backend`` fixture gives a journal factory for each backend, so the same test checks the
SQLite journal and the PostgreSQL one; ``pg_journal`` gives PostgreSQL journals only, for what
only a journal that several hosts share has (its work queue).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.pgserver import ClusterError, ThrowawayCluster, unavailable_reason
from transfer.journal import Journal
from transfer.journal.postgres import PgJournal
from transfer.journal.sqlite import SqliteJournal

# A role whose password the started cluster checks (scram), so password handling is tested
# against a server that really asks for one.
PASSWORD_ROLE = "it_password_role"


@dataclass(frozen=True)
class PgServer:
    url: str  # the maintenance database ("postgres") of a role that may create databases
    own: bool  # started by this session (its pg_hba.conf asks PASSWORD_ROLE for a password)

    def database_url(self, name: str, *, user: str | None = None) -> str:
        parts = urlsplit(self.url)
        netloc = parts.netloc
        if user is not None:
            netloc = f"{user}@{netloc.rpartition('@')[2]}"
        return urlunsplit((parts.scheme, netloc, "/" + name, parts.query, ""))

    @contextlib.contextmanager
    def admin(self, database: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        url = self.url if database is None else self.database_url(database)
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn


@dataclass(frozen=True)
class PgDatabase:
    """One test's own database."""

    server: PgServer
    name: str

    @property
    def url(self) -> str:
        return self.server.database_url(self.name)

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in this database (as an operator would, from outside)."""
        with self.server.admin(self.name) as conn:
            cursor = conn.execute(query.encode(), params or None)
            return cursor.fetchall() if cursor.description else []

    def journal_backends(self) -> list[int]:
        """The backend pids of the journals connected to this database."""
        rows = self.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'image-transfer'"
        )
        return [row[0] for row in rows]


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("IMAGE_TRANSFER_REQUIRE_ALL_TESTS") == "1":
        pytest.fail(f"{reason} (IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1: not skipping)", pytrace=False)
    pytest.skip(reason)


# Durability is not under test here; speed is welcome on a shared machine.
_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _ask_password(hba: str) -> str:
    """The started cluster's ``pg_hba.conf``: PASSWORD_ROLE must give a password (scram),
    before the trust rules that initdb wrote."""
    return f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("IMAGE_TRANSFER_PG_URL")
    if external:
        yield PgServer(url=external, own=False)
        return
    reason = unavailable_reason()
    if reason is not None:
        _unavailable(f"{reason} (or set IMAGE_TRANSFER_PG_URL to a running server)")
    cluster = ThrowawayCluster(settings=_FAST, hba=_ask_password)
    try:
        try:
            cluster.start()
        except ClusterError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield PgServer(url=cluster.url(), own=True)
    finally:
        with contextlib.suppress(ClusterError):
            cluster.remove()


@pytest.fixture
def pg_db(pg_server: PgServer) -> Iterator[PgDatabase]:
    """A database of its own for one test, dropped afterwards."""
    name = f"it_{uuid.uuid4().hex[:16]}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield PgDatabase(server=pg_server, name=name)
    finally:
        with pg_server.admin() as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'.encode())
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(f'DROP DATABASE "{name}"'.encode())


@pytest.fixture
def pg_journal(pg_db: PgDatabase) -> Callable[[], PgJournal]:
    """Makes PostgreSQL journals (unopened) on this test's own database."""
    return lambda: PgJournal(pg_db.url)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Journal]:
    """Makes journals (unopened) on one store: an SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "journal.db"
        return lambda: SqliteJournal(path)
    factory: Callable[[], PgJournal] = request.getfixturevalue("pg_journal")
    return factory
