"""Credentials from the OpenStack conventions operators already use: ``clouds.yaml`` and
``OS_*`` variables, in a real run against the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.engine.helpers import (
    DST,
    SRC,
    MiB,
    cli,
    copy_problems,
    job_toml,
    new_emulator,
    seed_many,
)
from transfer.config.loader import load_config
from transfer.emulator import Emulator
from transfer.errors import ConfigError


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with new_emulator(seed=11) as emulator:
        yield emulator


async def test_clouds_yaml_and_os_variables_drive_a_real_run(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ids = await seed_many(emu, [MiB, 0])
    (tmp_path / "clouds.yaml").write_text(
        f"""
clouds:
  nhn-src:
    auth:
      auth_url: {emu.identity_url}
      username: {SRC.username}
      password: {SRC.password}
      project_id: {SRC.tenant_id}
    region_name: KR1
"""
    )
    config = tmp_path / "config.toml"
    config.write_text(
        '[journal]\npath = "journal.db"\n'
        '[clouds.src]\nos_cloud = "nhn-src"\n'
        "[clouds.dst]\nfrom_env = true\n" + job_toml()
    )
    env = {
        "OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml"),
        "OS_AUTH_URL": emu.identity_url,
        "OS_USERNAME": DST.username,
        "OS_PASSWORD": DST.password,
        "OS_PROJECT_ID": DST.tenant_id,
    }
    run = await cli("run", "-c", str(config), "--no-progress", env=env)
    assert run.code == 0, run.err
    # A password from clouds.yaml is not a "plain password in the config file".
    assert "plain password" not in run.err
    assert await copy_problems(emu, http, ids) == []
    for secret in (SRC.password, DST.password):
        assert secret not in run.out + run.err


def test_a_missing_clouds_yaml_entry_names_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "clouds.yaml").write_text("clouds:\n  one: {auth: {username: u}}\n")
    config = tmp_path / "config.toml"
    config.write_text('[clouds.src]\nos_cloud = "two"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={"OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml")})
    assert any(
        "clouds.src.os_cloud: " in p and "has no cloud named 'two' (clouds: one)" in p
        for p in caught.value.problems
    ), caught.value.problems


def test_from_env_without_variables_says_so(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[clouds.src]\nfrom_env = true\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={})
    assert any("clouds.src.from_env: no OS_* variables are set" in p for p in caught.value.problems)
