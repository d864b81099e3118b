"""The demo's second part: the most common migration into NHN Cloud, from a private OpenStack.

A second emulator plays the private cloud: upstream Glance's rules (no ``os_type`` needed) and
Keystone v3 only, in region RegionOne.  Its credentials are a ``clouds.yaml`` entry as
``openstack`` users keep them (the identity root with ``identity_api_version: 3``, project and
user by name within the ``Default`` domain), which the config names with ``os_cloud``; the
target is the demo's NHN tenant on Keystone v2.0.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from transfer.config.loader import load_config
from transfer.config.settings import Config, JobConfig
from transfer.emulator import Emulator

MiB = 1 << 20
REGION = "RegionOne"

Migrate = Callable[[Config, JobConfig, Path], Awaitable[int]]

CLOUDS_YAML = """\
# Written by `image-transfer demo`: the private OpenStack as the openstack CLI knows it.
clouds:
  private:
    auth:
      auth_url: {auth_url}
      username: {username}
      password: {password}
      project_name: {project}
      project_domain_name: Default
      user_domain_name: Default
    identity_api_version: 3
    region_name: {region}
"""

CONFIG = """\
# Written by `image-transfer demo`: a private OpenStack (Keystone v3) into NHN Cloud (v2.0).
[journal]
path = "private-journal.db"

[log]
level = "warning"
format = "console"

[clouds.private]
os_cloud = "private"   # clouds.yaml beside this file

[clouds.nhn]
identity_url = "{nhn_identity_url}"
tenant_id = "{dst_id}"
username = "{dst_user}"
password_env = "DEMO_DST_PASSWORD"

[[jobs]]
name = "private-to-nhn"
source = {{ cloud = "private", region = "{region}" }}
targets = [ {{ cloud = "nhn", region = "KR1" }} ]

[jobs.select]
owner = "{src_id}"

[jobs.copy]
default_os_type = "linux"   # NHN needs one; upstream Glance images often lack it
"""

#: Name, MiB before ``--scale``, fill seed, metadata: images without NHN's os_type, mostly.
IMAGES: tuple[tuple[str, float, int, dict[str, Any]], ...] = (
    ("legacy-web-2019", 12, 21, {"os_distro": "ubuntu", "hw_disk_bus": "virtio"}),
    ("legacy-db-2020", 8, 22, {"os_distro": "centos"}),
    ("win-ad-2016", 6, 23, {"os_type": "windows"}),
)


async def private_openstack(workdir: Path, nhn: Emulator, scale: float, migrate: Migrate) -> int:
    """Seed a private OpenStack, write its clouds.yaml and config, migrate it into ``nhn``."""
    src, dst = nhn.tenants[0], nhn.tenants[1]
    async with Emulator(
        flavour="glance", identity_versions=("v3",), regions=(REGION,), tenants=nhn.tenants
    ) as private:
        print(
            f"\nprivate OpenStack: Keystone v3 {private.identity_v3_url}, region {REGION} "
            f"{private.regions[REGION]} (upstream Glance's rules)"
        )
        for name, mib, fill_seed, fields in IMAGES:
            await private.seed_image(
                REGION,
                src.tenant_id,
                size=int(mib * scale * MiB),
                fill_seed=fill_seed,
                name=name,
                **fields,
            )
        clouds_yaml = workdir / "clouds.yaml"
        clouds_yaml.write_text(
            CLOUDS_YAML.format(
                auth_url=private.identity_root,
                username=src.username,
                password=src.password,
                project=src.name,
                region=REGION,
            )
        )
        clouds_yaml.chmod(0o600)
        config_path = workdir / "private-config.toml"
        config_path.write_text(
            CONFIG.format(
                nhn_identity_url=nhn.identity_url,
                dst_id=dst.tenant_id,
                dst_user=dst.username,
                src_id=src.tenant_id,
                region=REGION,
            )
        )
        # This clouds.yaml, not one the user's environment points to.
        environ = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml)}
        config = load_config(config_path, environ=environ)
        return await migrate(config, config.jobs["private-to-nhn"], config_path)
