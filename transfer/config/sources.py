"""The OpenStack conventions a cloud's credentials may come from, read in one place: a
``clouds.yaml`` entry (``os_cloud``: where openstacksdk looks for the file and its
``secure.yaml``, and our keys from its entry) and the ``OS_*`` variables of the openstack CLI
(``from_env``, which reads the entry ``OS_CLOUD`` names when it is set, as the CLI does; the
``images`` command, whose flags win over them; ``copy``'s CLOUDs).  Imported secrets arrive as
``Secret`` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from transfer.config.checks import Checks, join
from transfer.config.settings import Secret, identity_version
from transfer.errors import ConfigError

#: The places ``find_clouds_yaml`` tries, in its order, as a problem names them (each folder
#: with clouds.yaml, clouds.yml and clouds.json, as openstacksdk does).
CLOUDS_YAML_PLACES = (
    "OS_CLIENT_CONFIG_FILE, then clouds.yaml beside the config file, in ., "
    "~/.config/openstack, /etc/xdg/openstack, /etc/openstack"
)
#: The keys of a cloud table that give its secret: a password, an application credential's
#: secret, or a pre-issued token.
PASSWORD_KEYS = ("password", "password_env", "password_file")
APPLICATION_SECRET_KEYS = (
    "application_credential_secret",
    "application_credential_secret_env",
    "application_credential_secret_file",
)
TOKEN_KEYS = ("token_env", "token_file")
#: keystoneauth's ``auth_type`` names, by the secret each takes.
AUTH_TYPES = {
    "password": "password",
    "v2password": "password",
    "v3password": "password",
    "v3applicationcredential": "application_credential_secret",
    "token": "token",
    "v2token": "token",
    "v3token": "token",
}
#: Our string keys beside the secret, and their names in clouds.yaml's ``auth``.
_AUTH_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("identity_url", ("auth_url",)),
    ("username", ("username",)),
    ("tenant_id", ("project_id", "tenant_id")),
    ("tenant_name", ("project_name", "tenant_name")),
    ("user_domain_name", ("user_domain_name",)),
    ("user_domain_id", ("user_domain_id",)),
    ("project_domain_name", ("project_domain_name",)),
    ("project_domain_id", ("project_domain_id",)),
    ("application_credential_id", ("application_credential_id",)),
    ("application_credential_name", ("application_credential_name",)),
)

Report = Callable[[str], None]


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


def _one_secret(
    secrets: Mapping[str, Any], auth_type: Any, label: str, report: Report
) -> dict[str, Secret]:
    """The one secret ``auth_type`` takes (without one: a password, keystoneauth's default,
    else an application credential's secret, else a token), as ``{our key: Secret}``."""
    wanted: str | None = None
    if auth_type is not None:
        wanted = AUTH_TYPES.get(auth_type) if isinstance(auth_type, str) else None
        if wanted is None:
            report(
                f"{label} {auth_type!r} is not supported (expected one of {', '.join(AUTH_TYPES)})"
            )
            return {}
    for key in ("password", "application_credential_secret", "token"):
        value = secrets.get(key)
        if wanted in (None, key) and isinstance(value, str) and value:
            return {key: Secret(value)}
    return {}


def _with_version(url: str | None, version: Any, label: str, report: Report) -> str | None:
    """``url`` with the version an ``identity_api_version`` names added to a bare root; a
    problem when the URL names another one."""
    if url is None or version is None:
        return url
    path = {"3": "v3", "3.0": "v3", "2": "v2.0", "2.0": "v2.0"}.get(str(version).strip())
    if path is None:
        report(f"{label}: expected 3 or 2.0, got {str(version)!r}")
        return url
    try:
        named = identity_version(url)
    except ValueError:
        return url  # the cloud reader says what is wrong with the URL
    if named is None:
        return url.rstrip("/") + "/" + path
    if named != path:
        report(f"{label} is {version}, but the identity URL {url} ends in /{named}")
    return url


def clouds_yaml_entry(entry: Mapping[str, Any], report: Report) -> dict[str, Any]:
    """Our cloud keys from one ``clouds.yaml`` entry (openstacksdk's layout)."""
    auth = entry.get("auth") if isinstance(entry.get("auth"), Mapping) else {}
    assert isinstance(auth, Mapping)
    result = _first_set(auth, _AUTH_KEYS)
    result.update(_one_secret(auth, entry.get("auth_type"), "auth_type", report))
    url = _with_version(
        result.get("identity_url"),
        entry.get("identity_api_version"),
        "identity_api_version",
        report,
    )
    if url is not None:
        result["identity_url"] = url
    if isinstance(entry.get("cacert"), str):
        result["ca_bundle"] = entry["cacert"]
    if entry.get("verify") is False:
        result["insecure"] = True
    interface = entry.get("interface")
    if interface not in (None, "public"):
        report(f"interface {interface!r} is not supported: only the public endpoints are used")
    region = entry.get("region_name")
    if isinstance(region, str) and region:
        result["region"] = region
    override = entry.get("image_endpoint_override")
    if isinstance(region, str) and isinstance(override, str):
        result["endpoints"] = {region.upper(): override}
    return result


def _raise(message: str) -> None:
    raise ConfigError(message)


def openstack_environment(environ: Mapping[str, str], report: Report = _raise) -> dict[str, Any]:
    """Our cloud keys from the ``OS_*`` variables the openstack CLI uses."""
    result = _first_set(
        environ,
        (
            *(
                (ours, tuple(f"OS_{name.upper()}" for name in theirs))
                for ours, theirs in _AUTH_KEYS
            ),
            ("ca_bundle", ("OS_CACERT",)),
            ("region", ("OS_REGION_NAME",)),
        ),
    )
    secrets = {
        "password": environ.get("OS_PASSWORD"),
        "token": environ.get("OS_AUTH_TOKEN"),
        "application_credential_secret": environ.get("OS_APPLICATION_CREDENTIAL_SECRET"),
    }
    result.update(_one_secret(secrets, environ.get("OS_AUTH_TYPE") or None, "OS_AUTH_TYPE", report))
    url = _with_version(
        result.get("identity_url"),
        environ.get("OS_IDENTITY_API_VERSION") or None,
        "OS_IDENTITY_API_VERSION",
        report,
    )
    if url is not None:
        result["identity_url"] = url
    if environ.get("OS_IMAGE_URL") and environ.get("OS_REGION_NAME"):
        result["endpoints"] = {environ["OS_REGION_NAME"].upper(): environ["OS_IMAGE_URL"]}
    return result


def _config_folders(environ: Mapping[str, str], config_folder: Path | None) -> list[Path]:
    """The folders openstacksdk searches, in its order (the current directory, the user's
    config folder, the site's), with a config file's own folder first when there is one."""
    home = Path(environ.get("HOME") or Path.home())
    xdg_home = environ.get("XDG_CONFIG_HOME") or ""
    user = Path(xdg_home) if Path(xdg_home).is_absolute() else home / ".config"
    site = [Path(d) for d in (environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if d]
    folders = [Path.cwd(), user / "openstack", home / ".config" / "openstack"]
    folders += [d / "openstack" for d in site if d.is_absolute()]
    folders.append(Path("/etc/openstack"))
    if config_folder is not None:
        folders.insert(0, config_folder)
    return list(dict.fromkeys(folders))


def _find(
    environ: Mapping[str, str], stem: str, override: str, config_folder: Path | None
) -> Path | None:
    """The first ``STEM.yaml``/``.yml``/``.json`` of the search, after the file ``override``
    (an environment variable) names."""
    candidates = [Path(environ[override])] if environ.get(override) else []
    candidates += [
        folder / f"{stem}{suffix}"
        for folder in _config_folders(environ, config_folder)
        for suffix in (".yaml", ".yml", ".json")
    ]
    return next((path for path in candidates if path.is_file()), None)


def find_clouds_yaml(environ: Mapping[str, str], config_folder: Path | None) -> Path | None:
    """The clouds.yaml openstacksdk would read (with a config file: its folder first)."""
    return _find(environ, "clouds", "OS_CLIENT_CONFIG_FILE", config_folder)


def _merged(base: Any, over: Any) -> Any:
    """``over`` merged into ``base`` key by key, nested tables too (secure.yaml's rule)."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _merged(base.get(key), value) if key in base else value
    return merged


def _parse_yaml(path: Path) -> dict[str, Any]:
    import yaml  # here: only a command that reads a clouds.yaml pays for the parser

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}") from None
    clouds = data.get("clouds") if isinstance(data, dict) else None
    return clouds if isinstance(clouds, dict) else {}


def load_clouds_yaml(
    environ: Mapping[str, str], config_folder: Path | None = None
) -> tuple[Path | None, dict[str, Any]]:
    """The clouds.yaml found (None when none is) and its clouds, with the secure.yaml found
    (``OS_CLIENT_SECURE_FILE``, then the same folders) merged over them; a ConfigError when a
    file found cannot be read."""
    path = find_clouds_yaml(environ, config_folder)
    if path is None:
        return None, {}
    clouds = _parse_yaml(path)
    secure = _find(environ, "secure", "OS_CLIENT_SECURE_FILE", config_folder)
    if secure is not None:
        merged = _merged(clouds, _parse_yaml(secure))
        assert isinstance(merged, dict)
        clouds = merged
    return path, clouds


def read_clouds_yaml(checks: Checks, entry: str, where: str) -> dict[str, Any]:
    """Our keys from the ``entry`` of the clouds.yaml found; ``{}`` and a problem otherwise."""
    try:
        path, clouds = load_clouds_yaml(checks.environ, checks.base)
    except ConfigError as exc:
        checks.problem(where, str(exc))
        return {}
    if path is None:
        checks.problem(where, f"no clouds.yaml found ({CLOUDS_YAML_PLACES})")
        return {}
    if not isinstance(clouds.get(entry), dict):
        known = ", ".join(clouds) or "none"
        checks.problem(where, f"{path} has no cloud named {entry!r} (clouds: {known})")
        return {}
    return clouds_yaml_entry(
        clouds[entry], lambda message: checks.problem(where, f"{path}: {entry}: {message}")
    )


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
        if checks.environ.get("OS_CLOUD"):
            # The openstack CLI's rule: OS_CLOUD names the clouds.yaml entry to use.
            entry = checks.environ["OS_CLOUD"]
            imported = read_clouds_yaml(checks, entry, join(where, "from_env"))
        else:
            imported = openstack_environment(
                checks.environ, lambda message: checks.problem(join(where, "from_env"), message)
            )
            if not imported:
                checks.problem(join(where, "from_env"), "no OS_* variables are set")
    merged = {k: v for k, v in body.items() if k not in ("os_cloud", "from_env")}
    has_secret = any(k in merged for k in (*PASSWORD_KEYS, *APPLICATION_SECRET_KEYS, *TOKEN_KEYS))
    for key, value in imported.items():
        if key in ("password", "token", "application_credential_secret") and has_secret:
            continue
        if key == "token":
            merged["token_env"] = value  # a Secret: the cloud reader takes it as it is
        elif key == "endpoints":
            merged["endpoints"] = {**value, **merged.get("endpoints", {})}
        else:
            merged.setdefault(key, value)
    return merged
