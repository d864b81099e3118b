"""gunicorn's config for an interop Glance server: settings, and the start-up hook that makes
Glance's SQLite database safe under concurrent requests.

Glance opens a deferred transaction (plain ``BEGIN``) and later writes in it; two threads doing
that at once deadlock on the write lock and SQLite answers "database is locked" at once, which
Glance turns into a 500.  Every transaction here starts with ``BEGIN IMMEDIATE`` (the write
lock is taken up front) and every connection waits for the lock instead of failing
(``busy_timeout``), so concurrent requests queue as they would on a server database.

gunicorn runs this file in Glance's environment (``-c``); bind address and process names come
from the command line.  The server also stops by itself once the process that started it is
gone.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import time
from typing import Any

workers = 1
worker_class = "gthread"
threads = 8
timeout = 120
graceful_timeout = 5
accesslog = "-"
access_log_format = "%(m)s %(U)s%(q)s %(s)s %(b)s %(L)ss"

_BUSY_TIMEOUT_MS = 30_000


def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        dbapi_connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")


def _on_begin(connection: Any) -> None:
    # Class-level listeners run before oslo.db's per-engine one, which emits a plain BEGIN
    # unless this marker (its own) says a transaction is already open.
    if connection.dialect.name == "sqlite" and "in_transaction" not in connection.info:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        connection.info["in_transaction"] = True


def when_ready(server: Any) -> None:
    """Stop when the process that started this server is gone (a harness killed with SIGKILL
    cannot stop it), instead of serving forever."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def post_fork(server: Any, worker: Any) -> None:
    """Before the worker loads Glance: hook every SQLAlchemy engine it will create."""
    event = importlib.import_module("sqlalchemy.event")
    engine_class = importlib.import_module("sqlalchemy.engine").Engine
    event.listen(engine_class, "connect", _on_connect)
    event.listen(engine_class, "begin", _on_begin)
