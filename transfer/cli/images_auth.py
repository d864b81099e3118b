"""The ``images`` command's credentials: its auth flags over the ``OS_*`` variables of the
openstack CLI (which ``transfer.config.sources.openstack_environment`` reads; flags win), or over
the clouds.yaml entry ``--os-cloud``/``OS_CLOUD`` names, checked
by the same Keystone rules as a config's clouds (``transfer.config.keystone``), and the region
a command works in."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transfer.config.keystone import V3_KEYS, Mode, keystone_problems
from transfer.config.settings import NHN_IDENTITY_URL, Credentials, Secret, identity_version
from transfer.config.sources import clouds_yaml_entry, load_clouds_yaml, openstack_environment
from transfer.errors import ConfigError


def flag_value(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, None)


def _first(*values: str | None) -> str | None:
    for value in values:
        if value:
            return value
    return None


def _read_env_secret(flag: str, var: str, env: Mapping[str, str]) -> Secret:
    value = env.get(var)
    if not value:
        raise ConfigError(f"{flag} {var}: that environment variable is not set or empty")
    return Secret(value)


def _read_password_file(path: str) -> Secret:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--password-file {path}: cannot read it: {exc.strerror}") from exc
    value = text.rstrip("\r\n")
    if not value:
        raise ConfigError(f"--password-file {path}: the file is empty")
    return Secret(value)


def _region(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    return _first(flag_value(args, "region"), env.get("OS_REGION_NAME"))


def region_from_args(
    args: argparse.Namespace, env: Mapping[str, str], credentials: Credentials | None = None
) -> str:
    """``--region``, else the cloud's own region (``region_name`` in clouds.yaml, ``region``
    in the config), else ``OS_REGION_NAME``, else the one region a pre-issued token's
    endpoints name (a token with a single ``--endpoint`` needs no ``--region``)."""
    own = credentials.region if credentials is not None else None
    region = flag_value(args, "region") or own or env.get("OS_REGION_NAME")
    if region:
        return str(region)
    if credentials is not None and credentials.token is not None:
        if len(credentials.endpoints) == 1:
            return next(iter(credentials.endpoints))
        if credentials.endpoints:
            raise ConfigError(
                "no region: pass --region, one of the endpoints' regions: "
                + ", ".join(sorted(credentials.endpoints))
            )
    raise ConfigError("no region: pass --region (for example KR1) or set OS_REGION_NAME")


def _environment_as_read(env: Mapping[str, str], region: str | None) -> dict[str, str]:
    """The ``OS_*`` variables as this command has always read them, for ``openstack_environment``.

    Two differences from the config's ``from_env``: ``OS_IMAGE_URL`` is the endpoint of the
    region in use (``--region`` when given), and the Keystone v2.0 names ``OS_TENANT_ID`` and
    ``OS_TENANT_NAME`` win over ``OS_PROJECT_ID`` and ``OS_PROJECT_NAME`` when both are set.
    """
    seen = dict(env)
    if region:
        seen["OS_REGION_NAME"] = region
    for project, tenant in (
        ("OS_PROJECT_ID", "OS_TENANT_ID"),
        ("OS_PROJECT_NAME", "OS_TENANT_NAME"),
    ):
        if env.get(tenant):
            seen[project] = env[tenant]
    return seen


def _secret_from_flags(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Secret]:
    """``{"password": ...}`` or ``{"token": ...}`` from the flags; ``{}`` when none is given."""
    password_flags = [f for f in ("password_env", "password_file") if flag_value(args, f)]
    if len(password_flags) > 1:
        raise ConfigError("give either --password-env or --password-file, not both")
    if password_flags and flag_value(args, "token_env"):
        raise ConfigError("give either a password or --token-env, not both")
    if flag_value(args, "password_env"):
        return {"password": _read_env_secret("--password-env", args.password_env, env)}
    if flag_value(args, "password_file"):
        return {"password": _read_password_file(args.password_file)}
    if flag_value(args, "token_env"):
        return {"token": _read_env_secret("--token-env", args.token_env, env)}
    return {}


def _endpoints_from_flags(args: argparse.Namespace) -> dict[str, str]:
    endpoints: dict[str, str] = {}
    for item in flag_value(args, "endpoint") or []:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"--endpoint expects REGION=URL, got {item!r}")
        endpoints[name.upper()] = url
    return endpoints


#: How this command's messages name the keys of ``keystone_problems``.
_OS_NAMES = {
    "username": "--username (OS_USERNAME)",
    "tenant_id": "--tenant-id (OS_PROJECT_ID)",
    "tenant_name": "--tenant-name (OS_PROJECT_NAME)",
    **{key: f"OS_{key.upper()}" for key in V3_KEYS},
}
_SECRETS = {
    "password": Mode.PASSWORD,
    "application_credential_secret": Mode.APPLICATION_CREDENTIAL,
    "token": Mode.TOKEN,
}


def _check_keystone(keys: Mapping[str, Any], mode: Mode) -> None:
    try:
        version = identity_version(keys["identity_url"])
    except ValueError as exc:
        raise ConfigError(f"--identity-url (OS_AUTH_URL): {exc}") from None
    fields = {key: keys.get(key) for key in ("username", "tenant_id", "tenant_name", *V3_KEYS)}
    for key, message in keystone_problems(fields, mode=mode, version=version, names=_OS_NAMES):
        raise ConfigError(f"{_OS_NAMES[key]}: {message}" if key else message)


def _raise(message: str) -> None:
    raise ConfigError(message)


def _os_cloud_keys(name: str, env: Mapping[str, str]) -> dict[str, Any]:
    """Our keys from the clouds.yaml entry ``name`` (secure.yaml merged over it), found where
    the openstack CLI looks for it."""
    path, clouds = load_clouds_yaml(env)
    if path is None:
        raise ConfigError(f"--os-cloud/OS_CLOUD {name!r}: no clouds.yaml found")
    entry = clouds.get(name)
    if not isinstance(entry, dict):
        known = ", ".join(clouds) or "none"
        raise ConfigError(f"--os-cloud/OS_CLOUD: {path} has no cloud named {name!r} ({known})")
    return clouds_yaml_entry(entry, lambda message: _raise(f"{path}: {name}: {message}"))


def add_os_cloud_option(parser: Any, default: Any = None) -> None:
    """``--os-cloud NAME`` on the ``images`` parser (or its authentication group)."""
    parser.add_argument(
        "--os-cloud",
        metavar="NAME",
        default=default,
        help="take the credentials and region_name from this clouds.yaml entry, as the "
        "openstack CLI does (OS_CLOUD); the other flags win over it",
    )


def chosen_cloud(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """The clouds.yaml entry ``--os-cloud`` (or ``OS_CLOUD``) names; None when neither does."""
    return flag_value(args, "os_cloud") or env.get("OS_CLOUD") or None


def credentials_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> Credentials:
    """``Credentials`` from the auth flags over the ``OS_*`` variables (flags win).

    A password (``--password-env``/``--password-file``, else ``OS_PASSWORD``) selects password
    auth; else an application credential (``OS_APPLICATION_CREDENTIAL_SECRET`` with its id);
    otherwise a token (``--token-env``, else ``OS_AUTH_TOKEN``) selects token mode.  Keystone
    v3's domains come from ``OS_USER_DOMAIN_NAME`` and the other ``OS_*`` the openstack CLI
    reads.  With ``--os-cloud NAME`` (or ``OS_CLOUD``), the clouds.yaml entry NAME takes the
    place of the ``OS_*`` variables, as in the openstack CLI; the flags still win over it.
    """
    region = _region(args, env)
    cloud = chosen_cloud(args, env)
    if cloud is not None:
        keys = _os_cloud_keys(cloud, env)
    else:
        keys = openstack_environment(_environment_as_read(env, region))
    secret = _secret_from_flags(args, env)
    if secret:
        for key in _SECRETS:
            keys.pop(key, None)
        keys.update(secret)
    elif not any(key in keys for key in _SECRETS):
        raise ConfigError(
            "no credentials: give --password-env VAR, --password-file PATH or --token-env VAR "
            "(or set OS_PASSWORD, OS_APPLICATION_CREDENTIAL_SECRET or OS_AUTH_TOKEN)"
        )
    mode = next(mode for key, mode in _SECRETS.items() if key in keys)
    endpoints: dict[str, str] = {**keys.get("endpoints", {}), **_endpoints_from_flags(args)}
    for key in ("identity_url", "tenant_id", "tenant_name", "username", "ca_bundle"):
        keys[key] = _first(flag_value(args, key), keys.get(key))
    keys["identity_url"] = keys["identity_url"] or NHN_IDENTITY_URL
    tenant_id, tenant_name = keys["tenant_id"], keys["tenant_name"]
    if mode is Mode.PASSWORD:
        if not keys["username"]:
            raise ConfigError("password auth needs --username (or OS_USERNAME)")
        if not (tenant_id or tenant_name):
            raise ConfigError("password auth needs --tenant-id or --tenant-name (or OS_TENANT_ID)")
    elif mode is Mode.TOKEN and region and region.upper() not in endpoints:
        raise ConfigError(
            f"a pre-issued token needs the image endpoint of {region}: "
            f"pass --endpoint {region}=URL or set OS_IMAGE_URL"
        )
    if mode is not Mode.TOKEN:
        _check_keystone(keys, mode)
    return Credentials(
        name=cloud
        or tenant_name
        or tenant_id
        or keys.get("application_credential_name")
        or "default",
        identity_url=keys["identity_url"],
        password=keys.get("password"),
        token=keys.get("token"),
        application_credential_secret=keys.get("application_credential_secret"),
        endpoints=endpoints,
        ca_bundle=keys["ca_bundle"],
        verify_tls=not flag_value(args, "insecure"),
        region=keys.get("region"),
        **{key: keys.get(key) for key in ("username", "tenant_id", "tenant_name", *V3_KEYS)},
    )
