"""``image-transfer emulator --write-config DIR``: a ready ``config.toml`` (one job between the
emulator's regions and tenants) and a ``clouds.yaml`` (openstacksdk's layout: one entry per
tenant) for the clouds a running emulator serves, and the words that say how to use them.

The passwords go into one file per tenant beside the config (``password_file``, mode 0600) and
into ``clouds.yaml`` (mode 0600, as the openstack CLI expects it); the config itself holds none.
The addresses hold the emulator's ports: they stay valid across restarts on the same ``--port``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from transfer.emulator.cloud import Emulator
from transfer.emulator.identity import TenantSpec

DOMAIN = "Default"


def free_port_block(host: str, count: int, *, first: int = 20000, last: int = 60000) -> int:
    """A port N with N..N+count-1 all free on ``host`` now (the identity port and the regions'
    after it, as ``--port N`` lays them out).  Picked from a fixed range, in steps of 100."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for base in range(first, last, 100):
        taken = False
        for port in range(base, base + count):
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return base
    raise OSError(f"no {count} free consecutive ports on {host} between {first} and {last}")


def _v3(emu: Emulator) -> bool:
    return "v2.0" not in emu.identity_versions


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


def _cloud_table(emu: Emulator, tenant: TenantSpec) -> str:
    lines = [
        f"[clouds.{_toml(tenant.name)}]",
        f"identity_url = {_toml(emu.identity_url)}",
        f"tenant_id = {_toml(tenant.tenant_id)}",
        f"username = {_toml(tenant.username)}",
    ]
    if _v3(emu):
        lines.append(f"user_domain_name = {_toml(DOMAIN)}")
    lines.append(f"password_file = {_toml(tenant.name + '.password')}")
    return "\n".join(lines) + "\n"


def _job(emu: Emulator) -> str:
    regions = list(emu.regions)
    source, *others = emu.tenants
    targets = []
    if len(regions) > 1:
        targets.append((source.name, regions[1]))
    if others:
        targets.append((others[0].name, regions[0]))
    if not targets:
        return "# One region and one tenant: a job needs a second region or tenant to copy to.\n"
    target_list = ", ".join(f"{{ cloud = {_toml(c)}, region = {_toml(r)} }}" for c, r in targets)
    copy = '\n[jobs.copy]\ndefault_os_type = "linux"\n' if emu.flavour == "nhn" else ""
    return (
        "[[jobs]]\n"
        'name = "emulator"\n'
        f"source = {{ cloud = {_toml(source.name)}, region = {_toml(regions[0])} }}\n"
        f"targets = [ {target_list} ]\n"
        "\n[jobs.select]\n"
        f"owner = {_toml(source.tenant_id)}   # the source tenant's own images\n" + copy
    )


def config_toml(emu: Emulator) -> str:
    clouds = "\n".join(_cloud_table(emu, t) for t in emu.tenants)
    return (
        "# Written by `image-transfer emulator --write-config`: its clouds and one job.\n"
        f"# Identity {emu.identity_url}; regions "
        + ", ".join(f"{name} {url}" for name, url in emu.regions.items())
        + ".\n\n"
        '[journal]\npath = "journal.db"\n\n' + clouds + "\n" + _job(emu)
    )


def clouds_yaml(emu: Emulator) -> str:
    """One entry per tenant, in the region of the emulator's first region."""
    region = next(iter(emu.regions))
    lines = [
        "# Written by `image-transfer emulator --write-config`: the emulator's tenants as the",
        "# openstack CLI and openstacksdk know them (openstack --os-cloud NAME image list).",
        "clouds:",
    ]
    for tenant in emu.tenants:
        lines += [
            f"  {json.dumps(tenant.name)}:",
            "    auth:",
            f"      auth_url: {json.dumps(emu.identity_root if _v3(emu) else emu.identity_url)}",
            f"      username: {json.dumps(tenant.username)}",
            f"      password: {json.dumps(tenant.password)}",
            f"      project_id: {json.dumps(tenant.tenant_id)}",
        ]
        if _v3(emu):
            lines.append(f"      user_domain_name: {json.dumps(DOMAIN)}")
        lines += [
            f"    identity_api_version: {'3' if _v3(emu) else '2.0'}",
            f"    region_name: {json.dumps(region)}",
        ]
    return "\n".join(lines) + "\n"


def _private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def write_configs(emu: Emulator, directory: Path) -> list[Path]:
    """Write config.toml, clouds.yaml and the password files; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for tenant in emu.tenants:
        path = directory / f"{tenant.name}.password"
        _private(path, tenant.password + "\n")
        written.append(path)
    config = directory / "config.toml"
    config.write_text(config_toml(emu))
    yaml_path = directory / "clouds.yaml"
    _private(yaml_path, clouds_yaml(emu))
    return [config, yaml_path, *written]


def how_to_use(emu: Emulator, directory: Path, port: int, picked: bool) -> str:
    """What to do with the files, for stderr."""
    config, yaml_path = directory / "config.toml", directory / "clouds.yaml"
    cloud = emu.tenants[0].name
    region = next(iter(emu.regions))
    ports = f"--port {port}" + (" (picked: free now)" if picked else "")
    return (
        f"emulator: wrote {config} and {yaml_path} for {ports}; try:\n"
        f"  image-transfer plan -c {config}\n"
        f"  image-transfer run -c {config}\n"
        f"  image-transfer images -c {config} --cloud {cloud} --region {region} list\n"
        f"  OS_CLIENT_CONFIG_FILE={yaml_path} openstack --os-cloud {cloud} image list\n"
        "They stay valid while the emulator listens on these ports: start it again with "
        f"--port {port} (and --state-dir DIR to keep its images).\n"
    )
