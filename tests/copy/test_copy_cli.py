"""``copy`` and ``sync`` as a user runs them: real child processes against the emulator, clouds
from a clouds.yaml (passwords in secure.yaml) under a temporary HOME, the journal at its default
path there.  Every check reads the clouds themselves (the emulator's records or its API)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import token
from tests.copy.helpers import (
    by_source,
    job_name,
    journal_path,
    listing,
    run,
)
from tests.emulator.helpers import Api
from tests.engine.helpers import DST, SRC, Target, copy_problems, new_emulator, received
from transfer.emulator import Emulator
from transfer.journal.sqlite import SqliteJournal

pytestmark = pytest.mark.asyncio(loop_scope="module")

KR2 = Target("nhn/KR2", "KR2", SRC)
OTHER = Target("other/KR1", "KR1", DST)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with new_emulator(seed=18) as emulator:
        yield emulator


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def seed(emu: Emulator, *names: str, size: int = 300_000) -> dict[str, str]:
    """Source images in nhn/KR1 (owned by src), name -> id."""
    return {
        name: await emu.seed_image(
            "KR1", SRC.tenant_id, size=size, fill_seed=n, name=name, tags=["t"], build=str(n)
        )
        for n, name in enumerate(names)
    }


async def test_copy_a_glob_dry_run_then_copy_then_rerun_resumes_without_copying_again(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    ids = await seed(emu, "golden-a", "golden-b", "golden-c", "scratch-a")
    golden = [ids["golden-a"], ids["golden-b"], ids["golden-c"]]
    line = ("copy", "nhn", "nhn:KR2", "other:KR1", "--include", "golden-*", "--no-progress")

    dry = await run(home, *line, "--dry-run")
    assert dry.code == 0, dry.err
    planned = [line for line in dry.out.splitlines() if line.startswith("+ ")]
    assert len(planned) == 6 and all(" golden-" in p for p in planned)  # 3 images x 2 targets
    assert "scratch" not in dry.out
    assert by_source(await listing(emu, http, "KR2", SRC)) == {}
    assert by_source(await listing(emu, http, "KR1", DST)) == {}

    first = await run(home, *line)
    assert first.code == 0, first.out + first.err
    name = job_name(first)
    assert job_name(dry) == name
    assert (
        await copy_problems(
            emu, http, golden, [KR2, OTHER], job=name, config_tenants=[SRC.tenant_id, DST.tenant_id]
        )
        == []
    )
    async with SqliteJournal(journal_path(home)) as journal:
        entries = await journal.entries(name)
    assert sorted(k for k, e in entries.items() if e.state == "done") == sorted(
        (i, t.key) for i in golden for t in (KR2, OTHER)
    )

    moved = received(emu)
    again = await run(home, *line)
    assert again.code == 0, again.out + again.err
    assert job_name(again) == name
    assert received(emu) == moved  # nothing copied twice

    # The same clouds named through --os-cloud (an empty CLOUD) are the same job.
    spelled = await run(home, "copy", ":", ":KR2", "other:KR1", "-v", "--include", "golden-*",
                        "--os-cloud", "nhn", "--no-progress")  # fmt: skip
    assert spelled.code == 0, spelled.err
    assert job_name(spelled) == name
    assert received(emu) == moved
    for target in (KR2, OTHER):
        held = by_source(await listing(emu, http, target.region, target.owner), name)
        assert {s: len(c) for s, c in held.items()} == dict.fromkeys(golden, 1)


async def test_sync_prunes_a_marked_copy_whose_source_is_gone_and_nothing_else(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    ids = await seed(emu, "sync-a", "sync-b")
    manual = await emu.seed_image(
        "KR2", SRC.tenant_id, size=1000, fill_seed=9, name="sync-manual"
    )  # the tenant's own image in the target, never made by this tool
    line = ("sync", "nhn:KR1", "nhn:KR2", "--include", "sync-*", "--no-progress")
    first = await run(home, *line)
    assert first.code == 0, first.err
    name = job_name(first)
    before = await listing(emu, http, "KR2", SRC)
    copies = by_source(before, name)
    assert sorted(copies) == sorted(ids.values())
    doomed = copies[ids["sync-a"]][0]["id"]

    assert await _delete(emu, http, "KR1", ids["sync-a"]) == 204

    refused = await run(home, *line, "--max-delete", "0")
    assert refused.code == 1, refused.out + refused.err
    assert "more than max_delete 0" in refused.err
    assert doomed in {i["id"] for i in await listing(emu, http, "KR2", SRC)}

    pruned = await run(home, *line)
    assert pruned.code == 0, pruned.out + pruned.err
    assert job_name(pruned) == name
    left = await listing(emu, http, "KR2", SRC)
    assert doomed not in {i["id"] for i in left}
    assert manual in {i["id"] for i in left}
    assert sorted(by_source(left, name)) == [ids["sync-b"]]
    # Other jobs' copies are not this job's to prune.
    others = {i["id"] for i in before if i.get("image_transfer_job") not in (None, name)}
    assert others <= {i["id"] for i in left}


async def _delete(emu: Emulator, http: aiohttp.ClientSession, region: str, image: str) -> int:
    api = Api(http, emu.regions[region], await token(emu, SRC, http))
    return (await api.call("DELETE", f"/v2/images/{image}")).status


async def test_an_unknown_cloud_or_a_missing_region_is_a_usage_error_naming_the_argument(
    home: Path,
) -> None:
    unknown, no_region, bad_region, empty_env = await asyncio.gather(
        run(home, "copy", "nhn:KR1", "nope:KR2"),
        run(home, "copy", "other", "nhn:KR2"),
        run(home, "sync", "nhn:KR1", "nhn:K R"),
        run(home, "copy", "env:KR1", "nhn:KR2"),
    )
    assert unknown.code == 2
    assert "argument DST 'nope:KR2': no cloud named 'nope'" in unknown.err
    assert "nhn, other" in unknown.err  # the clouds it knows
    assert no_region.code == 2
    assert "argument SRC 'other': no region: write other:REGION" in no_region.err
    assert bad_region.code == 2
    assert "argument DST 'nhn:K R': expected a region name like KR1" in bad_region.err
    assert empty_env.code == 2
    assert "argument SRC 'env:KR1'" in empty_env.err and "no OS_* variables" in empty_env.err
    for outcome in (unknown, no_region, bad_region, empty_env):
        assert "Traceback" not in outcome.err
        assert SRC.password not in outcome.err and DST.password not in outcome.err
