"""The pieces on their own, over real sockets: a shared download's backpressure and how it treats
consumers that fail, leave or never come; a spool file's proof and its disk-space check; the
journal's spool records; and what ``spool = "auto"`` decides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.engine.helpers import SRC, TENANTS, MiB, seed_many
from transfer.cloud.client import ImageClient
from transfer.cloud.sessions import CloudSession
from transfer.config.settings import Credentials, Secret, SpoolMode
from transfer.emulator import Emulator
from transfer.engine.feeds import (
    AUTO_FANOUT_MIN_SIZE,
    SHARED_BUFFER,
    DirectFeed,
    Feed,
    SharedFeed,
    spool_reason,
)
from transfer.engine.spool import SpoolArea
from transfer.errors import Forbidden, IntegrityError, SpoolError
from transfer.journal.records import JournalEntry
from transfer.journal.sqlite import SqliteJournal
from transfer.models import Image

JOB = "unit"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(regions=("KR1",), tenants=TENANTS, seed=41) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[ImageClient]:
    credentials = Credentials(
        identity_url=emu.identity_url,
        tenant_id=SRC.tenant_id,
        username=SRC.username,
        password=Secret(SRC.password),
    )
    async with CloudSession(credentials) as session:
        yield await session.image_client("KR1")


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[SqliteJournal]:
    async with SqliteJournal(tmp_path / "journal.db") as opened:
        yield opened


def source_bytes(emu: Emulator, image_id: str) -> bytes:
    path = emu.image_path("KR1", image_id)
    assert path is not None
    return path.read_bytes()


async def read_all(
    feed: Feed,
    key: str,
    *,
    counts: dict[str, int] | None = None,
    pause: float = 0.0,
    fail_after: int | None = None,
) -> tuple[bytes, str]:
    """What one consumer reads from the feed (and where it came from)."""
    data = bytearray()
    async with feed.open(key) as body:
        async for chunk in body.chunks:
            data += chunk
            if counts is not None:
                counts[key] = counts.get(key, 0) + 1
            if fail_after is not None and len(data) >= fail_after:
                raise RuntimeError(f"{key} went away")
            if pause:
                await anyio.sleep(pause)
        await body.digests()
        return bytes(data), body.origin


async def test_the_slowest_consumer_sets_the_pace_and_memory_stays_bounded(
    emu: Emulator, client: ImageClient
) -> None:
    [image_id] = await seed_many(emu, [24 * MiB + 9])
    source = await client.get_image(image_id)
    counts: dict[str, int] = {}
    widest = 0
    got: dict[str, bytes] = {}

    async def fast(feed: Feed) -> None:
        nonlocal widest
        data = bytearray()
        async with feed.open("fast") as body:
            async for chunk in body.chunks:
                data += chunk
                counts["fast"] = counts.get("fast", 0) + 1
                widest = max(widest, counts["fast"] - counts.get("slow", 0))
        got["fast"] = bytes(data)

    async def slow(feed: Feed) -> None:
        got["slow"], _ = await read_all(feed, "slow", counts=counts, pause=0.01)

    direct = DirectFeed(client, source, ())
    async with (
        SharedFeed(client, source, (), ["fast", "slow"], fallback=direct) as feed,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(fast, feed)
        tg.start_soon(slow, feed)

    assert got["fast"] == got["slow"] == source_bytes(emu, image_id)
    assert feed.downloads == 1 and direct.downloads == 0
    # The fast one is never more than the slow one's buffer (and a chunk in hand each) ahead.
    assert 1 <= widest <= SHARED_BUFFER + 2, widest


async def test_a_failing_consumer_is_detached_and_a_late_one_reads_on_its_own(
    emu: Emulator, client: ImageClient
) -> None:
    [image_id] = await seed_many(emu, [8 * MiB + 1])
    source = await client.get_image(image_id)
    expected = source_bytes(emu, image_id)
    results: dict[str, tuple[bytes, str]] = {}
    errors: dict[str, str] = {}

    async def consumer(feed: Feed, key: str, fail_after: int | None = None) -> None:
        try:
            results[key] = await read_all(feed, key, fail_after=fail_after, pause=0.001)
        except RuntimeError as exc:
            errors[key] = str(exc)

    direct = DirectFeed(client, source, ("md5",))
    async with SharedFeed(
        client, source, ("md5",), ["good", "bad", "absent"], fallback=direct
    ) as feed:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer, feed, "good")
            tg.start_soon(consumer, feed, "bad", 2 * MiB)
            await anyio.sleep(0.05)
            assert feed.downloads == 0  # "absent" has neither joined nor released yet
            feed.release("absent")  # e.g. its target already held the bytes
        # Its retry (or a second look in the same attempt) gets its own download.
        results["absent"] = await read_all(feed, "absent")

    assert errors == {"bad": "bad went away"}
    assert results["good"] == (expected, "shared")
    assert results["absent"] == (expected, "source")
    assert (feed.downloads, direct.downloads) == (1, 1)


async def test_a_source_error_reaches_every_consumer_before_any_upload(
    emu: Emulator, client: ImageClient
) -> None:
    image_id = await emu.seed_image(
        "KR1", SRC.tenant_id, size=MiB, fill_seed=3, name="x", nhncloud_allow_download="false"
    )
    source = await client.get_image(image_id)
    failures: list[str] = []

    async def consumer(feed: Feed, key: str) -> None:
        try:
            await read_all(feed, key)
        except Forbidden as exc:
            failures.append(f"{key}: {exc.status}")

    async with (
        SharedFeed(client, source, (), ["a", "b"], fallback=DirectFeed(client, source, ())) as feed,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(consumer, feed, "a")
        tg.start_soon(consumer, feed, "b")

    assert sorted(failures) == ["a: 403", "b: 403"]


async def test_a_corrupted_spool_is_discarded_and_the_next_fill_proves_itself(
    emu: Emulator, client: ImageClient, journal: SqliteJournal, tmp_path: Path
) -> None:
    [image_id] = await seed_many(emu, [3 * MiB + 7])
    source = await client.get_image(image_id)
    area = SpoolArea(root=tmp_path / "spool", job=JOB, journal=journal, reserve=0)
    spool = area.file(source, client, ())
    emu.set_faults(corrupt_downloads=1)

    with pytest.raises(IntegrityError, match=r"hash to md5 .* the source declares"):
        await spool.fill()
    assert not spool.path.exists() and await journal.spools(JOB) == []

    digests = await spool.fill()

    assert digests["md5"] == source.checksum
    assert spool.path.read_bytes() == source_bytes(emu, image_id)
    [record] = await journal.spools(JOB)
    assert (record.complete, record.bytes_done, record.host) == (True, source.size, area.host)
    # Another host's record of the same image is its own business.
    await journal.save_spool(
        JOB,
        image_id,
        "elsewhere",
        path="/x",
        source_checksum=None,
        size=1,
        bytes_done=1,
        complete=False,
    )
    assert [r.host for r in await journal.spools(JOB)] == sorted([area.host, "elsewhere"])
    assert await area.tidy(keep=()) == [image_id]
    assert not spool.path.exists()
    assert [r.host for r in await journal.spools(JOB)] == ["elsewhere"]
    await journal.reset_job(JOB)
    assert await journal.spools(JOB) == []


async def test_the_disk_space_check_counts_other_downloads_and_the_reserve(
    emu: Emulator, client: ImageClient, journal: SqliteJournal, tmp_path: Path
) -> None:
    ids = await seed_many(emu, [2 * MiB, 3 * MiB])
    first, second = [await client.get_image(i) for i in ids]
    free = {"bytes": 0}
    seen: list[Path] = []

    def fake_free(directory: Path) -> int:
        seen.append(directory)
        return free["bytes"]

    area = SpoolArea(root=tmp_path / "sp", job=JOB, journal=journal, reserve=MiB, free=fake_free)
    spool = area.file(first, client, ())
    free["bytes"] = 3 * MiB - 1  # one byte short of the image plus the reserve

    with pytest.raises(SpoolError, match=r"needs 2\.0 MiB .* 1\.0 MiB kept free"):
        await spool.fill()
    assert not spool.path.exists()
    assert emu.counters("KR1")["bytes_served"] == 0  # refused before asking the source

    free["bytes"] = 3 * MiB
    assert (await spool.fill())["md5"] == first.checksum
    assert seen and seen[-1] == tmp_path / "sp" / JOB

    # Space promised to a download in progress is not free for another one.
    other = area.file(second, client, ())
    area.downloading.add(spool)
    spool.written = 0  # as if it had just started: all of it still to come
    free["bytes"] = 6 * MiB - 1  # enough for one of them, not for both
    with pytest.raises(SpoolError, match=r"2\.0 MiB promised to other downloads"):
        await other.fill()
    area.downloading.discard(spool)
    assert (await other.fill())["md5"] == second.checksum


def entry(state: str, attempts: int) -> JournalEntry:
    return JournalEntry(
        job=JOB,
        source_id="s",
        target_key="t/KR2",
        source_name="n",
        source_checksum="c",
        source_size=1,
        target_id="x",
        generation=0,
        state=state,
        last_step=None,
        bytes_done=0,
        md5=None,
        sha512=None,
        attempts=attempts,
        last_error=None,
        updated_at="",
    )


def test_what_auto_decides() -> None:
    small = Image.from_api({"id": "s", "status": "active", "size": 10 * MiB})
    large = Image.from_api({"id": "s", "status": "active", "size": AUTO_FANOUT_MIN_SIZE})
    two_regions = ["KR2", "JP1"]

    assert spool_reason(SpoolMode.OFF, large, target_regions=two_regions) is None
    assert spool_reason(SpoolMode.ALWAYS, small, target_regions=["KR2"]) == "spool = always"
    assert spool_reason(SpoolMode.AUTO, small, target_regions=two_regions) is None
    assert spool_reason(SpoolMode.AUTO, large, target_regions=["KR2", "KR2"]) is None
    assert spool_reason(SpoolMode.AUTO, large, target_regions=two_regions) is not None
    assert (
        spool_reason(SpoolMode.AUTO, small, target_regions=["KR2"], spooled_before=True) is not None
    )
    assert (
        spool_reason(SpoolMode.AUTO, small, target_regions=["KR2"], entries=[entry("done", 3)])
        is None
    )
    tried = [entry("done", 1), entry("failed", 1)]
    assert spool_reason(SpoolMode.AUTO, small, target_regions=["KR2"], entries=tried) is not None
    never_tried = [entry("pending", 0)]
    assert spool_reason(SpoolMode.AUTO, small, target_regions=["KR2"], entries=never_tried) is None
