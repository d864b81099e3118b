"""Seeded images, the in-process views of the store, persistence and ports."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import token
from tests.emulator.helpers import Api
from transfer.emulator import Emulator, Faults, fill_bytes, fill_pieces

SRC_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
DST_ID = "0f9e8d7c6b5a49382716a5b4c3d2e1f0"


async def test_seeded_images_of_a_given_size_are_deterministic_and_served(
    emulator: Emulator, src: Api
) -> None:
    size = 3 * (1 << 20) + 17
    first = await emulator.seed_image("KR1", SRC_ID, size=size, fill_seed=5, name="big")
    second = await emulator.seed_image("KR1", SRC_ID, size=size, fill_seed=5)
    other = await emulator.seed_image("KR1", SRC_ID, size=size, fill_seed=6)
    expected = fill_bytes(5, size)
    record = emulator.image_record("KR1", first)
    assert record["status"] == "active" and record["size"] == size
    assert record["checksum"] == hashlib.md5(expected).hexdigest()
    assert record["os_hash_value"] == hashlib.sha512(expected).hexdigest()
    assert emulator.image_record("KR1", second)["checksum"] == record["checksum"]
    assert emulator.image_record("KR1", other)["checksum"] != record["checksum"]
    path = emulator.image_path("KR1", first)
    assert path is not None and path.read_bytes() == expected
    assert (await src.download(first)).body == expected
    # Pieces are at most 1 MiB each, and a shorter image is a prefix of a longer one.
    assert max(len(p) for p in fill_pieces(5, size)) == 1 << 20
    assert fill_bytes(5, 1000) == expected[:1000]


async def test_seed_image_fields_and_data(emulator: Emulator, dst: Api) -> None:
    image_id = await emulator.seed_image(
        "KR2",
        DST_ID,
        data=b"hello",
        name="golden",
        visibility="public",
        protected=True,
        tags=["base"],
        min_disk=20,
        os_distro="ubuntu",
    )
    record = emulator.image_record("KR2", image_id)
    assert record["owner"] == DST_ID and record["visibility"] == "public"
    assert record["protected"] is True and record["tags"] == ["base"]
    assert (record["disk_format"], record["container_format"], record["os_type"]) == (
        "qcow2",
        "bare",
        "linux",
    )
    assert record["os_distro"] == "ubuntu" and record["min_disk"] == 20
    assert record["checksum"] == hashlib.md5(b"hello").hexdigest()
    assert [r["id"] for r in emulator.list_all("KR2")] == [image_id]
    assert emulator.list_all("KR1") == []
    with pytest.raises(KeyError):
        emulator.image_record("KR1", image_id)


async def test_seed_image_without_data_is_queued(emulator: Emulator) -> None:
    image_id = await emulator.seed_image("KR1", SRC_ID, name="empty")
    assert emulator.image_record("KR1", image_id)["status"] == "queued"
    assert emulator.image_path("KR1", image_id) is None


async def test_seed_image_refuses_what_create_refuses(emulator: Emulator) -> None:
    with pytest.raises(ValueError):
        await emulator.seed_image("KR1", SRC_ID, data=b"x", status="active")
    with pytest.raises(ValueError):
        await emulator.seed_image("KR1", SRC_ID, data=b"x", size=1)
    with pytest.raises(KeyError):
        await emulator.seed_image("JP1", SRC_ID, data=b"x")


async def test_set_faults_changes_the_live_object(emulator: Emulator) -> None:
    live = emulator.faults
    emulator.set_faults(latency=0.5, bandwidth=1000)
    assert live.latency == 0.5 and emulator.faults.bandwidth == 1000
    with pytest.raises(ValueError):
        emulator.set_faults(latency=-1, bandwidth=5)
    assert live.bandwidth == 1000


async def test_a_temporary_state_dir_is_removed_at_close() -> None:
    async with Emulator() as emu:
        image_id = await emu.seed_image("KR1", SRC_ID, data=b"bytes")
        path = emu.image_path("KR1", image_id)
        assert path is not None and path.exists()
    assert not path.exists()


async def test_a_state_dir_keeps_images_members_and_reserved_ids(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with Emulator(state_dir=tmp_path) as emu:
        api = Api(http, emu.regions["KR1"], await token(emu, "demo-src", http))
        kept = (await api.create(name="kept", visibility="shared", note="n"))["id"]
        assert (await api.upload(kept, b"persisted bytes")).status == 204
        await api.call("POST", f"/v2/images/{kept}/members", json={"member": DST_ID})
        await api.call("PUT", f"/v2/images/{kept}/tags/golden")
        gone = (await api.create())["id"]
        await api.call("DELETE", f"/v2/images/{gone}")
        before = emu.image_record("KR1", kept)
    assert (tmp_path / "KR1.json").exists()
    async with Emulator(state_dir=tmp_path) as emu:
        assert emu.image_record("KR1", kept) == before
        api = Api(http, emu.regions["KR1"], await token(emu, "demo-src", http))
        assert (await api.download(kept)).body == b"persisted bytes"
        members = (await api.call("GET", f"/v2/images/{kept}/members")).json()["members"]
        assert [m["member_id"] for m in members] == [DST_ID]
        again = await api.call("POST", "/v2/images", json={"id": gone, "os_type": "linux"})
        assert again.status == 409
        assert [r["id"] for r in emu.list_all("KR1")] == [kept]


def _free_port_run(count: int) -> int:
    """A port N such that N..N+count-1 are free right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise AssertionError("no run of free ports found")


