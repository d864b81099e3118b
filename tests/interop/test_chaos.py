"""The fault proxy in front of real Glance, and the short chaos soak through it.

The proxy: with faults off it is transparent (the same bytes and headers as Glance's own, both
ways, with or without a Content-Length); with faults on it injects what it says (5xx with and
without Retry-After, never reaching Glance; latency), and a cut body is a broken connection to
the client, and a hang-up to Glance.

The short soak (``tests/interop/chaos.py``, one seed, fewer images): real Glance regions of its
own behind proxies, three SIGKILLs of the engine under every fault, final runs until one exits
0, then the targets listed directly on Glance.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from interop.environment import GlanceInstall
from interop.fault_proxy import NO_FAULTS, FaultProxy, Faults
from interop.server import GlanceCloud, GlanceServer
from tests.emulator.helpers import Api, pieces
from tests.engine.helpers import MARKER
from tests.interop.chaos import JOB, TENANTS, Settings, soak_seed, target_problems
from tests.interop.migration import JOB_MARKER, GlanceApi, SourceImage
from transfer.emulator import fill_bytes

MiB = 1 << 20
SIZE = 3 * MiB + 123
#: Only the fault under test.
QUIET = Faults(error_rate=0.0, upload_drop_rate=0.0, download_drop_rate=0.0, latency=(0.0, 0.0))
#: Glance's headers that must come through a transparent proxy as they are.
KEPT = ("Content-Type", "Content-Length", "Content-MD5", "Content-Range", "Location", "Server")

SHORT = Settings(
    seed=2,
    images=(8, 8),
    largest=2 * MiB,
    kills=3,
    final_runs=3,
    run_seconds=60.0,
    # The 5xx rate and latency; cuts four times as often, so that a short run meets
    # some (with about 30 bodies each way at 10%, one seed in twenty met none).
    faults=Faults(upload_drop_rate=0.20, download_drop_rate=0.20),
    quiet=True,
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # One connection per request: see "an answer given before the body is read" in the README.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


@pytest.fixture
async def proxy(glance: GlanceCloud) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(glance.regions["KR1"], seed=11, faults=NO_FAULTS) as p:
        yield p


def apis(glance: GlanceCloud, proxy: FaultProxy, session: aiohttp.ClientSession) -> tuple[Api, Api]:
    """The src tenant's Image API in KR1: through the proxy, and directly."""
    token = glance.tenant("src").token
    return Api(session, proxy.url, token), Api(session, glance.regions["KR1"], token)


async def new_image(api: Api, name: str) -> str:
    created: dict[str, Any] = await api.create(name=name, disk_format="raw")
    return str(created["id"])


def disconnections(server: GlanceServer) -> int:
    """How often Glance has logged a client that hung up mid-upload (several lines each)."""
    text = server.log_file.read_text(errors="replace")
    return text.count("DisconnectionError: The client disconnected while sending the body")


async def answered(server: GlanceServer, image_id: str, within: float = 20.0) -> None:
    """Wait until gunicorn has logged its answer to an upload of ``image_id`` (it writes the
    access log line once the request is over)."""
    deadline = time.monotonic() + within
    while f"/images/{image_id}/file " not in server.access_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"Glance never finished the upload of {image_id}"
        await asyncio.sleep(0.05)


