"""The OpenStack conventions a cloud's credentials may come from, read in one place: a
``clouds.yaml`` entry (``os_cloud``: where openstacksdk looks for the file, and our keys from
its entry) and the ``OS_*`` variables of the openstack CLI (``from_env``, and the ``images``
command, whose flags win over them).  Imported secrets arrive as ``Secret`` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from transfer.config.checks import Checks, join
from transfer.config.settings import Secret

#: The places ``find_clouds_yaml`` tries, in its order, as a problem names them.
CLOUDS_YAML_PLACES = (
    "OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/clouds.yaml, "
    "/etc/openstack/clouds.yaml"
)
#: The keys of a cloud table that give its secret: a password, or a pre-issued token.
PASSWORD_KEYS = ("password", "password_env", "password_file")
TOKEN_KEYS = ("token_env", "token_file")


def _first_set(
    source: Mapping[str, Any], keys: tuple[tuple[str, tuple[str, ...]], ...]
) -> dict[str, Any]:
    """Each of our keys from the first of its names that ``source`` holds as a non-empty string."""
    result: dict[str, Any] = {}
    for ours, theirs in keys:
        for key in theirs:
            value = source.get(key)
            if isinstance(value, str) and value:
                result[ours] = value
                break
    return result


def clouds_yaml_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Our cloud keys from one ``clouds.yaml`` entry (openstacksdk's layout)."""
    auth = entry.get("auth") if isinstance(entry.get("auth"), Mapping) else {}
    assert isinstance(auth, Mapping)
    result = _first_set(
        auth,
        (
            ("identity_url", ("auth_url",)),
            ("username", ("username",)),
            ("tenant_id", ("project_id", "tenant_id")),
            ("tenant_name", ("project_name", "tenant_name")),
        ),
    )
    if isinstance(auth.get("password"), str) and auth["password"]:
        result["password"] = Secret(auth["password"])
    elif isinstance(auth.get("token"), str) and auth["token"]:
        result["token"] = Secret(auth["token"])
    if isinstance(entry.get("cacert"), str):
        result["ca_bundle"] = entry["cacert"]
    if entry.get("verify") is False:
        result["insecure"] = True
    region = entry.get("region_name")
    override = entry.get("image_endpoint_override")
    if isinstance(region, str) and isinstance(override, str):
        result["endpoints"] = {region.upper(): override}
    return result


def openstack_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Our cloud keys from the ``OS_*`` variables the openstack CLI uses."""
    result = _first_set(
        environ,
        (
            ("identity_url", ("OS_AUTH_URL",)),
            ("username", ("OS_USERNAME",)),
            ("tenant_id", ("OS_PROJECT_ID", "OS_TENANT_ID")),
            ("tenant_name", ("OS_PROJECT_NAME", "OS_TENANT_NAME")),
            ("ca_bundle", ("OS_CACERT",)),
        ),
    )
    if environ.get("OS_PASSWORD"):
        result["password"] = Secret(environ["OS_PASSWORD"])
    elif environ.get("OS_AUTH_TOKEN"):
        result["token"] = Secret(environ["OS_AUTH_TOKEN"])
    if environ.get("OS_IMAGE_URL") and environ.get("OS_REGION_NAME"):
        result["endpoints"] = {environ["OS_REGION_NAME"].upper(): environ["OS_IMAGE_URL"]}
    return result


def find_clouds_yaml(environ: Mapping[str, str], config_folder: Path) -> Path | None:
    """The clouds.yaml openstacksdk would read (``./clouds.yaml`` is beside the config file)."""
    home = Path(environ.get("HOME") or Path.home())
    candidates = [
        environ.get("OS_CLIENT_CONFIG_FILE"),
        str(config_folder / "clouds.yaml"),
        str(home / ".config/openstack/clouds.yaml"),
        "/etc/openstack/clouds.yaml",
    ]
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if path.is_file():
            return path
    return None


def read_clouds_yaml(checks: Checks, entry: str, where: str) -> dict[str, Any]:
    """Our keys from the ``entry`` of the clouds.yaml found; ``{}`` and a problem otherwise."""
    path = find_clouds_yaml(checks.environ, checks.base)
    if path is None:
        checks.problem(where, f"no clouds.yaml found ({CLOUDS_YAML_PLACES})")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        checks.problem(where, f"cannot read {path}: {type(exc).__name__}")
        return {}
    clouds = data.get("clouds") if isinstance(data, dict) else None
    if not isinstance(clouds, dict) or not isinstance(clouds.get(entry), dict):
        known = ", ".join(clouds) if isinstance(clouds, dict) else "none"
        checks.problem(where, f"{path} has no cloud named {entry!r} (clouds: {known})")
        return {}
    return clouds_yaml_entry(clouds[entry])


def import_conventions(checks: Checks, body: dict[str, Any], where: str) -> dict[str, Any]:
    """A cloud's table filled from ``clouds.yaml`` (``os_cloud``) or ``OS_*`` (``from_env``).

    Keys written in the config file win over imported ones.  Imported secrets arrive as
    ``Secret`` objects, so they are neither warned about as plain text nor printed.
    """
    imported: dict[str, Any] = {}
    if "os_cloud" in body:
        entry = checks.string(body, "os_cloud", where)
        if entry is not None:
            imported = read_clouds_yaml(checks, entry, join(where, "os_cloud"))
    elif checks.boolean(body, "from_env", where, False):
        imported = openstack_environment(checks.environ)
        if not imported:
            checks.problem(join(where, "from_env"), "no OS_* variables are set")
    merged = {k: v for k, v in body.items() if k not in ("os_cloud", "from_env")}
    has_secret = any(k in merged for k in (*PASSWORD_KEYS, *TOKEN_KEYS))
    for key, value in imported.items():
        if key in ("password", "token") and has_secret:
            continue
        if key == "token":
            merged["token_env"] = value  # a Secret: the cloud reader takes it as it is
        elif key == "endpoints":
            merged["endpoints"] = {**value, **merged.get("endpoints", {})}
        else:
            merged.setdefault(key, value)
    return merged
