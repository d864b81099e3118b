"""Fault injection (errors, latency, bandwidth, cut connections, corrupted bytes), the admin
endpoint and the request counters."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import token
from tests.emulator.helpers import Api, pieces
from transfer.emulator import Emulator, Faults

SRC_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


async def test_injected_errors_carry_status_retry_after_and_a_json_body(
    emulator: Emulator, src: Api
) -> None:
    emulator.set_faults(error_rate=1.0, error_statuses=(503,), retry_after=2, errors_remaining=2)
    for _ in range(2):
        reply = await src.list()
        assert reply.status == 503
        assert reply.headers["Retry-After"] == "2"
        assert reply.json()["code"] == "503 Service Unavailable"
    assert (await src.list()).status == 200  # the budget of errors is spent
    assert emulator.faults.errors_remaining == 0


async def test_errors_hit_only_the_chosen_routes_and_change_nothing(
    emulator: Emulator, src: Api
) -> None:
    image_id = (await src.create())["id"]
    emulator.set_faults(error_rate=1.0, error_routes={"upload"})
    assert (await src.list()).status == 200
    assert (await src.show(image_id)).status == 200
    reply = await src.upload(image_id, b"data")
    assert reply.status in (500, 502, 503)
    assert (await src.show(image_id)).json()["status"] == "queued"
    emulator.set_faults(error_rate=0.0)
    assert (await src.upload(image_id, b"data")).status == 204


async def test_token_route_errors_answer_in_keystone_shape(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    emulator.set_faults(error_rate=1.0, error_routes=frozenset({"token"}), error_statuses=(502,))
    tenant = emulator.tenants[0]
    body = {
        "auth": {
            "tenantId": tenant.tenant_id,
            "passwordCredentials": {"username": tenant.username, "password": tenant.password},
        }
    }
    async with http.post(emulator.identity_url + "/tokens", json=body) as resp:
        assert resp.status == 502
        assert (await resp.json())["error"]["code"] == 502


async def _statuses(http: aiohttp.ClientSession, seed: int) -> list[int]:
    async with Emulator(seed=seed, faults=Faults(error_rate=0.5)) as emu:
        api = Api(http, emu.regions["KR1"], emu.issue_token(SRC_ID))
        return [(await api.list()).status for _ in range(30)]


async def test_the_same_seed_fails_the_same_requests(http: aiohttp.ClientSession) -> None:
    first = await _statuses(http, seed=7)
    assert first == await _statuses(http, seed=7)
    assert 200 in first and any(s >= 500 for s in first)


async def test_latency_delays_every_request(emulator: Emulator, src: Api) -> None:
    emulator.set_faults(latency=0.15, latency_jitter=0.05)
    started = time.monotonic()
    assert (await src.list()).status == 200
    assert 0.15 <= time.monotonic() - started < 1.0


async def test_latency_routes_delay_only_those_routes(emulator: Emulator, src: Api) -> None:
    emulator.set_faults(latency=0.6, latency_routes={"create"})
    started = time.monotonic()
    assert (await src.list()).status == 200
    assert time.monotonic() - started < 0.45
    started = time.monotonic()
    await src.create()
    assert time.monotonic() - started >= 0.6


async def test_connect_latency_delays_only_a_new_connections_first_request(
    emulator: Emulator, src: Api
) -> None:
    await src.list()  # the client's connection is open and pooled
    emulator.set_faults(connect_latency=0.5)
    started = time.monotonic()
    assert (await src.list()).status == 200
    assert time.monotonic() - started < 0.4  # a reused connection pays no handshake
    async with aiohttp.ClientSession() as fresh:
        other = Api(fresh, src.base, src.token)
        started = time.monotonic()
        assert (await other.list()).status == 200
        assert time.monotonic() - started >= 0.5


async def test_bandwidth_caps_downloads_and_uploads(emulator: Emulator, src: Api) -> None:
    data = os.urandom(100_000)
    image_id = await emulator.seed_image("KR1", SRC_ID, data=data)
    emulator.set_faults(bandwidth=250_000)
    started = time.monotonic()
    reply = await src.download(image_id)
    assert reply.body == data
    assert time.monotonic() - started >= 0.35
    target = (await src.create())["id"]
    started = time.monotonic()
    assert (await src.upload(target, data)).status == 204
    assert time.monotonic() - started >= 0.35
    assert (await src.show(target)).json()["checksum"] == hashlib.md5(data).hexdigest()


async def test_dropped_downloads_cut_the_body_then_recover(emulator: Emulator, src: Api) -> None:
    data = os.urandom(200_000)
    image_id = await emulator.seed_image("KR1", SRC_ID, data=data)
    emulator.set_faults(drop_download_after=50_000, drops_remaining=1)
    received = bytearray()
    async with src.session.get(
        f"{src.base}/v2/images/{image_id}/file", headers={"X-Auth-Token": src.token}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(data))
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_any():
                received.extend(chunk)
    assert bytes(received) == data[: len(received)]
    assert len(received) <= 50_000
    assert emulator.faults.drops_remaining == 0
    assert (await src.download(image_id)).body == data


async def test_dropped_uploads_leave_the_image_queued_then_recover(
    emulator: Emulator, src: Api
) -> None:
    data = os.urandom(300_000)
    image_id = (await src.create())["id"]
    emulator.set_faults(drop_upload_after=100_000, drops_remaining=1)
    with pytest.raises(aiohttp.ClientError):
        await src.upload(image_id, pieces(data, 16384), **{"Content-Length": str(len(data))})
    assert (await src.show(image_id)).json()["status"] == "queued"
    assert emulator.faults.drops_remaining == 0
    assert (await src.upload(image_id, data)).status == 204
    assert (await src.show(image_id)).json()["checksum"] == hashlib.md5(data).hexdigest()


async def test_uploads_smaller_than_the_drop_point_pass(emulator: Emulator, src: Api) -> None:
    image_id = (await src.create())["id"]
    emulator.set_faults(drop_upload_after=1000)
    assert (await src.upload(image_id, b"s" * 1000)).status == 204


async def test_corrupted_downloads_flip_one_byte_and_keep_the_true_md5(
    emulator: Emulator, src: Api
) -> None:
    data = os.urandom(64_000)
    image_id = await emulator.seed_image("KR1", SRC_ID, data=data)
    emulator.set_faults(corrupt_downloads=1)
    bad = await src.download(image_id)
    assert bad.status == 200
    assert bad.headers["Content-MD5"] == hashlib.md5(data).hexdigest()
    assert hashlib.md5(bad.body).hexdigest() != bad.headers["Content-MD5"]
    assert sum(x != y for x, y in zip(bad.body, data, strict=True)) == 1
    assert emulator.faults.corrupt_downloads == 0
    assert (await src.download(image_id)).body == data


async def _admin(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as resp:
        payload = await resp.json() if resp.status != 204 else None
        return resp.status, payload


async def test_admin_endpoint_reads_and_changes_faults(
    emulator: Emulator, http: aiohttp.ClientSession, src: Api
) -> None:
    admin = emulator.admin_url
    status, faults = await _admin(http, "GET", admin + "/faults")
    assert status == 200
    assert faults == Faults().to_json()
    status, faults = await _admin(
        http, "PATCH", admin + "/faults", {"error_rate": 1, "error_routes": ["list"]}
    )
    assert status == 200 and faults["error_routes"] == ["list"]
    assert emulator.faults.error_routes == frozenset({"list"})
    assert isinstance(emulator.faults.error_routes, frozenset)
    assert (await src.list()).status >= 500
    for bad in ({"no_such_field": 1}, {"error_rate": 2}, {"error_routes": ["nowhere"]}):
        status, answer = await _admin(http, "PATCH", admin + "/faults", bad)
        assert status == 400, bad
        assert answer["error"]["code"] == 400
    assert emulator.faults.error_rate == 1  # a refused change changes nothing
    status, _ = await _admin(http, "PATCH", admin + "/faults", {"error_rate": 0})
    assert (await src.list()).status == 200


async def test_admin_expires_tokens(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    api = Api(http, emulator.regions["KR2"], await token(emulator, "demo-dst", http))
    assert (await api.list()).status == 200
    status, _ = await _admin(http, "POST", emulator.admin_url + "/expire-tokens")
    assert status == 204
    assert (await api.list()).status == 401


async def test_counters_count_requests_and_bytes_per_region(
    emulator: Emulator, http: aiohttp.ClientSession, src: Api
) -> None:
    data = os.urandom(5000)
    image_id = (await src.create())["id"]
    await src.upload(image_id, data)
    await src.download(image_id)
    await src.download(image_id, Range="bytes=0-99")
    await src.list()
    await src.call("PUT", f"/v2/images/{image_id}/tags/t")
    kr1 = emulator.counters("KR1")
    assert kr1["requests"] == {"create": 1, "upload": 1, "download": 2, "list": 1, "tags": 1}
    assert kr1["bytes_received"] == 5000
    assert kr1["bytes_served"] == 5100
    assert kr1["connections"] >= 1  # the test client's pooled connections
    assert emulator.counters("KR2")["requests"] == {}
    status, over_http = await _admin(http, "GET", emulator.admin_url + "/counters")
    assert over_http["regions"]["KR1"] == kr1
    assert over_http["identity"]["requests"]["token"] >= 1
    status, _ = await _admin(http, "POST", emulator.admin_url + "/counters/reset")
    assert status == 204
    assert emulator.counters("KR1") == {
        "requests": {},
        "bytes_served": 0,
        "bytes_received": 0,
        "connections": 0,
    }


@pytest.mark.parametrize(
    "changes",
    [
        {"error_rate": 1.5},
        {"error_rate": -0.1},
        {"error_routes": frozenset({"nowhere"})},
        {"error_statuses": ()},
        {"error_statuses": (200,)},
        {"bandwidth": 0},
        {"latency": -1},
        {"corrupt_downloads": -1},
        {"drops_remaining": -2},
    ],
)
def test_invalid_faults_are_refused_and_change_nothing(changes: dict[str, Any]) -> None:
    faults = Faults()
    with pytest.raises(ValueError):
        faults.update(**changes)
    assert faults == Faults()
    with pytest.raises(ValueError):
        Faults(**changes)


def test_unknown_fault_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown fault field"):
        Faults().update(error_ratio=1)
