"""The ``[clouds.NAME]`` tables: one tenant's credentials each, checked for a complete mode
(password or token), with their one secret resolved from an environment variable, a file or
(warned) the config file itself.  A secret's value never appears in a problem or a warning.

Every cloud, even a broken one, becomes a ``CloudDraft``: jobs are checked against what could
be read, so a typo in a cloud does not also hide the jobs' own mistakes.
"""

from __future__ import annotations

import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from transfer.config.checks import NAME_RE, REGION_RE, Checks, got, is_url, join
from transfer.config.settings import (
    NHN_IDENTITY_URL,
    Credentials,
    Secret,
    suggestion,
)
from transfer.config.sources import PASSWORD_KEYS, TOKEN_KEYS, import_conventions

#: Hosts where a plain-http identity URL draws no warning: the password never leaves the host.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
CLOUD_KEYS = (
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


@dataclass(kw_only=True)
class CloudDraft:
    """A cloud as far as it could be parsed: jobs are checked against it even when incomplete."""

    tenant_id: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    uses_token: bool = False
    creds: Credentials | None = None  # None: the cloud has problems (or was not read)


def no_such_cloud(cloud: str, clouds: Collection[str]) -> str:
    defined = ", ".join(clouds) or "none"
    return f"no cloud named {cloud!r}{suggestion(cloud, clouds)} (defined: {defined})"


class CloudReader:
    """Reads the ``[clouds]`` table of one file into ``CloudDraft``s.

    ``resolve_secrets=False`` leaves variables and files of secrets unread (``status``);
    ``shared_mode`` is the config file's group/other read bits, for the inline-password warning.
    """

    def __init__(self, checks: Checks, *, resolve_secrets: bool, shared_mode: int) -> None:
        self.checks = checks
        self.resolve_secrets = resolve_secrets
        self.shared_mode = shared_mode

    def clouds(self, value: Any, *, only: str | None) -> dict[str, CloudDraft]:
        """Every cloud by name; with ``only``, the others' mistakes are not reported."""
        checks = self.checks
        if value is None:
            if only is None:
                checks.problem("clouds", "expected at least one [clouds.NAME] table, got none")
            return {}
        if not isinstance(value, dict):
            checks.problem("clouds", f"expected a table of clouds, got {got(value)}")
            return {}
        if not value and only is None:
            checks.problem("clouds", "expected at least one [clouds.NAME] table, got none")
        result: dict[str, CloudDraft] = {}
        for name, body in value.items():
            where = join("clouds", name)
            if not NAME_RE.fullmatch(name) and only in (None, name):
                checks.problem(
                    where,
                    "expected a cloud name of letters, digits, '.', '_' or "
                    "'-' (at most 64), starting with a letter or digit",
                )
            if only is not None and name != only:
                result[name] = CloudDraft()  # another cloud's mistakes do not block this one
                continue
            if not isinstance(body, dict):
                checks.problem(where, f"expected a table, got {got(body)}")
                result[name] = CloudDraft()
                continue
            result[name] = self.cloud(name, body, where)
        return result

    def cloud(self, name: str, body: dict[str, Any], where: str) -> CloudDraft:
        checks = self.checks
        checks.check_keys(body, where, CLOUD_KEYS)
        body = import_conventions(checks, body, where)
        tenant_id = checks.string(body, "tenant_id", where)
        tenant_name = checks.string(body, "tenant_name", where)
        username = checks.string(body, "username", where)
        identity_url = checks.string(body, "identity_url", where) or NHN_IDENTITY_URL
        if not is_url(identity_url):
            checks.problem(
                join(where, "identity_url"), f"expected an http(s) URL, got {got(identity_url)}"
            )
        endpoints = self.endpoints(body.get("endpoints"), join(where, "endpoints"))
        insecure = checks.boolean(body, "insecure", where, False)
        ca_bundle = self.ca_bundle(body, where)
        password_keys = [k for k in PASSWORD_KEYS if k in body]
        token_keys = [k for k in TOKEN_KEYS if k in body]
        draft = CloudDraft(tenant_id=tenant_id, endpoints=endpoints, uses_token=bool(token_keys))
        ok = self.one_mode(body, where, password_keys, token_keys, has_endpoints=bool(endpoints))
        if insecure:
            checks.warn(join(where, "insecure"), "TLS certificate verification is disabled")
        parts = urlsplit(identity_url)
        if password_keys and parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            checks.warn(join(where, "identity_url"), "plain http: the password travels unencrypted")
        if not ok:
            return draft
        password = self.secret(body, password_keys[0], where) if password_keys else None
        token = self.secret(body, token_keys[0], where) if not password_keys else None
        if (password is not None or token is not None) and not checks.problems_for(where):
            draft.creds = Credentials(
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
        return draft

    def one_mode(
        self,
        body: Mapping[str, Any],
        where: str,
        password_keys: list[str],
        token_keys: list[str],
        *,
        has_endpoints: bool,
    ) -> bool:
        """Whether the cloud names exactly one secret and what its mode needs besides."""
        checks = self.checks
        ok = True
        if not password_keys and not token_keys:
            checks.problem(
                where,
                "no credentials: expected password_env, password_file or "
                "password (or token_env/token_file with endpoints)",
            )
            ok = False
        if password_keys and token_keys:
            checks.problem(
                where,
                f"expected either a password or a token, got both "
                f"({', '.join(password_keys + token_keys)})",
            )
            ok = False
        for keys in (password_keys, token_keys):
            if len(keys) > 1:
                checks.problem(where, f"expected only one of {', '.join(keys)}, got {len(keys)}")
                ok = False
        if token_keys and not has_endpoints:
            checks.problem(
                where,
                f"{token_keys[0]} (token mode) needs [{where}.endpoints]: "
                "a pre-issued token comes without a service catalog",
            )
            ok = False
        if password_keys and not token_keys:
            # A key that is present but wrong has its own problem already.
            if "username" not in body:
                checks.problem(
                    join(where, "username"), "expected a string (the API user), got none"
                )
                ok = False
            if not ("tenant_id" in body or "tenant_name" in body):
                checks.problem(where, "expected tenant_id or tenant_name, got neither")
                ok = False
        return ok

    def ca_bundle(self, body: Mapping[str, Any], where: str) -> str | None:
        raw = self.checks.string(body, "ca_bundle", where)
        if raw is None:
            return None
        path = self.checks.file_path(raw)
        if not path.is_file():
            self.checks.problem(
                join(where, "ca_bundle"),
                f"expected a CA bundle file, got {got(raw)} ({path} does not exist)",
            )
        return str(path)

    def endpoints(self, value: Any, where: str) -> dict[str, str]:
        """Region (upper case) -> image URL, without a trailing slash."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.checks.problem(where, f"expected a table of REGION = URL, got {got(value)}")
            return {}
        result: dict[str, str] = {}
        for region, url in value.items():
            name = join(where, region)
            if not REGION_RE.fullmatch(region):
                self.checks.problem(name, f"expected a region name like KR1, got {got(region)}")
                continue
            if not isinstance(url, str) or not is_url(url):
                self.checks.problem(name, f"expected an http(s) URL, got {got(url)}")
                continue
            result[region.upper()] = url.rstrip("/")
        return result

    def secret(self, body: Mapping[str, Any], key: str, where: str) -> Secret | None:
        """The secret ``key`` names (``password``, ``*_env`` or ``*_file``); None on a problem."""
        name = join(where, key)
        value = body[key]
        if isinstance(value, Secret):  # imported from clouds.yaml or OS_* already
            return value
        if key == "password":
            return self.inline_password(value, name)
        if not isinstance(value, str) or not value:
            self.checks.problem(name, f"expected a non-empty string, got {got(value)}")
            return None
        if not self.resolve_secrets:
            return Secret("")  # a command that never calls the API (status) needs no secret
        if key.endswith("_env"):
            return self.checks.env_secret(value, name)
        return self.secret_file(value, name)

    def inline_password(self, value: Any, name: str) -> Secret | None:
        if not isinstance(value, str) or not value:
            self.checks.problem(name, f"expected a non-empty string, got {got(value, secret=True)}")
            return None
        self.checks.warn(
            name, "a plain password in the config file; prefer password_env or password_file"
        )
        if self.shared_mode:
            self.checks.warn(
                name,
                "the config file holds a password and is readable by other users (chmod 600 it)",
            )
        return Secret(value)

    def secret_file(self, value: str, name: str) -> Secret | None:
        """A file's text without one trailing newline; warned when others may read it."""
        if "\x00" in value:
            self.checks.problem(name, "expected a file path without NUL characters")
            return None
        path = self.checks.file_path(value)
        try:
            text = path.read_text(encoding="utf-8")
            shared = path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            self.checks.problem(name, f"cannot read {path}: {reason}")
            return None
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if not text:
            self.checks.problem(name, f"{path} is empty")
            return None
        if shared:
            self.checks.warn(name, f"{path} is readable by other users (chmod 600 it)")
        return Secret(text)
