"""The live page's tests share the journal fixtures of ``tests.pg`` (a throwaway PostgreSQL
server, a database per test, and ``backend``: the same test on SQLite and on PostgreSQL)."""

from tests.pg.conftest import backend, pg_db, pg_journal, pg_server

__all__ = ["backend", "pg_db", "pg_journal", "pg_server"]
