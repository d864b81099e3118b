"""The ``images`` command against a Keystone v3 cloud, as a real child process: a clouds.yaml
entry's ``region_name`` is the default region, and the openstack CLI's ``OS_*`` variables of
a v3 cloud (domains, version, application credential) work as they do there."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engine.helpers import SRC, TENANTS, cli
from transfer.emulator import Emulator

REGION = "RegionOne"


@pytest.fixture
async def private() -> AsyncIterator[Emulator]:
    async with Emulator(
        flavour="glance", identity_versions=("v3",), regions=(REGION, "RegionTwo"), tenants=TENANTS
    ) as emu:
        await emu.seed_image(REGION, SRC.tenant_id, size=1000, name="in-region-one")
        yield emu


def os_variables(emu: Emulator) -> dict[str, str]:
    return {
        "OS_AUTH_URL": emu.identity_root,
        "OS_IDENTITY_API_VERSION": "3",
        "OS_USERNAME": SRC.username,
        "OS_PASSWORD": SRC.password,
        "OS_PROJECT_NAME": SRC.name,
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": REGION,
    }


async def test_a_clouds_yaml_region_name_is_the_default_region(
    private: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "clouds.yaml").write_text(
        f"""clouds:
  private:
    auth:
      auth_url: {private.identity_v3_url}
      username: {SRC.username}
      password: {SRC.password}
      project_id: {SRC.tenant_id}
      user_domain_name: Default
    region_name: {REGION}
"""
    )
    config = tmp_path / "config.toml"
    config.write_text('[clouds.private]\nos_cloud = "private"\n')
    env = {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml"), "OS_REGION_NAME": "RegionTwo"}
    listed = await cli("images", "-c", str(config), "--cloud", "private", "list", "--json", env=env)
    assert listed.code == 0, listed.err
    assert [i["name"] for i in json.loads(listed.out)["images"]] == ["in-region-one"]
    # The command line still wins over the cloud's region.
    other = await cli(
        "images", "-c", str(config), "--cloud", "private", "--region", "RegionTwo", "list",
        "--json", env=env,
    )  # fmt: skip
    assert other.code == 0, other.err
    assert json.loads(other.out)["images"] == []


async def test_os_variables_of_a_v3_cloud_drive_the_command(private: Emulator) -> None:
    listed = await cli("images", "list", "--json", env=os_variables(private))
    assert listed.code == 0, listed.err
    assert [i["name"] for i in json.loads(listed.out)["images"]] == ["in-region-one"]
    assert SRC.password not in listed.out + listed.err


async def test_a_v3_user_without_its_domain_is_a_usage_error(private: Emulator) -> None:
    env = os_variables(private)
    del env["OS_USER_DOMAIN_NAME"]
    env["OS_AUTH_URL"] = private.identity_v3_url
    refused = await cli("images", "list", env=env)
    assert refused.code == 2, refused.err
    assert (
        "expected OS_USER_DOMAIN_NAME or OS_USER_DOMAIN_ID with a Keystone v3 user name"
        in refused.err
    )
    assert SRC.password not in refused.err
