"""The engine in-process against the emulator: a region-to-region and tenant-to-tenant copy,
a re-run that moves nothing, and the faults a real link brings (errors, drops, expired tokens,
a flipped byte).  Every check reads the clouds, not the engine's report."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import anyio

from tests.engine.helpers import (
    DST,
    JOB,
    OUTSIDER,
    PARTNER,
    SRC,
    TARGETS,
    MiB,
    copies,
    copy_problems,
    emulator_fixture,
    environment,
    job_toml,
    journal_problems,
    received,
    seed_many,
    share,
    write_config,
)
from transfer.cloud.sessions import open_clouds
from transfer.config.loader import load_config
from transfer.config.settings import HttpSettings
from transfer.emulator import Emulator
from transfer.engine.planning import build_plan
from transfer.engine.results import Difference, RunSummary
from transfer.engine.runner import run_plan
from transfer.engine.verification import verify_plan
from transfer.journal.sqlite import SqliteJournal
from transfer.planner import Code

#: Retries fast enough for tests, still several attempts deep.
FAST = HttpSettings(attempts=6, backoff_base=0.01, backoff_cap=0.1, retry_total=20.0)


emu = emulator_fixture(seed=7)


async def run_job(config_path: Path) -> tuple[RunSummary, list[Code]]:
    """Plan and run the job once; the plan's codes come back too."""
    config = load_config(config_path, environ=environment())
    async with (
        SqliteJournal(config.journal.path) as journal,
        open_clouds(config, FAST) as clouds,
    ):
        plan = await build_plan(config, config.jobs[JOB], clouds, journal)
        summary = await run_plan(plan, journal=journal)
    return summary, [item.code for item in plan.items]


async def verify_job(config_path: Path) -> list[Difference]:
    config = load_config(config_path, environ=environment())
    async with (
        SqliteJournal(config.journal.path) as journal,
        open_clouds(config, FAST) as clouds,
    ):
        return await verify_plan(await build_plan(config, config.jobs[JOB], clouds, journal))


async def test_region_and_tenant_copy_is_exact_then_a_rerun_moves_nothing(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    empty = await emu.seed_image("KR1", SRC.tenant_id, data=b"", name="empty")
    small = await emu.seed_image(
        "KR1",
        SRC.tenant_id,
        size=3 * MiB + 17,
        fill_seed=1,
        name="small",
        os_distro="ubuntu",
        os_version="22.04",
        min_disk=5,
        tags=["golden", "ubuntu"],
    )
    big = await emu.seed_image(
        "KR1", SRC.tenant_id, size=200 * MiB, fill_seed=2, name="big", os_type="windows"
    )
    shared = await emu.seed_image(
        "KR1",
        SRC.tenant_id,
        size=2 * MiB,
        fill_seed=3,
        name="shared",
        visibility="shared",
        app_version="3.1",
    )
    await share(emu, http, shared, [DST, PARTNER, OUTSIDER])
    locked = await emu.seed_image(
        "KR1", SRC.tenant_id, size=MiB, fill_seed=4, name="locked", protected=True
    )
    # Not selected (another owner): must not be copied anywhere.
    await emu.seed_image("KR1", DST.tenant_id, size=MiB, fill_seed=5, name="not-ours")
    sources = [empty, small, big, shared, locked]
    config = write_config(tmp_path, emu, job_toml())

    summary, codes = await run_job(config)

    assert codes == [Code.COPY] * 10
    assert summary.failed == []
    assert await copy_problems(emu, http, sources) == []
    assert await journal_problems(tmp_path, sources) == []
    # The member with credentials in the config accepted on each target; the outsider, whose
    # credentials the job lacks, stays pending (checked above); the owner is never a member.
    assert copies(emu, "KR1", DST.tenant_id)[shared][0]["visibility"] == "shared"
    assert await verify_job(config) == []

    before = received(emu)
    again, codes = await run_job(config)
    assert codes == [Code.IN_SYNC] * 10
    assert [r.outcome for r in again.results] == ["in-sync"] * 10
    assert received(emu) == before
    assert await copy_problems(emu, http, sources) == []


async def test_errors_drops_and_expired_tokens_do_not_stop_the_job(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sizes = [2 * MiB, 3 * MiB + 5, 512 * 1024, 4 * MiB, 0, 777, 5 * MiB, MiB]
    sources = await seed_many(emu, sizes, shared=[0])
    await share(emu, http, sources[0], [PARTNER])
    config = write_config(tmp_path, emu, job_toml(retries=10, transfers=2))
    # Slow enough that the run is still moving bytes when the second fault is armed.
    emu.set_faults(
        error_rate=0.15,
        retry_after=0.05,
        bandwidth=40_000_000,
        drop_upload_after=300 * 1024,
        drops_remaining=1,
    )
    tokens_at_expiry = 0

    async def saboteur() -> None:
        nonlocal tokens_at_expiry
        # The drop budget is shared by uploads and downloads: arm one kind at a time so
        # each really happens once.  The emulator signals no event for it, so poll.
        while emu.faults.drops_remaining != 0:  # noqa: ASYNC110
            await anyio.sleep(0.002)
        emu.expire_tokens()  # every token the engine holds is refused from now on
        tokens_at_expiry = emu.identity_counters()["requests"].get("token", 0)
        emu.set_faults(drop_upload_after=None, drop_download_after=200 * 1024, drops_remaining=1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(saboteur)
        summary, _ = await run_job(config)
        tg.cancel_scope.cancel()
    tokens_after = emu.identity_counters()["requests"].get("token", 0)
    drops_left = emu.faults.drops_remaining
    emu.set_faults(error_rate=0.0, bandwidth=None, drop_download_after=None)

    assert drops_left == 0  # the upload was cut, and so was a download after it
    assert tokens_after > tokens_at_expiry > 0  # expired tokens were replaced mid-run
    assert summary.failed == [], [r.error for r in summary.failed]
    assert await copy_problems(emu, http, sources) == []
    assert await journal_problems(tmp_path, sources) == []
    assert await verify_job(config) == []


async def test_a_flipped_byte_is_caught_and_the_bad_copy_replaced(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources = await seed_many(emu, [3 * MiB])
    config = write_config(tmp_path, emu, job_toml(targets=[("dst", "KR1")]))
    emu.set_faults(corrupt_downloads=1)

    summary, _ = await run_job(config)

    assert emu.faults.corrupt_downloads == 0  # the corruption did happen
    [result] = summary.results
    assert result.outcome == "copied", result.error
    assert received(emu) == 2 * 3 * MiB  # the image was sent again, whole
    assert any("deleted target" in w for w in result.warnings), result.warnings
    # Only the good copy remains: the bad one was deleted, not left beside it.
    target = (TARGETS[1],)
    assert await copy_problems(emu, http, sources, target) == []
    assert await journal_problems(tmp_path, sources, target) == []
    assert await verify_job(config) == []


async def test_a_pair_found_in_sync_is_journaled_done_whatever_a_killed_run_wrote(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources = await seed_many(emu, [MiB, 0])
    config = write_config(tmp_path, emu, job_toml())
    summary, _ = await run_job(config)
    assert summary.failed == []
    # What a run killed inside the last step leaves behind: entries still "running".
    async with SqliteJournal(tmp_path / "journal.db") as journal:
        for source_id in sources:
            for target in TARGETS:
                await journal.update_entry(JOB, source_id, target.key, state="running")

    again, codes = await run_job(config)

    assert codes == [Code.IN_SYNC] * 4
    assert again.bytes == 0
    assert await journal_problems(tmp_path, sources) == []
    assert await copy_problems(emu, http, sources) == []