async def test_with_faults_off_the_proxy_is_transparent(
    glance: GlanceCloud, proxy: FaultProxy, session: aiohttp.ClientSession
) -> None:
    through, direct = apis(glance, proxy, session)
    data = fill_bytes(901, SIZE)
    made = await through.call(
        "POST",
        "/v2/images",
        json={
            "name": "proxy-plain",
            "os_type": "linux",
            "disk_format": "raw",
            "container_format": "bare",
            "tags": ["a"],
        },
    )
    assert made.status == 201, made.body
    image_id = made.json()["id"]
    assert made.headers["Location"].endswith(f"/v2/images/{image_id}")
    # With a Content-Length, and chunked (no length): both arrive whole.
    sent = await through.upload(image_id, io.BytesIO(data))
    assert sent.status == 204, sent.body
    chunked_id = await new_image(through, "proxy-chunked")
    assert (await through.upload(chunked_id, pieces(data, 300_000))).status == 204

    for wanted in (image_id, chunked_id):
        mine, theirs = await through.download(wanted), await direct.download(wanted)
        assert (mine.status, len(mine.body)) == (theirs.status, len(theirs.body)) == (200, SIZE)
        assert mine.body == theirs.body == data
        assert hashlib.md5(mine.body).hexdigest() == mine.headers["Content-MD5"]
        for name in KEPT:
            assert mine.headers.get(name) == theirs.headers.get(name), name
    ranged = await through.download(image_id, Range="bytes=100-1099")
    assert (ranged.status, ranged.body) == (206, data[100:1100])
    assert ranged.headers["Content-Range"] == f"bytes 100-1099/{SIZE}"
    assert (await through.show(image_id)).json() == (await direct.show(image_id)).json()
    missing = await through.show("00000000-0000-0000-0000-000000000000")
    assert missing.status == 404
    anonymous = await Api(session, proxy.url, "").call("GET", "/v2/images", auth=False)
    assert anonymous.status == 401 and "WWW-Authenticate" in anonymous.headers

    c = proxy.counters
    assert c.injected == 0 and c.delayed_seconds == 0 and c.requests == c.forwarded
    assert c.upload_bytes == 2 * SIZE and c.download_bytes == 2 * SIZE + 1000
    assert c.upstream_failures == 0 and c.client_gone == 0


async def test_the_proxy_streams_an_upload_on_as_it_arrives(
    glance: GlanceCloud, proxy: FaultProxy, session: aiohttp.ClientSession
) -> None:
    through, direct = apis(glance, proxy, session)
    data = fill_bytes(904, SIZE)
    image_id = await new_image(direct, "proxy-stream")
    half = SIZE // 2

    async def body() -> AsyncIterator[bytes]:
        yield data[:half]
        # A proxy that held the body whole would pass nothing on before the end.
        deadline = time.monotonic() + 10
        while proxy.counters.upload_bytes < half:
            assert time.monotonic() < deadline, "the proxy held the first half back"
            await asyncio.sleep(0.01)
        yield data[half:]

    sent = await through.upload(image_id, body(), **{"Content-Length": str(SIZE)})
    assert sent.status == 204, sent.body
    assert (await direct.download(image_id)).body == data


async def test_the_proxy_answers_the_5xx_it_rolls_without_reaching_glance(
    glance: GlanceCloud, proxy: FaultProxy, session: aiohttp.ClientSession
) -> None:
    through, _ = apis(glance, proxy, session)
    proxy.faults = Faults(error_rate=1.0, retry_after_share=1.0, retry_after=2, latency=(0, 0))
    seen = [await through.call("GET", "/v2/images") for _ in range(30)]
    assert {r.status for r in seen} == {500, 502, 503}
    assert {r.headers.get("Retry-After") for r in seen} == {"2"}
    proxy.faults = Faults(error_rate=1.0, retry_after_share=0.0, latency=(0, 0))
    made = await through.call("POST", "/v2/images", json={"name": "never", "os_type": "linux"})
    assert made.status in (500, 502, 503) and "Retry-After" not in made.headers

    c = proxy.counters
    assert c.forwarded == 0 and sum(c.errors.values()) == 31 == c.requests
    assert c.errors_with_retry_after == 30
    assert sum(c.errors[s] for s in (500, 502, 503)) == 31

    # Latency alone: every request waits at least as long as it says.
    proxy.faults = Faults(error_rate=0.0, latency=(0.05, 0.05))
    began = time.monotonic()
    for _ in range(4):
        assert (await through.call("GET", "/v2/images?limit=1")).status == 200
    assert time.monotonic() - began >= 0.2
    assert proxy.counters.delayed_seconds == pytest.approx(0.2)
    # Switched off at run time: straight through again.
    proxy.enabled = False
    assert (await through.call("GET", "/v2/images?limit=1")).status == 200
    assert proxy.counters.forwarded == 5