async def test_a_fixed_port_puts_the_regions_on_the_next_ports(
    http: aiohttp.ClientSession,
) -> None:
    base = _free_port_run(4)
    async with Emulator(regions=("KR1", "KR2", "JP1"), port=base) as emu:
        assert emu.identity_url == f"http://127.0.0.1:{base}/v2.0"
        assert emu.admin_url == f"http://127.0.0.1:{base}/admin"
        assert emu.regions == {
            "KR1": f"http://127.0.0.1:{base + 1}",
            "KR2": f"http://127.0.0.1:{base + 2}",
            "JP1": f"http://127.0.0.1:{base + 3}",
        }
        api = Api(http, emu.regions["JP1"], await token(emu, "demo-src", http))
        assert (await api.list()).status == 200


def test_bad_settings_are_refused_before_starting() -> None:
    with pytest.raises(ValueError):
        Emulator(regions=())
    with pytest.raises(ValueError):
        Emulator(regions=("KR1", "KR1"))
    with pytest.raises(ValueError):
        Emulator(default_page_size=0)
    with pytest.raises(ValueError):
        Emulator(token_ttl=0)


async def test_addresses_need_a_started_emulator() -> None:
    emu = Emulator()
    with pytest.raises(RuntimeError, match="not started"):
        _ = emu.regions


async def test_an_upload_cut_by_shutdown_is_queued_after_a_restart(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    emu = Emulator(state_dir=tmp_path, faults=Faults(bandwidth=200_000))
    await emu.start()
    try:
        api = Api(http, emu.regions["KR1"], await token(emu, "demo-src", http))
        image_id = (await api.create())["id"]
        upload = asyncio.create_task(api.upload(image_id, b"u" * 1_000_000))
        for _ in range(100):
            if emu.image_record("KR1", image_id)["status"] == "saving":
                break
            await asyncio.sleep(0.01)
        assert emu.image_record("KR1", image_id)["status"] == "saving"
    finally:
        await emu.close()
    with pytest.raises(aiohttp.ClientError):
        await upload
    async with Emulator(state_dir=tmp_path) as again:
        assert again.image_record("KR1", image_id)["status"] == "queued"
        assert list((tmp_path / "KR1" / "images").iterdir()) == []
