"""The PostgreSQL server and databases of ``tests/pg`` (a deadline stop must read the same
from both journals)."""

from tests.pg.conftest import pg_db, pg_server

__all__ = ["pg_db", "pg_server"]
