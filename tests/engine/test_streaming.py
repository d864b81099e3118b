"""A run on one host works the plan while the source is still being listed: the first images
are copied while later pages are read; a stop or a failed page ends the listing as it ends the
run, and the next run still makes exactly one copy of each image (listed by plain HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.conftest import token
from tests.emulator.helpers import Api
from tests.engine.helpers import (
    JOB,
    PARTNER,
    SRC,
    copies,
    copy_problems,
    environment,
    job_toml,
    journal_problems,
    new_emulator,
    share,
    write_config,
)
from tests.engine.test_requests import FAST, KR2, TO_KR2, requests, seed, watch
from transfer.cloud.sessions import open_clouds
from transfer.config.loader import load_config
from transfer.emulator import Emulator
from transfer.engine.planning import plan_for_run
from transfer.engine.results import RunOutcome, RunSummary
from transfer.engine.runner import run_plan
from transfer.errors import TransferError
from transfer.journal.sqlite import SqliteJournal

COUNT = 12
#: Pages of 3 images, every list request answered after 0.4 s: the source's 12 images take 5
#: pages, 2 s of listing, while a copy takes milliseconds.
LIST_LATENCY = 0.4


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with new_emulator(seed=23, default_page_size=3, max_page_size=3) as emulator:
        yield emulator


async def run_streamed(config_path: Path, stop: anyio.Event | None = None) -> RunSummary:
    """A run as ``image-transfer run`` makes it on one host: planned as the source is listed."""
    config = load_config(config_path, environ=environment())
    async with (
        SqliteJournal(config.journal.path) as journal,
        open_clouds(config, FAST) as clouds,
    ):
        plan, ticket = await plan_for_run(config, config.jobs[JOB], clouds, journal, "w1")
        assert ticket is None and not plan.complete
        return await run_plan(plan, journal=journal, stop=stop)


async def ready(emu: Emulator, tmp_path: Path) -> tuple[list[str], Path]:
    sources = await seed(emu, COUNT, prefix="stream")
    config = write_config(tmp_path, emu, job_toml(targets=TO_KR2, transfers=2))
    emu.set_faults(latency=LIST_LATENCY, latency_routes={"list"})
    emu.reset_counters()
    return sources, config


async def until(condition: Callable[[], bool]) -> None:
    while True:
        if condition():
            return
        await anyio.sleep(0.005)


def at_most_one_copy_each(emu: Emulator) -> dict[str, int]:
    """Sources with more than one copy on the target (none, when nothing was duplicated)."""
    return {s: len(c) for s, c in copies(emu, "KR2", SRC.tenant_id).items() if len(c) > 1}


async def test_the_first_images_are_copied_while_the_source_is_still_being_listed(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources, config = await ready(emu, tmp_path)
    wanted = {("KR2", "upload", 1), ("KR1", "list", 4)}
    seen: dict[Any, float] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, emu, wanted, seen)
        summary = await run_streamed(config)
        tg.cancel_scope.cancel()

    assert summary.failed == [], [r.error for r in summary.failed]
    assert wanted <= seen.keys(), seen
    # The first upload came in before the source's fourth page was asked for.
    assert seen[("KR2", "upload", 1)] < seen[("KR1", "list", 4)], seen
    assert requests(emu, "KR1")["list"] == 5  # each page read once
    assert [i.code.value for i in summary.plan] == ["+"] * COUNT
    assert await copy_problems(emu, http, sources, KR2) == []
    assert await journal_problems(tmp_path, sources, KR2) == []

    # A rerun plans the same way and finds every pair in sync.
    emu.set_faults(latency=0.0)
    again = await run_streamed(config)
    assert [r.outcome for r in again.results] == ["in-sync"] * COUNT


async def test_a_stop_during_the_listing_ends_it_and_the_next_run_copies_the_rest_once(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources, config = await ready(emu, tmp_path)
    stop = anyio.Event()

    async def stop_after_the_first_upload() -> None:
        await until(lambda: emu.counters("KR2")["requests"].get("upload", 0) >= 1)
        stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_after_the_first_upload)
        summary = await run_streamed(config, stop)

    assert summary.interrupted and summary.outcome is RunOutcome.INTERRUPTED
    assert requests(emu, "KR1")["list"] < 5  # the listing stopped with the run
    assert 1 <= len(summary.results) < COUNT
    assert at_most_one_copy_each(emu) == {}

    emu.set_faults(latency=0.0)
    again = await run_streamed(config)
    assert again.failed == [] and not again.interrupted
    assert await copy_problems(emu, http, sources, KR2) == []
    assert await journal_problems(tmp_path, sources, KR2) == []


async def test_a_page_that_fails_ends_the_run_after_the_images_under_way_with_its_error(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources, config = await ready(emu, tmp_path)

    async def break_the_listing() -> None:
        # Once the third source page is asked for (the first two may be read while the
        # target is listed), every later list request fails.
        await until(lambda: emu.counters("KR1")["requests"].get("list", 0) >= 3)
        emu.set_faults(error_rate=1.0, error_routes={"list"}, error_statuses=(500,))

    failure: list[TransferError] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(break_the_listing)
        try:
            await run_streamed(config)
        except TransferError as exc:
            failure.append(exc)
    assert [str(e).split(":")[:2] for e in failure] == [["GET /v2/images", " 500 Injected fault"]]
    assert at_most_one_copy_each(emu) == {}
    copied = copies(emu, "KR2", SRC.tenant_id)
    assert 1 <= len(copied) < COUNT  # the images planned before the failed page

    emu.set_faults(error_rate=0.0, latency=0.0)
    again = await run_streamed(config)
    assert again.failed == [] and not again.interrupted
    assert await copy_problems(emu, http, sources, KR2) == []
    assert await journal_problems(tmp_path, sources, KR2) == []


async def test_a_member_client_one_image_asked_for_is_there_for_the_images_beside_it(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Shared sources are planned side by side: one waits for its member's client (its token
    is slow), and the others, which want the same member, must wait for it too, or they judge
    the member's state without the client that could accept and call the copy in sync."""
    sources = await seed(emu, 4, shared=True, prefix="members")
    for source in sources:
        await share(emu, http, source, [PARTNER])
    config = write_config(tmp_path, emu, job_toml(targets=TO_KR2))
    first = await run_streamed(config)
    assert first.failed == [] and await copy_problems(emu, http, sources, KR2) == []

    # The partner takes its acceptance of every copy back; its tokens then come slowly.
    partner = Api(http, emu.regions["KR2"], await token(emu, PARTNER, http))
    for made in copies(emu, "KR2", SRC.tenant_id).values():
        path = f"/v2/images/{made[0]['id']}/members/{PARTNER.tenant_id}"
        reply = await partner.call("PUT", path, json={"status": "pending"})
        assert reply.status == 200, reply.body
    emu.set_faults(latency=0.5, latency_routes={"token"})

    again = await run_streamed(config)
    assert sorted(r.outcome for r in again.results) == ["updated"] * 4, again.results
    emu.set_faults(latency=0.0)
    assert await copy_problems(emu, http, sources, KR2) == []  # accepted again, each
