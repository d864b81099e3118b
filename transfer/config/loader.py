"""Loading a TOML configuration: read the file once, check it section by section, and report
every problem at once, before any network call, as one ``ConfigError`` whose ``problems`` each
read ``FILE: KEY: what was expected, got WHAT``.  Secret values never appear in a problem, a
warning or a repr.  ``config.example.toml`` at the repository root documents every key.

This module owns the order of the work and what is not a key of the file (the spool reserve
of the host, ``IMAGE_TRANSFER_SPOOL_RESERVE``).  The sections are read by ``journal_log``,
``clouds`` (with ``sources``: clouds.yaml and ``OS_*``) and ``jobs``, on the getters of
``checks``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from transfer.config.checks import Checks, parse_duration
from transfer.config.clouds import CloudReader, no_such_cloud
from transfer.config.jobs import JobReader
from transfer.config.journal_log import read_journal, read_log
from transfer.config.settings import (
    DEFAULT_SPOOL_RESERVE,
    SPOOL_RESERVE_ENV,
    Config,
    Credentials,
)
from transfer.errors import ConfigError
from transfer.streams import parse_size

__all__ = ["load_config", "load_credentials", "parse_duration"]

_TOP_KEYS = ("journal", "log", "clouds", "jobs")


def load_config(
    path: Path, *, environ: Mapping[str, str] = os.environ, resolve_secrets: bool = True
) -> Config:
    """Read, validate and resolve a config file; raises ConfigError listing every problem.

    ``resolve_secrets=False`` is for commands that only read the journal (``status``): it
    leaves passwords and tokens unread (their variables and files need not exist) and the
    spool reserve unchecked (nothing is spooled).
    """
    checks = Checks(path, environ)
    data, shared_mode = _read(path)
    checks.check_keys(data, "", _TOP_KEYS)
    journal = read_journal(checks, data.get("journal"))
    log = read_log(checks, data.get("log"))
    reader = CloudReader(checks, resolve_secrets=resolve_secrets, shared_mode=shared_mode)
    clouds = reader.clouds(data.get("clouds"), only=None)
    job_reader = JobReader(checks, clouds)
    jobs = job_reader.jobs(data.get("jobs"))
    spool_reserve = _spool_reserve(checks, spooling=job_reader.spooling and resolve_secrets)
    checks.raise_problems()
    return Config(
        path=path,
        journal=journal,
        log=log,
        clouds=MappingProxyType({name: c.creds for name, c in clouds.items() if c.creds}),
        jobs=MappingProxyType(jobs),
        spool_reserve=spool_reserve,
        warnings=tuple(checks.warnings),
    )


def load_credentials(
    path: Path, cloud: str, *, environ: Mapping[str, str] = os.environ
) -> Credentials:
    """One cloud's credentials from a config file, ignoring its jobs and other clouds' secrets."""
    checks = Checks(path, environ)
    data, shared_mode = _read(path)
    checks.check_keys(data, "", _TOP_KEYS)
    reader = CloudReader(checks, resolve_secrets=True, shared_mode=shared_mode)
    clouds = reader.clouds(data.get("clouds"), only=cloud)
    if cloud not in clouds:
        checks.problem("clouds", no_such_cloud(cloud, clouds))
    checks.raise_problems()
    creds = clouds[cloud].creds
    assert creds is not None  # no problems means the cloud was fully resolved
    return creds


def _read(path: Path) -> tuple[dict[str, Any], int]:
    """The parsed file and its group/other read bits; a ConfigError when it cannot be parsed."""
    file = str(path)
    try:
        raw = path.read_bytes()
        shared_mode = path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH)
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a directory, expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    import tomllib  # here: ``images`` with a token and an endpoint reads no file

    try:
        return tomllib.loads(text), shared_mode
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message carries "(at line L, column C)"; it never quotes values.
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None


def _spool_reserve(checks: Checks, *, spooling: bool) -> int:
    """Bytes to keep free beside spool files, from the environment.

    A bad value is a problem only when a job spools: it has never stopped a job that does not.
    """
    text = checks.environ.get(SPOOL_RESERVE_ENV)
    if text is None or not text.strip():
        return DEFAULT_SPOOL_RESERVE
    try:
        return parse_size(text)
    except ValueError as exc:
        if spooling:
            checks.outside_file(SPOOL_RESERVE_ENV, str(exc))
        return DEFAULT_SPOOL_RESERVE
