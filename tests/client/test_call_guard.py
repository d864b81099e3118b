"""The lease guard on calls that change a cloud (``CALL_GUARD``), against the emulator over
real sockets: a worker whose lease on an item has too little time left sends nothing that
changes a cloud, a call under a lease is cut off after ``call_seconds``, and reads always go."""

from __future__ import annotations

import anyio
import pytest

from tests.client.conftest import FAST, credentials_for
from transfer.cloud.sessions import CloudSession
from transfer.cloud.transport import CALL_GUARD
from transfer.config.settings import HttpSettings, LeaseSettings
from transfer.emulator import Emulator
from transfer.engine.leases import ItemLease
from transfer.errors import LeaseLost, RequestTimeout
from transfer.journal.records import Claim


def lease(*, left: float, terms: LeaseSettings) -> ItemLease:
    claim = Claim(
        key=("src-1", "dst/KR1"),
        epoch=4,
        target_id="t",
        generation=0,
        attempts=0,
        takeovers=0,
        taken_over=False,
    )
    return ItemLease(claim, granted=anyio.current_time() - terms.lease_seconds + left, terms=terms)


def creates(emu: Emulator) -> int:
    return int(emu.counters("KR1")["requests"].get("create", 0))


async def test_no_call_that_changes_a_cloud_starts_without_time_left_on_the_lease(
    emu: Emulator,
) -> None:
    terms = LeaseSettings(lease_seconds=30)  # a call may take 10 s
    async with CloudSession(credentials_for(emu, emu.tenant("demo-src")), settings=FAST) as cloud:
        client = await cloud.image_client("KR1")
        guarded = CALL_GUARD.set(lease(left=5, terms=terms))
        try:
            listed = [i async for i in client.list_images()]  # reads are never refused
            with pytest.raises(LeaseLost, match=r"POST /v2/images not sent: the lease on src-1"):
                await client.create_image(
                    {"name": "late", "disk_format": "raw", "os_type": "linux"}
                )
        finally:
            CALL_GUARD.reset(guarded)
        assert creates(emu) == 0
        assert [i.id async for i in client.list_images()] == [i.id for i in listed]
        # With the lease fresh, the same call goes through.
        guarded = CALL_GUARD.set(lease(left=30, terms=terms))
        try:
            image = await client.create_image(
                {"name": "in time", "disk_format": "raw", "os_type": "linux"}
            )
        finally:
            CALL_GUARD.reset(guarded)
        assert creates(emu) == 1 and image.name == "in time"


async def test_a_call_under_a_lease_is_cut_off_after_call_seconds(emu: Emulator) -> None:
    terms = LeaseSettings(lease_seconds=3, renew_seconds=1, call_seconds=0.5)
    emu.set_faults(latency=2.0)
    settings = HttpSettings(attempts=1, connect_timeout=5, read_timeout=5)
    async with CloudSession(
        credentials_for(emu, emu.tenant("demo-src")), settings=settings
    ) as cloud:
        client = await cloud.image_client("KR1")
        guarded = CALL_GUARD.set(lease(left=3, terms=terms))
        started = anyio.current_time()
        try:
            with pytest.raises(RequestTimeout, match=r"within the 0\.5 s a call may take"):
                await client.create_image(
                    {"name": "slow", "disk_format": "raw", "os_type": "linux"}
                )
        finally:
            CALL_GUARD.reset(guarded)
        assert anyio.current_time() - started < 1.5
