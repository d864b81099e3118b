"""The TOML configuration: its frozen settings classes, and the loader that validates them.

The loader reads the file once, checks every key, resolves every secret (from environment
variables or files) and reports every problem at once, before any network call, as one
``ConfigError`` whose ``problems`` each read ``FILE: KEY: what was expected, got WHAT``.
Secret values never appear in a problem, a warning or a repr.  ``config.example.toml`` at the
repository root documents every key this module accepts.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from transfer.bandwidth import Timetable, parse_bwlimit
from transfer.config.settings import (
    _ENV_RE,
    _LOOPBACK_HOSTS,
    _NAME_RE,
    _REGION_RE,
    LOG_FORMATS,
    LOG_LEVELS,
    MISMATCH_ACTIONS,
    NHN_IDENTITY_URL,
    OS_TYPES,
    SPOOL_MODES,
    VERIFY_MODES,
    VISIBILITIES,
    Config,
    CopyConfig,
    Credentials,
    Endpoint,
    JobConfig,
    JournalConfig,
    LogConfig,
    Secret,
    SelectConfig,
    suggestion,
)
from transfer.config.sources import clouds_yaml_entry, openstack_environment
from transfer.errors import ConfigError
from transfer.models import IMAGE_STATUSES, MEMBER_STATUS_FILTERS

_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str) -> float | None:
    """``"6h"``, ``"1h30m"``, ``"90m"``, ``"45s"``, ``"3600"`` -> seconds; None when malformed."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def load_config(
    path: Path, *, environ: Mapping[str, str] = os.environ, resolve_secrets: bool = True
) -> Config:
    """Read, validate and resolve a config file; raises ConfigError listing every problem.

    ``resolve_secrets=False`` leaves passwords and tokens unread (for commands that only read
    the journal): their variables and files need not exist.
    """
    loader = _Loader(path, environ, resolve_secrets=resolve_secrets)
    data = loader.read()
    loader.check_keys(data, "", _TOP_KEYS)
    journal = loader.journal(data.get("journal"))
    log = loader.log(data.get("log"))
    clouds = loader.clouds(data.get("clouds"), only=None)
    jobs = loader.jobs(data.get("jobs"))
    loader.raise_problems()
    return Config(
        path=path,
        journal=journal,
        log=log,
        clouds=MappingProxyType({name: c.creds for name, c in clouds.items() if c.creds}),
        jobs=MappingProxyType(jobs),
        warnings=tuple(loader.warnings),
    )


def load_credentials(
    path: Path, cloud: str, *, environ: Mapping[str, str] = os.environ
) -> Credentials:
    """One cloud's credentials from a config file, ignoring its jobs and other clouds' secrets."""
    loader = _Loader(path, environ)
    data = loader.read()
    loader.check_keys(data, "", _TOP_KEYS)
    clouds = loader.clouds(data.get("clouds"), only=cloud)
    if cloud not in clouds:
        defined = ", ".join(clouds) or "none"
        loader.problem(
            "clouds", f"no cloud named {cloud!r}{suggestion(cloud, clouds)} (defined: {defined})"
        )
    loader.raise_problems()
    creds = clouds[cloud].creds
    assert creds is not None  # no problems means the cloud was fully resolved
    return creds


_TOP_KEYS = ("journal", "log", "clouds", "jobs")
_JOURNAL_KEYS = ("path", "url", "password_env")
_PG_SCHEMES = ("postgresql", "postgres")
_LOG_KEYS = ("level", "format")
_CLOUD_KEYS = (
    "identity_url",
    "tenant_id",
    "tenant_name",
    "username",
    "password",
    "password_env",
    "password_file",
    "token_env",
    "token_file",
    "ca_bundle",
    "insecure",
    "endpoints",
    "os_cloud",
    "from_env",
)
_JOB_KEYS = (
    "name",
    "source",
    "targets",
    "transfers",
    "checkers",
    "retries",
    "verify",
    "on_mismatch",
    "spool",
    "spool_dir",
    "bwlimit",
    "max_duration",
    "request_rate",
    "prune",
    "max_delete",
    "select",
    "copy",
)
_ENDPOINT_KEYS = ("cloud", "region")
_SELECT_KEYS = (
    "visibility",
    "owner",
    "status",
    "size_min",
    "size_max",
    "nhncloud_product",
    "member_status",
    "tags",
    "names",
    "exclude_names",
    "ids",
    "exclude_ids",
)
_COPY_KEYS = (
    "properties",
    "exclude_properties",
    "tags",
    "protected",
    "visibility",
    "members",
    "accept",
    "default_os_type",
    "share_with",
    "member_map",
)
_SECRET_KEYS = frozenset({"password"})


