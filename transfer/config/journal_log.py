"""The ``[journal]`` and ``[log]`` tables: where the job journal lives (an SQLite file, or a
PostgreSQL URL that never carries its password) and how the process logs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from transfer.config.checks import Checks, got
from transfer.config.settings import (
    JournalConfig,
    LeaseSettings,
    LogConfig,
    LogFormat,
    LogLevel,
    Secret,
)

LEASE_KEYS = ("lease_seconds", "renew_seconds", "call_seconds", "max_takeovers")
JOURNAL_KEYS = ("path", "url", "password_env", *LEASE_KEYS)
LOG_KEYS = ("level", "format")
_PG_SCHEMES = ("postgresql", "postgres")


def read_journal(checks: Checks, value: Any) -> JournalConfig:
    table = checks.table(value, "journal", JOURNAL_KEYS) or {}
    raw = checks.string(table, "path", "journal")
    url = _journal_url(checks, table)
    if raw is not None and "url" in table:
        checks.problem(
            "journal",
            "expected either path (an SQLite file) or url (a PostgreSQL database), got both",
        )
    password: Secret | None = None
    if "password_env" in table:
        if "url" not in table:
            checks.problem(
                "journal.password_env",
                "expected only with url (the password of a PostgreSQL journal), got no url",
            )
        else:
            # Resolved even when other secrets are not (``status``): reading the journal needs it.
            password = checks.env_secret(table["password_env"], "journal.password_env")
    path = checks.file_path(raw) if raw is not None else _default_path(checks.environ)
    return JournalConfig(path=path, url=url, password=password, lease=_lease(checks, table))


def _lease(checks: Checks, table: Mapping[str, Any]) -> LeaseSettings:
    """The lease settings of a shared journal's workers (checked on every backend, so a file
    that is wrong for PostgreSQL is wrong everywhere)."""
    default = LeaseSettings()
    lease = LeaseSettings(
        lease_seconds=checks.positive_number(table, "lease_seconds", "journal")
        or default.lease_seconds,
        renew_seconds=checks.positive_number(table, "renew_seconds", "journal"),
        call_seconds=checks.positive_number(table, "call_seconds", "journal"),
        max_takeovers=checks.integer(
            table, "max_takeovers", "journal", low=0, high=None, default=default.max_takeovers
        )
        or 0,
    )
    if not any(checks.problems_for(f"journal.{key}") for key in LEASE_KEYS):
        for key, message in lease.problems({key: f"journal.{key}" for key in LEASE_KEYS}):
            checks.problem(key, message)
    return lease


def _default_path(environ: Mapping[str, str]) -> Path:
    state = environ.get("XDG_STATE_HOME", "")
    if not state or not Path(state).is_absolute():  # the XDG spec ignores relative values
        state = str(Path(environ.get("HOME") or str(Path.home())) / ".local" / "state")
    return Path(state) / "image-transfer" / "journal.db"


def _journal_url(checks: Checks, table: Mapping[str, Any]) -> str | None:
    """A libpq URL without a password: the URL shows up in messages and ``status``."""
    value = table.get("url")
    if value is None:
        return None
    where = "journal.url"
    expected = "expected a postgresql://USER@HOST:PORT/DATABASE URL"
    if not isinstance(value, str) or not value.strip():
        checks.problem(where, f"{expected}, got {got(value)}")
        return None
    parts = urlsplit(value.strip())
    query = parse_qs(parts.query)
    # A password in the URL is never echoed, even in the message refusing it.
    has_password = parts.password is not None or "password" in query
    if parts.scheme not in _PG_SCHEMES:
        shown = "a URL with a password" if has_password else got(value)
        checks.problem(where, f"{expected}, got {shown}")
        return None
    if has_password:
        checks.problem(
            where,
            "expected a URL without a password (put it in the variable named by "
            "journal.password_env, or in ~/.pgpass), got one with a password",
        )
        return None
    return value.strip()


def read_log(checks: Checks, value: Any) -> LogConfig:
    table = checks.table(value, "log", LOG_KEYS) or {}
    return LogConfig(
        level=checks.choice(table, "level", "log", LogLevel, LogLevel.INFO),
        format=checks.choice(table, "format", "log", LogFormat, LogFormat.AUTO),
    )
