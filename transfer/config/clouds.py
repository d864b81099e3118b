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
from transfer.config.keystone import V3_KEYS, Mode, keystone_problems
from transfer.config.settings import (
    NHN_IDENTITY_URL,
    Credentials,
    IdentityVersion,
    Secret,
    identity_version,
    suggestion,
)
from transfer.config.sources import (
    APPLICATION_SECRET_KEYS,
    PASSWORD_KEYS,
    TOKEN_KEYS,
    import_conventions,
)

#: Hosts where a plain-http identity URL draws no warning: the password never leaves the host.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
CLOUD_KEYS = (
    "identity_url",
    "tenant_id",
    "tenant_name",
    "project_id",
    "project_name",
    "username",
    "password",
    "password_env",
    "password_file",
    "token_env",
    "token_file",
    *V3_KEYS,
    *APPLICATION_SECRET_KEYS,
    "region",
    "ca_bundle",
    "insecure",
    "endpoints",
    "os_cloud",
    "from_env",
)
#: Keystone v3's names for the two tenant keys (one concept: either spelling, not both).
PROJECT_NAMES = {"project_id": "tenant_id", "project_name": "tenant_name"}
#: The kinds of secret a cloud may give: exactly one.
SECRET_KINDS: tuple[tuple[Mode, tuple[str, ...]], ...] = (
    (Mode.PASSWORD, PASSWORD_KEYS),
    (Mode.APPLICATION_CREDENTIAL, APPLICATION_SECRET_KEYS),
    (Mode.TOKEN, TOKEN_KEYS),
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
        body, names = self.project_names(body, where)
        body = import_conventions(checks, body, where)
        fields = {
            key: checks.string(body, key, where)
            for key in ("tenant_id", "tenant_name", "username", *V3_KEYS)
        }
        identity_url = checks.string(body, "identity_url", where) or NHN_IDENTITY_URL
        version = self.identity_version(identity_url, join(where, "identity_url"))
        endpoints = self.endpoints(body.get("endpoints"), join(where, "endpoints"))
        insecure = checks.boolean(body, "insecure", where, False)
        ca_bundle = self.ca_bundle(body, where)
        region = self.region(body, where)
        given = [(mode, [k for k in keys if k in body]) for mode, keys in SECRET_KINDS]
        given = [(mode, keys) for mode, keys in given if keys]
        mode = given[0][0] if len(given) == 1 else None
        draft = CloudDraft(
            tenant_id=fields["tenant_id"],
            endpoints=endpoints,
            uses_token=any(m is Mode.TOKEN for m, _ in given),
        )
        ok = self.one_mode(body, where, given, has_endpoints=bool(endpoints))
        if ok and mode is not None:
            for key, message in keystone_problems(fields, mode=mode, version=version, names=names):
                checks.problem(join(where, names.get(key, key)) if key else where, message)
        if insecure:
            checks.warn(join(where, "insecure"), "TLS certificate verification is disabled")
        parts = urlsplit(identity_url)
        if (
            any(m is not Mode.TOKEN for m, _ in given)
            and parts.scheme == "http"
            and parts.hostname not in LOOPBACK_HOSTS
        ):
            what = "password" if mode is Mode.PASSWORD else "secret"
            checks.warn(join(where, "identity_url"), f"plain http: the {what} travels unencrypted")
        if not ok or mode is None:
            return draft
        secret = self.secret(body, given[0][1][0], where)
        if secret is not None and not checks.problems_for(where):
            draft.creds = Credentials(
                name=name,
                identity_url=identity_url,
                password=secret if mode is Mode.PASSWORD else None,
                application_credential_secret=(
                    secret if mode is Mode.APPLICATION_CREDENTIAL else None
                ),
                token=secret if mode is Mode.TOKEN else None,
                endpoints=MappingProxyType(dict(endpoints)),
                ca_bundle=ca_bundle,
                verify_tls=not insecure,
                region=region,
                **fields,
            )
        return draft

    def project_names(
        self, body: dict[str, Any], where: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The table with ``project_id``/``project_name`` under their v2.0 names, and the names
        the file used (for messages); both spellings at once is a problem."""
        body = dict(body)
        names: dict[str, str] = {}
        for v3_key, v2_key in PROJECT_NAMES.items():
            if v3_key not in body:
                continue
            if v2_key in body:
                self.checks.problem(
                    join(where, v3_key),
                    f"expected {v3_key} or {v2_key} (the Keystone v3 and v2.0 names of one "
                    "setting), got both",
                )
            else:
                body[v2_key] = body[v3_key]
                names[v2_key] = v3_key
            del body[v3_key]
        if names:  # a file that speaks v3 is answered in v3's names
            names = {v2_key: v3_key for v3_key, v2_key in PROJECT_NAMES.items()}
        return body, names

    def identity_version(self, url: str, where: str) -> IdentityVersion | None:
        if not is_url(url):
            self.checks.problem(where, f"expected an http(s) URL, got {got(url)}")
            return None
        try:
            return identity_version(url)
        except ValueError as exc:
            self.checks.problem(where, str(exc))
            return None

    def region(self, body: Mapping[str, Any], where: str) -> str | None:
        raw = self.checks.string(body, "region", where)
        if raw is not None and not REGION_RE.fullmatch(raw):
            self.checks.problem(
                join(where, "region"), f"expected a region name like KR1, got {got(raw)}"
            )
            return None
        return raw.upper() if raw else None

    def one_mode(
        self,
        body: Mapping[str, Any],
        where: str,
        given: list[tuple[Mode, list[str]]],
        *,
        has_endpoints: bool,
    ) -> bool:
        """Whether the cloud names exactly one secret and what its mode needs besides."""
        checks = self.checks
        if not given:
            checks.problem(
                where,
                "no credentials: expected password_env, password_file or password (or "
                "application_credential_secret_env/_file with application_credential_id, or "
                "token_env/token_file with endpoints)",
            )
            return False
        ok = True
        if len(given) > 1:
            kinds = " or ".join(
                ("an " if m is Mode.APPLICATION_CREDENTIAL else "a ") + m for m, _ in given
            )
            listed = ", ".join(k for _, ks in given for k in ks)
            count = "both" if len(given) == 2 else "all three"
            checks.problem(where, f"expected either {kinds}, got {count} ({listed})")
            ok = False
        for _, keys in given:
            if len(keys) > 1:
                checks.problem(where, f"expected only one of {', '.join(keys)}, got {len(keys)}")
                ok = False
        modes = {m for m, _ in given}
        if Mode.TOKEN in modes and not has_endpoints:
            token_key = next(ks[0] for m, ks in given if m is Mode.TOKEN)
            checks.problem(
                where,
                f"{token_key} (token mode) needs [{where}.endpoints]: "
                "a pre-issued token comes without a service catalog",
            )
            ok = False
        if modes == {Mode.PASSWORD}:
            # A key that is present but wrong has its own problem already.
            if "username" not in body:
                checks.problem(
                    join(where, "username"), "expected a string (the API user), got none"
                )
                ok = False
            if not ("tenant_id" in body or "tenant_name" in body):
                v3 = str(body.get("identity_url", "")).rstrip("/").endswith("/v3")
                names = "project_id or project_name" if v3 else "tenant_id or tenant_name"
                checks.problem(where, f"expected {names}, got neither")
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
        if key in ("password", "application_credential_secret"):
            return self.inline_password(value, name, key)
        if not isinstance(value, str) or not value:
            self.checks.problem(name, f"expected a non-empty string, got {got(value)}")
            return None
        if not self.resolve_secrets:
            return Secret("")  # a command that never calls the API (status) needs no secret
        if key.endswith("_env"):
            return self.checks.env_secret(value, name)
        return self.secret_file(value, name)

    def inline_password(self, value: Any, name: str, key: str = "password") -> Secret | None:
        if not isinstance(value, str) or not value:
            self.checks.problem(name, f"expected a non-empty string, got {got(value, secret=True)}")
            return None
        what = "password" if key == "password" else "application credential secret"
        self.checks.warn(name, f"a plain {what} in the config file; prefer {key}_env or {key}_file")
        if self.shared_mode:
            self.checks.warn(
                name,
                f"the config file holds a {what} and is readable by other users (chmod 600 it)",
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