async def test_a_cut_upload_breaks_the_connection_and_glance_sees_a_hang_up(
    glance: GlanceCloud, proxy: FaultProxy, session: aiohttp.ClientSession
) -> None:
    through, direct = apis(glance, proxy, session)
    server = glance.servers["KR1"]
    data = fill_bytes(902, SIZE)
    image_id = await new_image(direct, "proxy-cut-up")
    hang_ups = disconnections(server)
    proxy.faults = dataclasses.replace(QUIET, upload_drop_rate=1.0)
    # As the engine sends it: a stream with its length (which aiohttp cannot send twice).
    with pytest.raises(aiohttp.ClientConnectionError):
        await through.upload(image_id, pieces(data), **{"Content-Length": str(SIZE)})
    c = proxy.counters
    assert (c.upload_drops, c.uploads_answered) == (1, 0)
    assert 0 <= c.upload_bytes < SIZE
    # Glance got part of the body, then a hang-up.  Until it has handled that request (its
    # access log line), what it shows means nothing: the bytes may still sit in the socket
    # buffer, the image still queued, about to be saving.  Then it is queued, and the same id
    # takes a whole upload.
    await answered(server, image_id)
    assert disconnections(server) > hang_ups
    assert (await direct.show(image_id)).json()["status"] == "queued"
    proxy.enabled = False
    assert (await through.upload(image_id, io.BytesIO(data))).status == 204
    shown = (await direct.show(image_id)).json()
    assert (shown["status"], shown["size"]) == ("active", SIZE)
    assert shown["checksum"] == hashlib.md5(data).hexdigest()


async def test_a_cut_download_is_a_body_cut_short(
    glance: GlanceCloud, proxy: FaultProxy, session: aiohttp.ClientSession
) -> None:
    through, direct = apis(glance, proxy, session)
    data = fill_bytes(903, SIZE)
    image_id = await new_image(direct, "proxy-cut-down")
    assert (await direct.upload(image_id, io.BytesIO(data))).status == 204
    proxy.faults = dataclasses.replace(QUIET, download_drop_rate=1.0)
    with pytest.raises(aiohttp.ClientPayloadError):
        await through.download(image_id)
    c = proxy.counters
    assert c.download_drops == 1 and 0 <= c.download_bytes < SIZE
    proxy.enabled = False
    assert (await through.download(image_id)).body == data


async def test_short_chaos_soak_against_real_glance(
    glance_install: GlanceInstall, tmp_path: Path
) -> None:
    result = await soak_seed(SHORT, glance_install, tmp_path)

    assert result.passed, result.verdict()
    assert result.kills >= SHORT.kills and result.final_code == 0, result.verdict()
    # Every kind of fault did happen, or the pass proves less than it claims.
    c = result.counters
    assert c.errors_with_retry_after > 0, result.verdict()
    assert sum(c.errors.values()) > c.errors_with_retry_after, result.verdict()
    assert c.upload_drops + c.download_drops > 0, result.verdict()
    assert c.delayed_seconds > 0, result.verdict()


async def test_the_verdict_sees_missing_duplicate_half_made_and_stray_copies(
    glance_install: GlanceInstall, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    # A cloud of its own: the verdict holds that the targets hold nothing but the job's copies.
    with GlanceCloud(glance_install, tmp_path, ("KR1", "KR2"), TENANTS) as cloud:
        api = GlanceApi(cloud, session)
        first = await api.seed(SourceImage(f"{JOB}-a", 1000), seed=1)
        second = await api.seed(SourceImage(f"{JOB}-b", 2000), seed=2)
        assert len(await target_problems(api, [first, second])) > 0  # nothing copied yet
        markers = {MARKER: first, JOB_MARKER: JOB}
        dst = Api(session, cloud.regions["KR1"], cloud.tenant("dst").token)
        for _ in range(2):  # two half-made copies of the first source in dst/KR1
            await dst.create(name=f"{JOB}-a", **markers)
        await dst.create(name="stray")
        problems = "\n".join(await target_problems(api, [first, second]))
    assert "dst/KR1 chaos-a: 2 copies, expected one" in problems
    assert "dst/KR1 chaos-b: 0 copies" in problems and "src/KR2 chaos-a: 0 copies" in problems
    assert problems.count(": left queued") == 3
    assert "dst/KR1 stray" in problems and "not a copy of a source" in problems
