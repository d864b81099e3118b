"""ImageClient and CloudSession against the emulator, over real sockets."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.client.conftest import FAST, credentials_for
from transfer.cloud.client import ImageClient
from transfer.cloud.sessions import CloudSession
from transfer.config.settings import Credentials, HttpSettings, Secret
from transfer.emulator import Emulator
from transfer.errors import (
    AuthError,
    CatalogError,
    Conflict,
    Forbidden,
    NotFound,
    ServerError,
    TransferError,
    TransportError,
)


def requests(emu: Emulator, route: str, region: str = "KR1") -> int:
    counted: dict[str, int] = emu.counters(region)["requests"]
    return counted.get(route, 0)


def token_requests(emu: Emulator) -> int:
    counted: dict[str, int] = emu.identity_counters()["requests"]
    return counted.get("token", 0)


async def chunks_of(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[start : start + size]


async def read_all(client: ImageClient, image_id: str, offset: int = 0) -> bytes:
    async with client.download_image(image_id, offset=offset) as download:
        return b"".join([chunk async for chunk in download.chunks()])


async def test_every_image_call_round_trips(emu: Emulator) -> None:
    src, dst = emu.tenant("demo-src"), emu.tenant("demo-dst")
    data = os.urandom(3 * 1024 * 1024 + 17)
    async with (
        CloudSession(credentials_for(emu, src), settings=FAST) as owner,
        CloudSession(credentials_for(emu, dst), settings=FAST) as member,
    ):
        client = await owner.image_client("kr1")
        assert client.region == "KR1" and client.endpoint == emu.regions["KR1"]
        created = await client.create_image(
            {
                "name": "round-trip",
                "os_type": "linux",
                "disk_format": "qcow2",
                "container_format": "bare",
                "tags": ["first"],
                "color": "blue",
            }
        )
        assert created.status == "queued" and created.owner == src.tenant_id
        assert created.properties["color"] == "blue"

        await client.upload_image(created.id, chunks_of(data), size=len(data))
        shown = await client.get_image(created.id)
        assert shown.status == "active" and shown.size == len(data)
        assert shown.checksum == hashlib.md5(data).hexdigest()

        async with client.download_image(created.id) as download:
            assert (download.status, download.offset, download.length) == (200, 0, len(data))
            assert download.total_size == len(data)
            assert download.content_md5 == shown.checksum
            body = b"".join([chunk async for chunk in download.chunks()])
        assert body == data

        updated = await client.update_image(
            created.id,
            [
                {"op": "replace", "path": "/name", "value": "renamed"},
                {"op": "add", "path": "/flavor", "value": "mint"},
                {"op": "remove", "path": "/color"},
            ],
        )
        assert updated.name == "renamed" and updated.properties["flavor"] == "mint"
        assert "color" not in updated.properties

        await client.add_tag(created.id, "second")
        await client.remove_tag(created.id, "first")
        assert (await client.get_image(created.id)).tags == ("second",)

        await client.update_image(
            created.id, [{"op": "replace", "path": "/visibility", "value": "shared"}]
        )
        added = await client.add_member(created.id, dst.tenant_id)
        assert added.status == "pending" and added.member_id == dst.tenant_id
        member_client = await member.image_client("KR1")
        accepted = await member_client.update_member(created.id, dst.tenant_id, "accepted")
        assert accepted.status == "accepted"
        assert [m.member_id for m in await client.list_members(created.id)] == [dst.tenant_id]
        assert (await client.get_member(created.id, dst.tenant_id)).status == "accepted"
        with pytest.raises(Forbidden):  # only the member answers for itself
            await client.update_member(created.id, dst.tenant_id, "rejected")
        await client.delete_member(created.id, dst.tenant_id)
        assert await client.list_members(created.id) == []

        await client.delete_image(created.id)
        with pytest.raises(NotFound, match=f"GET /v2/images/{created.id}: 404"):
            await client.get_image(created.id)


async def test_paging_reads_every_page_including_an_empty_last_one(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    ids = {await emu.seed_image("KR1", src.tenant_id, name=f"img-{n}") for n in range(7)}
    async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
        client = await cloud.image_client("KR1")
        before = requests(emu, "list")
        listed = [image.id async for image in client.list_images(page_size=7)]
        assert sorted(listed) == sorted(ids)
        assert requests(emu, "list") - before == 2  # a full page, then an empty one
        before = requests(emu, "list")
        listed = [image.id async for image in client.list_images(page_size=3, sort_key="name")]
        assert listed == sorted(ids, key=lambda i: emu.image_record("KR1", i)["name"])[::-1]
        assert requests(emu, "list") - before == 3  # 3 + 3 + 1
        only = [i.name async for i in client.list_images(page_size=2, name="img-4")]
        assert only == ["img-4"]


async def test_member_status_and_tag_filters(emu: Emulator) -> None:
    src, dst = emu.tenant("demo-src"), emu.tenant("demo-dst")
    both = await emu.seed_image("KR1", src.tenant_id, name="both", tags=["a", "b"])
    await emu.seed_image("KR1", src.tenant_id, name="only-a", tags=["a"])
    shared = await emu.seed_image("KR1", src.tenant_id, name="shared", visibility="shared")
    async with (
        CloudSession(credentials_for(emu, src), settings=FAST) as owner,
        CloudSession(credentials_for(emu, dst), settings=FAST) as member,
    ):
        client = await owner.image_client("KR1")
        tagged = [i.id async for i in client.list_images(tag=["a", "b"])]
        assert tagged == [both]
        assert len([i async for i in client.list_images(tag="a")]) == 2

        await client.add_member(shared, dst.tenant_id)
        theirs = await member.image_client("KR1")
        assert [i.id async for i in theirs.list_images(member_status="pending")] == [shared]
        assert [i.id async for i in theirs.list_images(member_status="accepted")] == []
        await theirs.update_member(shared, dst.tenant_id, "accepted")
        assert [i.id async for i in theirs.list_images(member_status="accepted")] == [shared]


async def test_an_expired_token_is_renewed_before_use() -> None:
    async with Emulator(regions=("KR1",), token_ttl=1.0) as emu:
        src = emu.tenant("demo-src")
        await emu.seed_image("KR1", src.tenant_id, name="x")
        with capture_logs() as logs:
            async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
                client = await cloud.image_client("KR1")
                assert len([i async for i in client.list_images()]) == 1
                await asyncio.sleep(1.1)
                assert len([i async for i in client.list_images()]) == 1
        assert token_requests(emu) == 2
        statuses = [e["status"] for e in logs if e["event"] == "http.request"]
        assert 401 not in statuses  # renewed ahead of expiry, not after a refusal


async def test_a_revoked_token_is_reissued_once_and_the_call_repeated(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    image_id = await emu.seed_image("KR1", src.tenant_id, name="x")
    async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
        client = await cloud.image_client("KR1")
        await client.get_image(image_id)
        emu.expire_tokens()
        with capture_logs() as logs:
            assert (await client.get_image(image_id)).id == image_id
    assert token_requests(emu) == 2
    statuses = [
        (e["path"].split("/")[1], e["status"]) for e in logs if e["event"] == "http.request"
    ]
    assert statuses == [("v2", 401), ("v2.0", 200), ("v2", 200)]


async def test_concurrent_callers_share_one_token_request(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    image_id = await emu.seed_image("KR1", src.tenant_id, name="x")
    async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
        # Twenty callers that all need the first token at once wait for one request.
        tenants = await asyncio.gather(*(cloud.tenant_id() for _ in range(20)))
        assert set(tenants) == {src.tenant_id}
        assert token_requests(emu) == 1
        client = await cloud.image_client("KR1")
        await asyncio.gather(*(client.get_image(image_id) for _ in range(20)))
        assert token_requests(emu) == 1
        # Twenty refusals of the same token lead to one new token, not twenty.
        emu.expire_tokens()
        images = await asyncio.gather(*(client.get_image(image_id) for _ in range(20)))
        assert {i.id for i in images} == {image_id}
        assert token_requests(emu) == 2


async def test_server_errors_with_retry_after_are_retried_to_success(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    image_id = await emu.seed_image("KR1", src.tenant_id, name="x")
    async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
        client = await cloud.image_client("KR1")
        emu.set_faults(
            error_rate=1.0, error_routes=frozenset({"show"}), errors_remaining=2, retry_after=0.15
        )
        started = time.monotonic()
        assert (await client.get_image(image_id)).id == image_id
        assert time.monotonic() - started >= 0.3  # Retry-After was waited out twice
    assert requests(emu, "show") == 3


async def test_a_clear_error_when_the_attempts_run_out(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    settings = HttpSettings(attempts=3, backoff_base=0.01, backoff_cap=0.02)
    async with CloudSession(credentials_for(emu, src), settings=settings) as cloud:
        client = await cloud.image_client("KR1")
        emu.set_faults(error_rate=1.0, error_routes=frozenset({"list"}), error_statuses=(503,))
        with pytest.raises(ServerError, match=r"GET /v2/images: 503 .*gave up after 3 attempts"):
            [i async for i in client.list_images()]
    assert requests(emu, "list") == 3


async def test_client_errors_are_not_retried(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    image_id = await emu.seed_image("KR1", src.tenant_id, data=b"abc", name="x")
    async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
        client = await cloud.image_client("KR1")
        with pytest.raises(NotFound):
            await client.get_image("00000000-0000-0000-0000-000000000000")
        assert requests(emu, "show") == 1
        with pytest.raises(Conflict, match="queued"):  # an active image takes no more data
            await client.upload_image(image_id, chunks_of(b"more"), size=4)
        assert requests(emu, "upload") == 1
        with pytest.raises(TransferError) as caught:  # 403: reserved key on create
            await client.create_image({"name": "x", "os_type": "linux", "size": 5})
        assert caught.value.retryable is False
        assert requests(emu, "create") == 1


async def test_a_path_upload_survives_a_dropped_connection(emu: Emulator, tmp_path: Path) -> None:
    src = emu.tenant("demo-src")
    data = os.urandom(2 * 1024 * 1024 + 5)
    source = tmp_path / "disk.qcow2"
    source.write_bytes(data)
    async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
        client = await cloud.image_client("KR1")
        image = await client.create_image(
            {"name": "up", "os_type": "linux", "disk_format": "qcow2", "container_format": "bare"}
        )
        emu.set_faults(drop_upload_after=300_000, drops_remaining=1)
        sent: list[int] = []
        await client.upload_image(image.id, source, progress=sent.append)
        done = await client.get_image(image.id)
    assert done.status == "active" and done.checksum == hashlib.md5(data).hexdigest()
    assert requests(emu, "upload") == 2
    assert sum(sent) > len(data)  # the file was read again for the second attempt


async def test_a_stream_upload_is_not_repeated_after_a_drop(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    data = os.urandom(1024 * 1024)
    async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
        client = await cloud.image_client("KR1")
        image = await client.create_image(
            {"name": "up", "os_type": "linux", "disk_format": "raw", "container_format": "bare"}
        )
        emu.set_faults(drop_upload_after=100_000, drops_remaining=1)
        with pytest.raises(TransportError):
            await client.upload_image(image.id, chunks_of(data), size=len(data))
        assert requests(emu, "upload") == 1
        # The image is back to queued: the caller may send the stream again.
        assert (await client.get_image(image.id)).status == "queued"
        await client.upload_image(image.id, chunks_of(data), size=len(data))
        assert (await client.get_image(image.id)).status == "active"


async def test_a_cut_download_resumes_from_an_offset_to_the_exact_bytes(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    data = os.urandom(3 * 1024 * 1024 + 1)
    image_id = await emu.seed_image("KR1", src.tenant_id, data=data, name="dl")
    async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
        client = await cloud.image_client("KR1")
        emu.set_faults(drop_download_after=1_500_000, drops_remaining=1)
        received = bytearray()
        with pytest.raises(TransportError, match=r"cut short|closed"):
            async with client.download_image(image_id) as download:
                async for chunk in download.chunks():
                    received += chunk
        assert 0 < len(received) < len(data)
        async with client.download_image(image_id, offset=len(received)) as rest:
            assert rest.status == 206 and rest.offset == len(received)
            assert rest.total_size == len(data) and rest.length == len(data) - len(received)
            received += b"".join([chunk async for chunk in rest.chunks()])
        assert bytes(received) == data
        assert await read_all(client, image_id, offset=len(data) - 10) == data[-10:]


async def test_the_catalog_region_error_lists_the_regions(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
        assert await cloud.regions() == ["KR1", "KR2"]
        with pytest.raises(CatalogError, match=r"'JP1'.*lists KR1, KR2"):
            await cloud.image_client("JP1")
    explicit = Credentials(
        name="src",
        identity_url=emu.identity_url,
        tenant_id=src.tenant_id,
        username=src.username,
        password=Secret(src.password),
        endpoints={"jp1": emu.regions["KR2"]},
    )
    async with CloudSession(explicit, settings=FAST) as cloud:
        assert await cloud.regions() == ["JP1", "KR1", "KR2"]
        assert (await cloud.image_client("JP1")).endpoint == emu.regions["KR2"]


async def test_a_wrong_password_is_an_auth_error_without_the_password(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    wrong = "not-the-password-9c1e"
    async with CloudSession(credentials_for(emu, src, password=wrong), settings=FAST) as cloud:
        with pytest.raises(AuthError, match="credentials for cloud 'demo-src' were refused by"):
            await cloud.image_client("KR1")
        with pytest.raises(AuthError) as caught:
            await cloud.tenant_id()
    assert token_requests(emu) == 2  # a refusal is not retried
    assert wrong not in str(caught.value) and wrong not in repr(caught.value.__cause__)


async def test_token_mode_uses_the_given_token_and_endpoints(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    image_id = await emu.seed_image("KR1", src.tenant_id, name="x")
    credentials = Credentials(
        name="pre",
        token=Secret(emu.issue_token(src.tenant_id)),
        endpoints={"KR1": emu.regions["KR1"]},
        tenant_id=src.tenant_id,
    )
    async with CloudSession(credentials, settings=FAST) as cloud:
        client = await cloud.image_client("KR1")
        assert (await client.get_image(image_id)).id == image_id
        assert await cloud.tenant_id() == src.tenant_id
        with pytest.raises(CatalogError, match="lists KR1"):
            await cloud.image_client("KR2")
    assert token_requests(emu) == 0


def _flatten(event: Any) -> str:
    return repr(event)


async def test_secrets_appear_in_no_log_line_and_no_error(emu: Emulator) -> None:
    src = emu.tenant("demo-src")
    image_id = await emu.seed_image("KR1", src.tenant_id, name="x")
    texts: list[str] = []
    with capture_logs() as logs:
        async with CloudSession(credentials_for(emu, src), settings=FAST) as cloud:
            client = await cloud.image_client("KR1")
            emu.set_faults(error_rate=1.0, error_routes=frozenset({"show"}), errors_remaining=1)
            await client.get_image(image_id)
            emu.expire_tokens()
            await client.get_image(image_id)
            for failing in (client.get_image("nope"), client.delete_image("nope")):
                with pytest.raises(TransferError) as caught:
                    await failing
                texts += [str(caught.value), repr(caught.value), repr(caught.value.__cause__)]
            texts.append(repr(cloud) + repr(client) + repr(cloud.credentials))
        token = emu.issue_token(src.tenant_id)
        pre = Credentials(name="pre", token=Secret(token), endpoints=emu.regions)
        async with CloudSession(pre, settings=FAST) as cloud:
            client = await cloud.image_client("KR1")
            await client.get_image(image_id)
            emu.expire_tokens()
            with pytest.raises(TransferError) as caught:
                await client.get_image(image_id)
            texts += [str(caught.value), repr(caught.value), repr(cloud.credentials)]
    events = [e for e in logs if e["event"] == "http.request"]
    assert len(events) >= 6
    assert {"method", "path", "status", "attempt", "elapsed"} <= set(events[0])
    everything = "\n".join(texts + [_flatten(e) for e in logs])
    assert src.password not in everything
    assert token not in everything


async def test_a_request_rate_cap_paces_every_call(emulator: Emulator) -> None:
    src = emulator.tenant("demo-src")
    creds = Credentials(
        name="src",
        identity_url=emulator.identity_url,
        tenant_id=src.tenant_id,
        username=src.username,
        password=Secret(src.password),
    )
    async with CloudSession(creds, settings=HttpSettings(requests_per_second=10)) as session:
        client = await session.image_client("KR1")
        image_id = await emulator.seed_image("KR1", src.tenant_id, data=b"x", name="paced")
        await client.get_image(image_id)  # the first call goes at once
        started = time.monotonic()
        for _ in range(10):
            await client.get_image(image_id)
        elapsed = time.monotonic() - started
    # Ten more calls at ten per second take about a second, never much less.
    assert elapsed >= 0.85, elapsed
