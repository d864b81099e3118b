"""Image data: uploads (statuses, hashes, refusals, interruptions) and downloads (headers,
ranges, refusals)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.conftest import token
from tests.emulator.helpers import Api, pieces
from transfer.emulator import Emulator

SRC_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
DST_ID = "0f9e8d7c6b5a49382716a5b4c3d2e1f0"


async def _wait_status(api: Api, image_id: str, status: str) -> None:
    for _ in range(200):
        if (await api.show(image_id)).json()["status"] == status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"image {image_id} never became {status}")


async def test_multi_mib_upload_and_download_keep_every_byte(emulator: Emulator, src: Api) -> None:
    data = os.urandom(9 * (1 << 20) + 12345)
    image_id = (await src.create())["id"]
    # Streamed with a Content-Length, as the engine sends it.
    reply = await src.upload(image_id, pieces(data), **{"Content-Length": str(len(data))})
    assert reply.status == 204 and reply.body == b""
    image = (await src.show(image_id)).json()
    assert image["status"] == "active"
    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    down = await src.download(image_id)
    assert down.status == 200
    assert down.headers["Content-Length"] == str(len(data))
    assert down.headers["Content-MD5"] == hashlib.md5(data).hexdigest()
    assert down.headers["Content-Type"] == "application/octet-stream"
    assert hashlib.sha512(down.body).hexdigest() == image["os_hash_value"]
    path = emulator.image_path("KR1", image_id)
    assert path is not None and path.stat().st_size == len(data)


async def test_chunked_upload_without_length_is_accepted(src: Api) -> None:
    data = os.urandom(300_000)
    image_id = (await src.create())["id"]
    assert (await src.upload(image_id, pieces(data, 65536))).status == 204
    assert (await src.show(image_id)).json()["checksum"] == hashlib.md5(data).hexdigest()


async def test_empty_upload_makes_an_active_empty_image(src: Api) -> None:
    image_id = (await src.create())["id"]
    assert (await src.upload(image_id, b"")).status == 204
    image = (await src.show(image_id)).json()
    assert (image["status"], image["size"]) == ("active", 0)
    assert image["checksum"] == hashlib.md5(b"").hexdigest()


async def test_only_a_queued_image_takes_data(src: Api) -> None:
    image_id = (await src.create())["id"]
    assert (await src.upload(image_id, b"first")).status == 204
    again = await src.upload(image_id, b"second")
    assert again.status == 409
    assert (await src.download(image_id)).body == b"first"


async def test_upload_needs_disk_and_container_formats(src: Api) -> None:
    image_id = (await src.create(disk_format=None, container_format=None))["id"]
    assert (await src.upload(image_id, b"data")).status == 400
    await src.patch(
        image_id,
        [
            {"op": "replace", "path": "/disk_format", "value": "raw"},
            {"op": "replace", "path": "/container_format", "value": "bare"},
        ],
    )
    assert (await src.upload(image_id, b"data")).status == 204


async def test_upload_needs_the_octet_stream_media_type(src: Api) -> None:
    image_id = (await src.create())["id"]
    reply = await src.call(
        "PUT", f"/v2/images/{image_id}/file", data=b"x", headers={"Content-Type": "text/plain"}
    )
    assert reply.status == 415
    assert (await src.show(image_id)).json()["status"] == "queued"


async def test_only_the_owner_uploads(src: Api, dst: Api) -> None:
    image_id = (await src.create(visibility="shared"))["id"]
    assert (await dst.upload(image_id, b"x")).status == 404
    await src.call("POST", f"/v2/images/{image_id}/members", json={"member": DST_ID})
    assert (await dst.upload(image_id, b"x")).status == 403
    assert (await src.show(image_id)).json()["status"] == "queued"


async def test_size_cap_refuses_larger_uploads_with_413(http: aiohttp.ClientSession) -> None:
    async with Emulator(image_size_cap=1000) as emu:
        api = Api(http, emu.regions["KR1"], await token(emu, "demo-src", http))
        image_id = (await api.create())["id"]
        declared = await api.upload(image_id, b"x" * 1001)
        assert declared.status == 413
        # Without a Content-Length the cap is found mid-body; the image is back to queued.
        streamed = await api.upload(image_id, pieces(b"y" * 5000, 600))
        assert streamed.status == 413
        assert (await api.show(image_id)).json()["status"] == "queued"
        assert (await api.upload(image_id, b"z" * 1000)).status == 204


async def test_a_cut_off_upload_returns_the_image_to_queued(emulator: Emulator, src: Api) -> None:
    image_id = (await src.create())["id"]
    url = urlsplit(emulator.regions["KR1"])
    assert url.hostname is not None and url.port is not None
    _reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        (
            f"PUT /v2/images/{image_id}/file HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\nX-Auth-Token: {src.token}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
        ).encode()
        + b"a" * 100_000
    )
    await writer.drain()
    await _wait_status(src, image_id, "saving")
    writer.close()
    await writer.wait_closed()
    await _wait_status(src, image_id, "queued")
    assert emulator.image_path("KR1", image_id) is None
    assert (await src.upload(image_id, b"complete")).status == 204
    assert (await src.download(image_id)).body == b"complete"
    path = emulator.image_path("KR1", image_id)
    assert path is not None
    assert [p.name for p in path.parent.iterdir()] == [image_id]  # no partial file left


async def test_an_upload_under_way_shows_saving_and_refuses_a_second_one(
    emulator: Emulator, src: Api
) -> None:
    image_id = (await src.create())["id"]
    emulator.set_faults(bandwidth=400_000)
    first = asyncio.create_task(src.upload(image_id, b"s" * 200_000))
    await _wait_status(src, image_id, "saving")
    assert (await src.upload(image_id, b"other")).status == 409
    assert (await first).status == 204
    assert (await src.show(image_id)).json()["size"] == 200_000


async def test_deleting_during_an_upload_answers_410(emulator: Emulator, src: Api) -> None:
    image_id = (await src.create())["id"]
    emulator.set_faults(bandwidth=400_000)
    upload = asyncio.create_task(src.upload(image_id, b"d" * 200_000))
    await _wait_status(src, image_id, "saving")
    assert (await src.call("DELETE", f"/v2/images/{image_id}")).status == 204
    assert (await upload).status == 410
    assert emulator.image_path("KR1", image_id) is None


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-25", 975, 999),
        ("bytes=500-5000", 500, 999),
        ("bytes=-5000", 0, 999),
    ],
)
@pytest.mark.parametrize("fast", [True, False], ids=["sendfile", "streamed"])
async def test_ranges_answer_206_with_content_range(
    emulator: Emulator, src: Api, header: str, start: int, end: int, fast: bool
) -> None:
    data = os.urandom(1000)
    image_id = await emulator.seed_image("KR1", SRC_ID, data=data)
    if not fast:
        emulator.set_faults(bandwidth=10_000_000)  # any download fault takes the other path
    reply = await src.download(image_id, Range=header)
    assert reply.status == 206
    assert reply.body == data[start : end + 1]
    assert reply.headers["Content-Range"] == f"bytes {start}-{end}/1000"
    assert reply.headers["Content-Length"] == str(end - start + 1)
    assert reply.headers["Content-MD5"] == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=9-3", "lines=1-2"])
async def test_unsatisfiable_ranges_answer_416(emulator: Emulator, src: Api, header: str) -> None:
    image_id = await emulator.seed_image("KR1", SRC_ID, data=b"z" * 1000)
    reply = await src.download(image_id, Range=header)
    assert reply.status == 416
    assert "Content-Range" not in reply.headers  # as Glance answers it
    assert reply.json()["code"] == "416 Request Range Not Satisfiable"


async def test_multiple_ranges_are_400(emulator: Emulator, src: Api) -> None:
    image_id = await emulator.seed_image("KR1", SRC_ID, data=b"z" * 1000)
    reply = await src.download(image_id, Range="bytes=0-1,5-6")
    assert reply.status == 400


async def test_an_image_without_data_downloads_as_204(src: Api) -> None:
    image_id = (await src.create())["id"]
    reply = await src.download(image_id)
    assert reply.status == 204 and reply.body == b""


@pytest.mark.parametrize(("allow", "status"), [("false", 403), ("no", 403), ("true", 200)])
async def test_nhncloud_allow_download_gates_downloads(
    emulator: Emulator, src: Api, allow: str, status: int
) -> None:
    image_id = await emulator.seed_image(
        "KR1", SRC_ID, data=b"bytes", nhncloud_allow_download=allow
    )
    assert (await src.download(image_id)).status == status


async def test_members_download_shared_images_and_strangers_cannot(
    emulator: Emulator, src: Api, dst: Api
) -> None:
    image_id = await emulator.seed_image("KR1", SRC_ID, data=b"shared", visibility="shared")
    assert (await dst.download(image_id)).status == 404
    await src.call("POST", f"/v2/images/{image_id}/members", json={"member": DST_ID})
    reply = await dst.download(image_id)
    assert reply.status == 200 and reply.body == b"shared"
