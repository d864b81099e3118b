"""Credentials from the OpenStack conventions operators already use: ``clouds.yaml`` and
``OS_*`` variables, in a real run against the emulator; where clouds.yaml is looked for; and the
``images`` command reading the ``OS_*`` variables as a config's ``from_env`` does."""

from __future__ import annotations

import argparse
from pathlib import Path

import aiohttp
import pytest

from tests.config_files import write_private
from tests.engine.helpers import (
    DST,
    SRC,
    MiB,
    cli,
    copy_problems,
    emulator_fixture,
    job_toml,
    seed_many,
)
from transfer.cli.images import configure, credentials_from_args
from transfer.config.loader import load_config, load_credentials
from transfer.emulator import Emulator
from transfer.errors import ConfigError

emu = emulator_fixture(seed=11)


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


def test_clouds_yaml_is_looked_for_beside_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    clouds_yaml = write_private(
        folder / "clouds.yaml",
        "clouds:\n  nhn:\n    auth: {username: op, password: yaml-pw, project_id: t-yaml}\n",
    )
    config = write_private(folder / "config.toml", '[clouds.src]\nos_cloud = "nhn"\n')
    monkeypatch.chdir(tmp_path)  # ./clouds.yaml is the config file's folder, not the cwd
    environ = {"HOME": str(tmp_path)}
    creds = load_credentials(config, "src", environ=environ)
    assert creds.tenant_id == "t-yaml" and creds.username == "op"
    assert creds.password is not None and creds.password.reveal() == "yaml-pw"

    clouds_yaml.unlink()
    with pytest.raises(ConfigError) as caught:
        load_credentials(config, "src", environ=environ)
    assert (
        f"{config}: clouds.src.os_cloud: no clouds.yaml found (OS_CLIENT_CONFIG_FILE, then "
        "clouds.yaml beside the config file, in ., ~/.config/openstack, /etc/xdg/openstack, "
        "/etc/openstack)"
    ) in caught.value.problems


def _images_flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args([*argv, "list"])


def test_the_images_command_reads_the_os_variables_as_from_env_does(tmp_path: Path) -> None:
    ca = write_private(tmp_path / "ca.pem", "not checked here")
    env = {
        "OS_AUTH_URL": "https://id.example/v2.0",
        "OS_USERNAME": "op",
        "OS_PASSWORD": "env-pw",
        "OS_PROJECT_ID": "t-env",
        "OS_PROJECT_NAME": "p-env",
        "OS_CACERT": str(ca),
        "OS_REGION_NAME": "kr1",
        "OS_IMAGE_URL": "https://img.example",
    }
    config = write_private(tmp_path / "config.toml", "[clouds.env]\nfrom_env = true\n")
    from_env = load_credentials(config, "env", environ=env)
    images = credentials_from_args(_images_flags(), env)
    for key in ("identity_url", "tenant_id", "tenant_name", "username", "password", "token"):
        assert getattr(images, key) == getattr(from_env, key), key
    assert images.endpoints == from_env.endpoints == {"KR1": "https://img.example"}
    assert images.ca_bundle == from_env.ca_bundle == str(ca)

    # Two ways the images command has always differed: OS_IMAGE_URL is the endpoint of the
    # region in use (--region's when given) ...
    flagged = credentials_from_args(_images_flags("--region", "KR2"), env)
    assert flagged.endpoints == {"KR2": "https://img.example"}
    # ... and the Keystone v2.0 names win over the project names when both are set.
    both = {**env, "OS_TENANT_ID": "t-v2", "OS_TENANT_NAME": "n-v2"}
    images = credentials_from_args(_images_flags(), both)
    assert (images.tenant_id, images.tenant_name) == ("t-v2", "n-v2")
    from_env = load_credentials(config, "env", environ=both)
    assert (from_env.tenant_id, from_env.tenant_name) == ("t-env", "p-env")
