"""``image-transfer emulator`` as a user runs it: a real subprocess, its JSON line, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.emulator.helpers import Api
from transfer.cli.main import main
from transfer.emulator import derive_tenant_id

REPO = Path(__file__).resolve().parents[2]


async def _token(http: aiohttp.ClientSession, info: dict[str, Any], index: int = 0) -> str:
    tenant = info["tenants"][index]
    body = {
        "auth": {
            "tenantId": tenant["tenant_id"],
            "passwordCredentials": {"username": tenant["username"], "password": tenant["password"]},
        }
    }
    async with http.post(info["identity_url"] + "/tokens", json=body) as resp:
        assert resp.status == 200
        token_id: str = (await resp.json())["access"]["token"]["id"]
        return token_id


@asynccontextmanager
async def _emulator(*args: str) -> AsyncIterator[dict[str, Any]]:
    """Run the command; yield its announcement; stop it with SIGTERM and check a clean exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transfer",
        "emulator",
        "--port",
        "0",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line, (await proc.stderr.read()).decode()
        yield json.loads(line)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert await proc.stdout.read() == b""  # exactly one line on stdout
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_command_announces_itself_serves_and_stops_on_sigterm(
    http: aiohttp.ClientSession,
) -> None:
    async with _emulator() as info:
        assert set(info) == {
            "flavour",
            "identity_url",
            "identity_root",
            "regions",
            "admin_url",
            "tenants",
        }
        assert info["flavour"] == "nhn"
        assert set(info["regions"]) == {"KR1", "KR2"}
        assert [t["name"] for t in info["tenants"]] == ["demo-src", "demo-dst"]
        api = Api(http, info["regions"]["KR2"], await _token(http, info))
        image = await api.create(name="from-cli")
        assert (await api.show(image["id"])).json()["name"] == "from-cli"
        async with http.get(info["admin_url"] + "/faults") as resp:
            assert resp.status == 200


async def test_tenants_regions_and_faults_come_from_flags(http: aiohttp.ClientSession) -> None:
    async with _emulator(
        "--region",
        "JP1",
        "--tenant",
        "team-a:alice@example.com:pa:ss",
        "--error-rate",
        "1",
        "--error-routes",
        "list",
        "--error-statuses",
        "429",
        "--retry-after",
        "1",
    ) as info:
        assert list(info["regions"]) == ["JP1"]
        assert info["tenants"] == [
            {
                "name": "team-a",
                "tenant_id": derive_tenant_id("team-a"),
                "username": "alice@example.com",
                "password": "pa:ss",
            }
        ]
        api = Api(http, info["regions"]["JP1"], await _token(http, info))
        listed = await api.list()
        assert listed.status == 429 and listed.headers["Retry-After"] == "1"
        assert (await api.create()).get("status") == "queued"


async def test_a_state_dir_survives_a_restart(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    state = str(tmp_path / "state")
    async with _emulator("--state-dir", state) as info:
        api = Api(http, info["regions"]["KR1"], await _token(http, info))
        image_id = (await api.create(name="durable"))["id"]
        assert (await api.upload(image_id, b"kept across restarts")).status == 204
    async with _emulator("--state-dir", state) as info:
        api = Api(http, info["regions"]["KR1"], await _token(http, info))
        shown = await api.show(image_id)
        assert shown.status == 200 and shown.json()["status"] == "active"
        assert (await api.download(image_id)).body == b"kept across restarts"


async def test_a_glance_cloud_with_both_identity_versions(http: aiohttp.ClientSession) -> None:
    async with _emulator("--flavour", "glance", "--identity", "v2.0,v3") as info:
        assert info["flavour"] == "glance"
        assert info["identity_v3_url"] == info["identity_root"] + "/v3"
        api = Api(http, info["regions"]["KR1"], await _token(http, info))
        made = await api.call("POST", "/v2/images", json={"tags": ["_glance"]})
        assert made.status == 201  # Glance's rules: no name or os_type needed, '_' tags allowed
        assert made.json()["visibility"] == "shared"
        async with http.get(info["regions"]["KR1"] + "/") as resp:
            assert resp.status == 300


@pytest.mark.parametrize(
    ("flags", "mentions"),
    [
        (["--error-rate", "2"], "--error-rate"),
        (["--error-routes", "nowhere"], "--error-routes"),
        (["--tenant", "no-colons:secret-password"], "--tenant"),
        (["--bandwidth", "fast"], "--bandwidth"),
        (["--page-size", "0"], "--page-size"),
        (["--port", "many"], "--port"),
        (["--port", "65535"], "--port"),
        (["--region", "a/b"], "region"),
        (["--flavour", "openstack"], "--flavour: expected one of nhn, glance, got 'openstack'"),
        (["--identity", "v2"], "--identity: expected a comma-separated list of v2.0, v3"),
        (["--identity", "v3,v3"], "names a version twice"),
    ],
)
def test_bad_flags_exit_2_with_one_clear_line(
    flags: list[str], mentions: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulator", *flags]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and mentions in lines[0]
    assert "secret-password" not in err
