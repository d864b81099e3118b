"""The engine against real Glance: a migration of mixed images between two real Glance regions
and tenants in pre-issued-token mode, checked through the API and by ``verify``; a re-run that
changes nothing; and a run killed mid-transfer, then resumed."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from interop.server import GlanceCloud
from tests.engine.helpers import MiB
from tests.interop.migration import (
    GlanceApi,
    SourceImage,
    Target,
    cli,
    start_cli,
    write_config,
)

TARGETS = (Target("dst", "KR2"), Target("src", "KR2"))


@pytest.fixture
async def api(glance: GlanceCloud) -> AsyncIterator[GlanceApi]:
    async with aiohttp.ClientSession() as session:
        yield GlanceApi(glance, session)


def snapshot(copies: dict[str, list[dict[str, object]]]) -> dict[str, list[tuple[object, ...]]]:
    return {
        source: sorted((c["id"], c["updated_at"], c["status"]) for c in records)
        for source, records in copies.items()
    }


async def test_mixed_images_migrate_between_real_glance_regions_and_tenants(
    glance: GlanceCloud, api: GlanceApi, tmp_path: Path
) -> None:
    job = "mig"
    images = [
        SourceImage(f"{job}-empty", 0),
        SourceImage(
            f"{job}-small",
            1027,
            fields={"os_distro": "ubuntu", "build": "7", "tags": ["golden", "lts"], "min_ram": 128},
        ),
        SourceImage(
            f"{job}-shared",
            3 * MiB + 17,
            fields={"disk_format": "raw", "min_disk": 1},
            members=("partner", "outsider"),
        ),
        SourceImage(f"{job}-large", 24 * MiB + 5, fields={"tags": ["big"]}, protect=True),
    ]
    sources = [await api.seed(image, seed=index) for index, image in enumerate(images)]
    config = write_config(tmp_path, glance, job, TARGETS)

    done = await cli(glance, "run", "-c", str(config), "--no-progress")
    assert done.code == 0, done
    assert await api.problems(sources, TARGETS, job) == []

    verified = await cli(glance, "verify", "-c", str(config))
    assert verified.code == 0, verified
    assert f"all {len(sources) * len(TARGETS)} copies verified" in verified.out

    before = {t.key: snapshot(await api.copies(t, job)) for t in TARGETS}
    again = await cli(glance, "run", "-c", str(config), "--no-progress")
    assert again.code == 0, again
    assert {t.key: snapshot(await api.copies(t, job)) for t in TARGETS} == before
    planned = await cli(glance, "plan", "-c", str(config), "--json")
    assert planned.code == 0, planned
    codes = [item["code"] for item in json.loads(planned.out)["jobs"][0]["items"]]
    assert codes == ["="] * len(sources) * len(TARGETS)


async def test_a_run_killed_mid_transfer_resumes_to_exactly_one_copy_each(
    glance: GlanceCloud, api: GlanceApi, tmp_path: Path
) -> None:
    job = "resume"
    images = [SourceImage(f"{job}-{index}", 6 * MiB + index) for index in range(6)]
    sources = [await api.seed(image, seed=50 + index) for index, image in enumerate(images)]
    # Slowed by the engine's own limit, so the kill lands while bytes move.
    config = write_config(tmp_path, glance, job, TARGETS, extra='bwlimit = "12M"')
    args = ("run", "-c", str(config), "--no-progress")

    async def started() -> bool:
        return any([await api.copies(t, job) for t in TARGETS])

    proc = await start_cli(glance, *args)
    deadline = time.monotonic() + 60
    while not await started():
        assert proc.returncode is None, (await proc.communicate())[1].decode()
        assert time.monotonic() < deadline, "no target image appeared"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.8)
    assert proc.returncode is None, "the run finished before the kill"
    proc.send_signal(signal.SIGKILL)
    await proc.communicate()

    held = {t.key: await api.copies(t, job) for t in TARGETS}
    statuses = [r["status"] for copies in held.values() for rs in copies.values() for r in rs]
    # Copies left half-made (queued, or saving until Glance notices the hang-up): the resume
    # has to repair them, not just copy what is missing.
    assert [s for s in statuses if s != "active"], f"no half-made copy to repair: {statuses}"
    duplicates = [s for copies in held.values() for s, r in copies.items() if len(r) > 1]
    assert duplicates == []

    done = await cli(glance, "run", "-c", str(config), "--no-progress")
    assert done.code == 0, done
    assert await api.problems(sources, TARGETS, job) == []
    verified = await cli(glance, "verify", "-c", str(config))
    assert verified.code == 0, verified
