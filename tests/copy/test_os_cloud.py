"""``--os-cloud`` and ``OS_CLOUD`` outside ``copy``: the ``images`` command takes its cloud and
region from the named clouds.yaml entry; on the job commands they name the entry a config's
``from_env = true`` clouds read; ``run --dry-run`` is ``plan``, and ``run`` says which jobs it
runs.  Real child processes against the emulator."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.copy.helpers import by_source, listing, run
from tests.engine.helpers import DST, SRC, new_emulator
from transfer.cli.images_auth import credentials_from_args, region_from_args
from transfer.emulator import Emulator

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with new_emulator(seed=19) as emulator:
        await emulator.seed_image("KR1", SRC.tenant_id, size=1000, name="src-kr1-image")
        await emulator.seed_image("KR2", SRC.tenant_id, size=1000, name="src-kr2-image")
        await emulator.seed_image("KR1", DST.tenant_id, size=1000, name="dst-kr1-image")
        yield emulator


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_images_takes_the_os_cloud_entry_and_its_region_name(home: Path) -> None:
    listed = await run(home, "images", "list", "--json", OS_CLOUD="nhn")
    assert listed.code == 0, listed.err
    assert {i["name"] for i in json.loads(listed.out)["images"]} == {
        "src-kr1-image"
    }  # region_name KR1
    other = await run(home, "images", "list", "--json", "--region", "KR1", OS_CLOUD="other")
    assert other.code == 0, other.err
    assert {i["name"] for i in json.loads(other.out)["images"]} == {"dst-kr1-image"}
    missing = await run(home, "images", "list", OS_CLOUD="nope")
    assert missing.code == 2
    assert "has no cloud named 'nope' (nhn, other)" in missing.err


async def test_the_os_cloud_flag_wins_over_os_cloud_and_other_flags_over_the_entry(
    home: Path,
) -> None:
    env = {"HOME": str(home), "OS_CLIENT_CONFIG_FILE": str(home / "clouds.yaml"), "OS_CLOUD": "x"}
    args = argparse.Namespace(os_cloud="nhn", region="KR2")
    creds = credentials_from_args(args, env)
    assert (creds.name, creds.tenant_id, creds.username) == ("nhn", SRC.tenant_id, SRC.username)
    assert creds.password is not None and creds.password.reveal() == SRC.password  # secure.yaml
    assert region_from_args(args, env, creds) == "KR2"


def _config(home: Path, emu: Emulator) -> Path:
    """Two jobs from a ``from_env`` cloud (the OS_CLOUD entry) to a clouds.yaml cloud."""
    path = home / "config.toml"
    path.write_text(
        '[journal]\npath = "journal.db"\n\n'
        "[clouds.src]\nfrom_env = true\n\n"
        '[clouds.dst]\nos_cloud = "other"\n\n'
        '[[jobs]]\nname = "to-kr2"\nsource = { cloud = "src", region = "KR1" }\n'
        'targets = [ { cloud = "src", region = "KR2" } ]\n\n'
        '[[jobs]]\nname = "to-dst"\nsource = { cloud = "src", region = "KR1" }\n'
        'targets = [ { cloud = "dst", region = "KR1" } ]\n'
        f'[jobs.select]\nowner = "{SRC.tenant_id}"\n'
    )
    return path


async def test_job_commands_read_the_os_cloud_entry_for_from_env_clouds(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    config = str(_config(home, emu))
    dry = await run(home, "run", "-c", config, "--dry-run", "--os-cloud", "nhn")
    assert dry.code == 0, dry.err
    assert "job to-kr2: src/KR1 -> src/KR2" in dry.out and "+ src/KR2 src-kr1-image" in dry.out
    assert "job to-dst: src/KR1 -> dst/KR1" in dry.out
    assert by_source(await listing(emu, http, "KR2", SRC)) == {}  # a dry run changes nothing

    ran = await run(home, "run", "-c", config, "--no-progress", OS_CLOUD="nhn")
    assert ran.code == 0, ran.out + ran.err
    assert "running the 2 jobs of" in ran.err
    assert "  to-kr2: src/KR1 -> src/KR2\n  to-dst: src/KR1 -> dst/KR1\n" in ran.err
    assert len(by_source(await listing(emu, http, "KR2", SRC), "to-kr2")) == 1
    assert len(by_source(await listing(emu, http, "KR1", DST), "to-dst")) == 1

    one = await run(home, "run", "-c", config, "--job", "to-kr2", "--no-progress", OS_CLOUD="nhn")
    assert one.code == 0, one.err
    assert "running the" not in one.err  # the job asked for, no list