@dataclass(kw_only=True)
class _Cloud:
    """A cloud as far as it could be parsed: jobs are checked against it even when incomplete."""

    tenant_id: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    uses_token: bool = False
    creds: Credentials | None = None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _got(value: Any, *, secret: bool = False) -> str:
    """How a wrong value is shown: itself when scalar and not secret, else only its kind."""
    if secret:
        return _kind(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return _kind(value)


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    if not where:
        return key
    if _NAME_RE.fullmatch(key):
        return f"{where}.{key}"
    return f"{where}.{key!r}"


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class _Loader:
    """Collects problems and warnings while reading one file; never stops at the first one."""

    def __init__(
        self, path: Path, environ: Mapping[str, str], *, resolve_secrets: bool = True
    ) -> None:
        self.resolve_secrets = resolve_secrets
        self.path = path
        self.file = str(path)
        self.base = path.absolute().parent
        self.environ = environ
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.shared_mode = 0
        self.clouds_seen: Mapping[str, _Cloud] = {}

    # -- plumbing --------------------------------------------------------------------------

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.file}: {key}: {message}")

    def raise_problems(self) -> None:
        if self.problems:
            count = len(self.problems)
            noun = "problem" if count == 1 else "problems"
            raise ConfigError(
                f"{self.file}: {count} {noun} in the configuration", problems=self.problems
            )

    def read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
            self.shared_mode = self.path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH)
        except FileNotFoundError:
            raise ConfigError(f"{self.file}: file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{self.file}: is a directory, expected a TOML file") from None
        except OSError as exc:
            raise ConfigError(f"{self.file}: cannot read: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{self.file}: not UTF-8 text (byte {exc.start})") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message carries "(at line L, column C)"; it never quotes values.
            raise ConfigError(f"{self.file}: invalid TOML: {exc}") from None

    def check_keys(self, table: Mapping[str, Any], where: str, known: Collection[str]) -> None:
        for key in table:
            if key not in known:
                self.problem(_join(where, key), f"unknown key{suggestion(key, known)}")

    def table(self, value: Any, where: str, known: Collection[str]) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(where, f"expected a table, got {_got(value)}")
            return None
        self.check_keys(value, where, known)
        return value

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        where: str,
        *,
        choices: Collection[str] | None = None,
        lower: bool = False,
    ) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        name = _join(where, key)
        secret = key in _SECRET_KEYS
        if not isinstance(value, str) or not value.strip():
            self.problem(name, f"expected a non-empty string, got {_got(value, secret=secret)}")
            return None
        if "\x00" in value:
            self.problem(name, "expected text without NUL characters")
            return None
        if lower:
            value = value.lower()
        if choices is not None and value not in choices:
            options = "|".join(choices)
            self.problem(name, f"expected one of {options}, got {_got(table[key])}")
            return None
        return value

    def boolean(self, table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.problem(_join(where, key), f"expected true or false, got {_got(value)}")
            return default
        return value

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        where: str,
        *,
        low: int,
        high: int | None,
        default: int | None,
    ) -> int | None:
        value = table.get(key, default)
        if value is None:
            return None
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or value < low or (high is not None and value > high):
            wanted = f"from {low} to {high}" if high is not None else f"of at least {low}"
            self.problem(_join(where, key), f"expected an integer {wanted}, got {_got(value)}")
            return default
        assert isinstance(value, int)
        return value

    def bwlimit(self, table: Mapping[str, Any], key: str, where: str) -> Timetable | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(
                _join(where, key),
                f'expected a rate like "10M" or a timetable like "01:00,500M 07:00,off", '
                f"got {_got(value)}",
            )
            return None
        try:
            timetable = parse_bwlimit(value)
        except ValueError as exc:
            self.problem(_join(where, key), str(exc))
            return None
        if len(timetable.entries) == 1 and timetable.entries[0][1] is None:
            return None
        return timetable

    def duration(self, table: Mapping[str, Any], key: str, where: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            seconds = parse_duration(value)
        if seconds is None or seconds <= 0:
            self.problem(
                _join(where, key),
                f'expected a duration like "6h", "90m" or a number of seconds, got {_got(value)}',
            )
            return None
        return seconds

    def positive_number(self, table: Mapping[str, Any], key: str, where: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            self.problem(_join(where, key), f"expected a positive number, got {_got(value)}")
            return None
        return float(value)

    def strings(self, table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        value = table.get(key)
        if value is None:
            return ()
        if isinstance(value, str):  # a lone string is an easy slip for a one-item list
            value = [value]
        name = _join(where, key)
        if not isinstance(value, list):
            self.problem(name, f"expected an array of strings, got {_got(value)}")
            return ()
        good: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.problem(_join(name, index), f"expected a non-empty string, got {_got(item)}")
            elif item not in good:
                good.append(item)
        return tuple(good)

    def file_path(self, value: str) -> Path:
        expanded = value
        if value == "~" or value.startswith("~/"):
            home = self.environ.get("HOME") or str(Path.home())
            expanded = home + value[1:]
        path = Path(expanded)
        return path if path.is_absolute() else self.base / path

    # -- sections --------------------------------------------------------------------------

    def journal(self, value: Any) -> JournalConfig:
        table = self.table(value, "journal", _JOURNAL_KEYS) or {}
        raw = self.string(table, "path", "journal")
        url = self.journal_url(table)
        if raw is not None and "url" in table:
            self.problem(
                "journal",
                "expected either path (an SQLite file) or url (a PostgreSQL database), got both",
            )
        password: Secret | None = None
        if "password_env" in table:
            if "url" not in table:
                self.problem(
                    "journal.password_env",
                    "expected only with url (the password of a PostgreSQL journal), got no url",
                )
            else:
                password = self.journal_password(table)
        if raw is not None:
            return JournalConfig(path=self.file_path(raw), url=url, password=password)
        state = self.environ.get("XDG_STATE_HOME", "")
        if not state or not Path(state).is_absolute():  # the XDG spec ignores relative values
            state = str(Path(self.environ.get("HOME") or str(Path.home())) / ".local" / "state")
        path = Path(state) / "image-transfer" / "journal.db"
        return JournalConfig(path=path, url=url, password=password)

    def journal_url(self, table: Mapping[str, Any]) -> str | None:
        """A libpq URL without a password: the URL shows up in messages and ``status``."""
        value = table.get("url")
        if value is None:
            return None
        where = "journal.url"
        expected = "expected a postgresql://USER@HOST:PORT/DATABASE URL"
        if not isinstance(value, str) or not value.strip():
            self.problem(where, f"{expected}, got {_got(value)}")
            return None
        parts = urlsplit(value.strip())
        query = parse_qs(parts.query)
        # A password in the URL is never echoed, even in the message refusing it.
        has_password = parts.password is not None or "password" in query
        if parts.scheme not in _PG_SCHEMES:
            shown = "a URL with a password" if has_password else _got(value)
            self.problem(where, f"{expected}, got {shown}")
            return None
        if has_password:
            self.problem(
                where,
                "expected a URL without a password (put it in the variable named by "
                "journal.password_env, or in ~/.pgpass), got one with a password",
            )
            return None
        return value.strip()

    def journal_password(self, table: Mapping[str, Any]) -> Secret | None:
        # Resolved even when other secrets are not (``status``): reading the journal needs it.
        name = table["password_env"]
        where = "journal.password_env"
        if not isinstance(name, str) or not _ENV_RE.fullmatch(name):
            self.problem(where, f"expected an environment variable name, got {_got(name)}")
            return None
        resolved = self.environ.get(name)
        if resolved is None:
            self.problem(where, f"environment variable {name} is not set")
            return None
        if not resolved:
            self.problem(where, f"environment variable {name} is empty")
            return None
        return Secret(resolved)

    def log(self, value: Any) -> LogConfig:
        table = self.table(value, "log", _LOG_KEYS) or {}
        level = self.string(table, "level", "log", choices=LOG_LEVELS, lower=True)
        fmt = self.string(table, "format", "log", choices=LOG_FORMATS, lower=True)
        return LogConfig(level=level or "info", format=fmt or "auto")

    def clouds(self, value: Any, *, only: str | None) -> dict[str, _Cloud]:
        if value is None:
            if only is None:
                self.problem("clouds", "expected at least one [clouds.NAME] table, got none")
            return {}
        if not isinstance(value, dict):
            self.problem("clouds", f"expected a table of clouds, got {_got(value)}")
            return {}
        if not value and only is None:
            self.problem("clouds", "expected at least one [clouds.NAME] table, got none")
        result: dict[str, _Cloud] = {}
        self.clouds_seen = result  # jobs are checked against every cloud, even broken ones
        for name, body in value.items():
            where = _join("clouds", name)
            if not _NAME_RE.fullmatch(name) and only in (None, name):
                self.problem(
                    where,
                    "expected a cloud name of letters, digits, '.', '_' or "
                    "'-' (at most 64), starting with a letter or digit",
                )
            if only is not None and name != only:
                result[name] = _Cloud()  # another cloud's mistakes do not block this one
                continue
            if not isinstance(body, dict):
                self.problem(where, f"expected a table, got {_got(body)}")
                result[name] = _Cloud()
                continue
            result[name] = self.cloud(name, body, where)
        return result

    def cloud(self, name: str, body: dict[str, Any], where: str) -> _Cloud:
        self.check_keys(body, where, _CLOUD_KEYS)
        body = self.openstack_conventions(body, where)
        tenant_id = self.string(body, "tenant_id", where)
        tenant_name = self.string(body, "tenant_name", where)
        username = self.string(body, "username", where)
        identity_url = self.string(body, "identity_url", where) or NHN_IDENTITY_URL
        if not _is_url(identity_url):
            self.problem(
                _join(where, "identity_url"), f"expected an http(s) URL, got {_got(identity_url)}"
            )
        endpoints = self.endpoints(body.get("endpoints"), _join(where, "endpoints"))
        insecure = self.boolean(body, "insecure", where, False)
        ca_bundle: str | None = None
        ca_raw = self.string(body, "ca_bundle", where)
        if ca_raw is not None:
            ca_path = self.file_path(ca_raw)
            if not ca_path.is_file():
                self.problem(
                    _join(where, "ca_bundle"),
                    f"expected a CA bundle file, got {_got(ca_raw)} ({ca_path} does not exist)",
                )
            ca_bundle = str(ca_path)

        password_keys: list[str] = [
            k for k in ("password", "password_env", "password_file") if k in body
        ]
        token_keys: list[str] = [k for k in ("token_env", "token_file") if k in body]
        cloud = _Cloud(tenant_id=tenant_id, endpoints=endpoints, uses_token=bool(token_keys))
        ok = True
        if not password_keys and not token_keys:
            self.problem(
                where,
                "no credentials: expected password_env, password_file or "
                "password (or token_env/token_file with endpoints)",
            )
            ok = False
        if password_keys and token_keys:
            self.problem(
                where,
                f"expected either a password or a token, got both "
                f"({', '.join(password_keys + token_keys)})",
            )
            ok = False
        for keys in (password_keys, token_keys):
            if len(keys) > 1:
                self.problem(where, f"expected only one of {', '.join(keys)}, got {len(keys)}")
                ok = False
        if token_keys and not endpoints:
            self.problem(
                where,
                f"{token_keys[0]} (token mode) needs [{where}.endpoints]: "
                "a pre-issued token comes without a service catalog",
            )
            ok = False
        if password_keys and not token_keys:
            if username is None and "username" not in body:
                self.problem(_join(where, "username"), "expected a string (the API user), got none")
                ok = False
            if (
                tenant_id is None
                and tenant_name is None
                and not ("tenant_id" in body or "tenant_name" in body)
            ):
                self.problem(where, "expected tenant_id or tenant_name, got neither")
                ok = False
        if insecure:
            self.warn(_join(where, "insecure"), "TLS certificate verification is disabled")
        parts = urlsplit(identity_url)
        if password_keys and parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
            self.warn(_join(where, "identity_url"), "plain http: the password travels unencrypted")

        password = token = None
        if ok:
            if password_keys:
                password = self.secret(body, password_keys[0], where)
            else:
                token = self.secret(body, token_keys[0], where)
            ok = password is not None or token is not None
        if ok and not self.problems_for(where):
            cloud.creds = Credentials(
                name=name,
                identity_url=identity_url,
                tenant_id=tenant_id,
                tenant_name=tenant_name,
                username=username,
                password=password,
                token=token,
                endpoints=MappingProxyType(dict(endpoints)),
                ca_bundle=ca_bundle,
                verify_tls=not insecure,
            )
        return cloud

    def problems_for(self, where: str) -> bool:
        prefix = f"{self.file}: {where}"
        return any(p == prefix or p.startswith((prefix + ".", prefix + ":")) for p in self.problems)

    def endpoints(self, value: Any, where: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(where, f"expected a table of REGION = URL, got {_got(value)}")
            return {}
        result: dict[str, str] = {}
        for region, url in value.items():
            name = _join(where, region)
            if not _REGION_RE.fullmatch(region):
                self.problem(name, f"expected a region name like KR1, got {_got(region)}")
                continue
            if not isinstance(url, str) or not _is_url(url):
                self.problem(name, f"expected an http(s) URL, got {_got(url)}")
                continue
            result[region.upper()] = url.rstrip("/")
        return result

    def openstack_conventions(self, body: dict[str, Any], where: str) -> dict[str, Any]:
        """Fill a cloud from ``clouds.yaml`` (``os_cloud``) or ``OS_*`` (``from_env``).

        Keys written in the config file win over imported ones.  Imported secrets arrive as
        ``Secret`` objects, so they are neither warned about as plain text nor printed.
        """
        imported: dict[str, Any] = {}
        if "os_cloud" in body:
            entry = self.string(body, "os_cloud", where)
            if entry is not None:
                imported = self.clouds_yaml(entry, _join(where, "os_cloud"))
        elif self.boolean(body, "from_env", where, False):
            imported = openstack_environment(self.environ)
            if not imported:
                self.problem(_join(where, "from_env"), "no OS_* variables are set")
        merged = {k: v for k, v in body.items() if k not in ("os_cloud", "from_env")}
        has_secret = any(
            k in merged
            for k in ("password", "password_env", "password_file", "token_env", "token_file")
        )
        for key, value in imported.items():
            if key in ("password", "token") and has_secret:
                continue
            if key == "token":
                merged["token_env"] = value  # a Secret: secret() takes it as it is
            elif key == "endpoints":
                merged["endpoints"] = {**value, **merged.get("endpoints", {})}
            else:
                merged.setdefault(key, value)
        return merged

    def clouds_yaml(self, entry: str, where: str) -> dict[str, Any]:
        candidates = [
            self.environ.get("OS_CLIENT_CONFIG_FILE"),
            "clouds.yaml",
            str(Path(self.environ.get("HOME") or Path.home()) / ".config/openstack/clouds.yaml"),
            "/etc/openstack/clouds.yaml",
        ]
        for candidate in filter(None, candidates):
            path = self.file_path(candidate) if candidate == "clouds.yaml" else Path(candidate)
            if path.is_file():
                break
        else:
            self.problem(
                where,
                "no clouds.yaml found (OS_CLIENT_CONFIG_FILE, ./clouds.yaml, "
                "~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)",
            )
            return {}
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            self.problem(where, f"cannot read {path}: {type(exc).__name__}")
            return {}
        clouds = data.get("clouds") if isinstance(data, dict) else None
        if not isinstance(clouds, dict) or not isinstance(clouds.get(entry), dict):
            known = ", ".join(clouds) if isinstance(clouds, dict) else "none"
            self.problem(where, f"{path} has no cloud named {entry!r} (clouds: {known})")
            return {}
        return clouds_yaml_entry(clouds[entry])

    def secret(self, body: Mapping[str, Any], key: str, where: str) -> Secret | None:
        name = _join(where, key)
        value = body[key]
        if isinstance(value, Secret):  # imported from clouds.yaml or OS_* already
            return value
        if key == "password":
            if not isinstance(value, str) or not value:
                self.problem(name, f"expected a non-empty string, got {_got(value, secret=True)}")
                return None
            self.warn(
                name, "a plain password in the config file; prefer password_env or password_file"
            )
            if self.shared_mode:
                self.warn(
                    name,
                    "the config file holds a password and is readable by other "
                    "users (chmod 600 it)",
                )
            return Secret(value)
        if not isinstance(value, str) or not value:
            self.problem(name, f"expected a non-empty string, got {_got(value)}")
            return None
        if not self.resolve_secrets:
            return Secret("")  # a command that never calls the API (status) needs no secret
        if key.endswith("_env"):
            if not _ENV_RE.fullmatch(value):
                self.problem(name, f"expected an environment variable name, got {_got(value)}")
                return None
            resolved = self.environ.get(value)
            if resolved is None:
                self.problem(name, f"environment variable {value} is not set")
                return None
            if not resolved:
                self.problem(name, f"environment variable {value} is empty")
                return None
            return Secret(resolved)
        if "\x00" in value:
            self.problem(name, "expected a file path without NUL characters")
            return None
        path = self.file_path(value)
        try:
            text = path.read_text(encoding="utf-8")
            shared = path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            self.problem(name, f"cannot read {path}: {reason}")
            return None
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if not text:
            self.problem(name, f"{path} is empty")
            return None
        if shared:
            self.warn(name, f"{path} is readable by other users (chmod 600 it)")
        return Secret(text)

    def jobs(self, value: Any) -> dict[str, JobConfig]:
        if value is None:
            return {}
        if not isinstance(value, list):
            self.problem("jobs", f"expected an array of tables ([[jobs]]), got {_got(value)}")
            return {}
        clouds = self.clouds_seen
        jobs: dict[str, JobConfig] = {}
        for index, body in enumerate(value):
            where = _join("jobs", index)
            if not isinstance(body, dict):
                self.problem(where, f"expected a table, got {_got(body)}")
                continue
            job = self.job(body, where, clouds)
            if job is None:
                continue
            if job.name in jobs:
                self.problem(
                    _join(where, "name"), f"expected a unique job name, got {job.name!r} again"
                )
                continue
            jobs[job.name] = job
        return jobs

    def endpoint(self, value: Any, where: str, clouds: Mapping[str, _Cloud]) -> Endpoint | None:
        table = self.table(value, where, _ENDPOINT_KEYS)
        if table is None:
            return None
        if value is None:
            self.problem(where, "expected { cloud = NAME, region = REGION }, got none")
            return None
        cloud = self.string(table, "cloud", where)
        region = self.string(table, "region", where)
        if cloud is None and "cloud" not in table:
            self.problem(_join(where, "cloud"), "expected a cloud name, got none")
        if region is None and "region" not in table:
            self.problem(_join(where, "region"), "expected a region name like KR1, got none")
        if cloud is None or region is None:
            return None
        ok = True
        if cloud not in clouds:
            defined = ", ".join(clouds) or "none"
            self.problem(
                _join(where, "cloud"),
                f"no cloud named {cloud!r}{suggestion(cloud, clouds)} (defined: {defined})",
            )
            ok = False
        if not _REGION_RE.fullmatch(region):
            self.problem(
                _join(where, "region"), f"expected a region name like KR1, got {_got(region)}"
            )
            ok = False
        region = region.upper()
        if ok and clouds[cloud].uses_token and region not in clouds[cloud].endpoints:
            self.problem(
                _join(where, "region"),
                f"cloud {cloud!r} uses a token, so its "
                f"endpoints need a {region} entry (has: "
                f"{', '.join(clouds[cloud].endpoints) or 'none'})",
            )
        return Endpoint(cloud=cloud, region=region) if ok else None

    def job(
        self, body: dict[str, Any], where: str, clouds: Mapping[str, _Cloud]
    ) -> JobConfig | None:
        self.check_keys(body, where, _JOB_KEYS)
        name = self.string(body, "name", where)
        if name is None and "name" not in body:
            self.problem(_join(where, "name"), "expected a job name, got none")
        elif name is not None and not _NAME_RE.fullmatch(name):
            self.problem(
                _join(where, "name"),
                "expected letters, digits, '.', '_' or '-' (at "
                f"most 64, starting with a letter or digit), got {_got(name)}",
            )
            name = None
        source = self.endpoint(body.get("source"), _join(where, "source"), clouds)
        targets = self.targets(body.get("targets"), _join(where, "targets"), clouds)
        if source is not None:
            for index, target in enumerate(targets):
                if target == source or (
                    target.region == source.region
                    and clouds[target.cloud].tenant_id is not None
                    and clouds[target.cloud].tenant_id == clouds[source.cloud].tenant_id
                ):
                    self.problem(
                        _join(_join(where, "targets"), index),
                        f"expected a target other than the source, got {target.key} "
                        f"(the same tenant and region as {source.key})",
                    )
        transfers = self.integer(body, "transfers", where, low=1, high=64, default=4)
        checkers = self.integer(body, "checkers", where, low=1, high=256, default=8)
        retries = self.integer(body, "retries", where, low=1, high=100, default=3)
        verify = self.string(body, "verify", where, choices=VERIFY_MODES, lower=True)
        on_mismatch = self.string(body, "on_mismatch", where, choices=MISMATCH_ACTIONS, lower=True)
        spool = self.string(body, "spool", where, choices=SPOOL_MODES, lower=True)
        spool_dir_raw = self.string(body, "spool_dir", where)
        spool_dir = self.file_path(spool_dir_raw) if spool_dir_raw is not None else None
        bwlimit = self.bwlimit(body, "bwlimit", where)
        max_duration = self.duration(body, "max_duration", where)
        request_rate = self.positive_number(body, "request_rate", where)
        prune = self.boolean(body, "prune", where, False)
        max_delete = self.integer(body, "max_delete", where, low=0, high=None, default=None)
        select = self.select(body.get("select"), _join(where, "select"))
        copy = self.copy(body.get("copy"), _join(where, "copy"), clouds)
        if name is None or source is None or not targets or select is None or copy is None:
            return None
        return JobConfig(
            name=name,
            source=source,
            targets=targets,
            transfers=transfers or 4,
            checkers=checkers or 8,
            retries=retries or 3,
            verify=verify or "auto",
            on_mismatch=on_mismatch or "delete",
            spool=spool or "off",
            spool_dir=spool_dir,
            bwlimit=bwlimit,
            max_duration=max_duration,
            request_rate=request_rate,
            prune=prune,
            max_delete=max_delete,
            select=select,
            copy=copy,
        )

    def targets(self, value: Any, where: str, clouds: Mapping[str, _Cloud]) -> tuple[Endpoint, ...]:
        if isinstance(value, dict):  # a single inline table is an easy slip for a list of one
            value = [value]
        if not isinstance(value, list) or not value:
            shown = "none" if value is None else _got(value)
            self.problem(
                where, f"expected an array of {{ cloud = NAME, region = REGION }}, got {shown}"
            )
            return ()
        result: list[Endpoint] = []
        for index, item in enumerate(value):
            name = _join(where, index)
            if not isinstance(item, dict):
                self.problem(
                    name, f"expected {{ cloud = NAME, region = REGION }}, got {_got(item)}"
                )
                continue
            endpoint = self.endpoint(item, name, clouds)
            if endpoint is None:
                continue
            if endpoint in result:
                self.problem(name, f"expected each target once, got {endpoint.key} again")
                continue
            result.append(endpoint)
        return tuple(result)

    def select(self, value: Any, where: str) -> SelectConfig | None:
        table = self.table(value, where, _SELECT_KEYS)
        if table is None:
            return None
        before = len(self.problems)
        status: str | None = "active"
        if "status" in table:
            status = self.string(table, "status", where, choices=sorted(IMAGE_STATUSES), lower=True)
        size_min = self.integer(table, "size_min", where, low=0, high=None, default=None)
        size_max = self.integer(table, "size_max", where, low=0, high=None, default=None)
        if size_min is not None and size_max is not None and size_min > size_max:
            self.problem(
                _join(where, "size_max"), f"expected at least size_min ({size_min}), got {size_max}"
            )
        select = SelectConfig(
            visibility=self.string(table, "visibility", where, choices=VISIBILITIES, lower=True),
            owner=self.string(table, "owner", where),
            status=status,
            size_min=size_min,
            size_max=size_max,
            nhncloud_product=self.string(table, "nhncloud_product", where),
            member_status=self.string(
                table, "member_status", where, choices=MEMBER_STATUS_FILTERS, lower=True
            ),
            tags=self.strings(table, "tags", where),
            names=self.strings(table, "names", where),
            exclude_names=self.strings(table, "exclude_names", where),
            ids=self.strings(table, "ids", where),
            exclude_ids=self.strings(table, "exclude_ids", where),
        )
        return select if len(self.problems) == before else None

    def copy(self, value: Any, where: str, clouds: Mapping[str, _Cloud]) -> CopyConfig | None:
        table = self.table(value, where, _COPY_KEYS)
        if table is None:
            return None
        before = len(self.problems)
        share_with: list[str] = []
        for index, cloud in enumerate(self.strings(table, "share_with", where)):
            tenant = self.tenant_of(cloud, _join(_join(where, "share_with"), index), clouds)
            if tenant is not None and tenant not in share_with:
                share_with.append(tenant)
        member_map = self.member_map(table.get("member_map"), _join(where, "member_map"), clouds)
        default_os = self.string(table, "default_os_type", where, choices=OS_TYPES, lower=True)
        copy = CopyConfig(
            properties=self.boolean(table, "properties", where, True),
            exclude_properties=self.strings(table, "exclude_properties", where),
            tags=self.boolean(table, "tags", where, True),
            protected=self.boolean(table, "protected", where, False),
            visibility=self.boolean(table, "visibility", where, True),
            members=self.boolean(table, "members", where, True),
            accept=self.boolean(table, "accept", where, True),
            default_os_type=default_os or "linux",
            share_with=tuple(share_with),
            member_map=MappingProxyType(member_map),
        )
        return copy if len(self.problems) == before else None

    def tenant_of(self, cloud: str, where: str, clouds: Mapping[str, _Cloud]) -> str | None:
        if cloud not in clouds:
            defined = ", ".join(clouds) or "none"
            self.problem(
                where, f"no cloud named {cloud!r}{suggestion(cloud, clouds)} (defined: {defined})"
            )
            return None
        tenant = clouds[cloud].tenant_id
        if tenant is None:
            self.problem(where, f"cloud {cloud!r} has no tenant_id to name its tenant by")
        return tenant

    def member_map(self, value: Any, where: str, clouds: Mapping[str, _Cloud]) -> dict[str, str]:
        """Source tenant -> target tenant; either side may name a cloud instead of a tenant id."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(
                where, f"expected a table of SOURCE_TENANT = TARGET_TENANT, got {_got(value)}"
            )
            return {}
        result: dict[str, str] = {}
        for key, target in value.items():
            name = _join(where, key)
            if not isinstance(target, str) or not target:
                self.problem(name, f"expected a tenant id or a cloud name, got {_got(target)}")
                continue
            source = self.tenant_of(key, name, clouds) if key in clouds else key
            resolved = self.tenant_of(target, name, clouds) if target in clouds else target
            if source is not None and resolved is not None:
                result[source] = resolved
        return result
