"""``image-transfer emulator --write-config DIR`` as a user runs it: a real emulator process whose
files work as written: ``plan -c DIR/config.toml`` plans against it, and ``clouds.yaml`` has the
layout the openstack clients read (``clouds:``, ``auth``, ``region_name``) with working
credentials."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import sys
from pathlib import Path

import aiohttp
import yaml

from tests.engine.helpers import REPO, cli


async def test_write_config_gives_a_config_and_clouds_yaml_that_work(tmp_path: Path) -> None:
    directory = tmp_path / "emu"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transfer",
        "emulator",
        "--write-config",
        str(directory),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line, await proc.stderr.read()
        info = json.loads(line)
        how = (await asyncio.wait_for(proc.stderr.read(2000), 5)).decode()
        port = int(info["identity_root"].rsplit(":", 1)[1])
        assert f"--port {port}" in how
        assert f"image-transfer plan -c {directory / 'config.toml'}" in how

        planned = await cli("plan", "-c", str(directory / "config.toml"))
        assert planned.code == 0, planned.err
        assert "job emulator: demo-src/KR1 -> demo-src/KR2, demo-dst/KR1" in planned.out

        clouds = yaml.safe_load((directory / "clouds.yaml").read_text())
        assert stat.S_IMODE((directory / "clouds.yaml").stat().st_mode) == 0o600
        assert set(clouds["clouds"]) == {t["name"] for t in info["tenants"]}
        async with aiohttp.ClientSession() as http:
            for name, entry in clouds["clouds"].items():
                assert entry["region_name"] == "KR1"
                auth = entry["auth"]
                assert auth["auth_url"] == info["identity_url"]
                body = {
                    "auth": {
                        "tenantId": auth["project_id"],
                        "passwordCredentials": {
                            "username": auth["username"],
                            "password": auth["password"],
                        },
                    }
                }
                async with http.post(auth["auth_url"] + "/tokens", json=body) as reply:
                    assert reply.status == 200, name
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
