"""The interop harness itself: the token filter lets no client choose its identity, Glance's
SQLite holds up under concurrent requests, servers stop without leftovers, and a machine that
cannot reach the package index skips the suite (or fails it, where every test must run)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from interop.environment import GlanceInstall, IndexUnreachable, ensure_glance
from interop.server import GlanceCloud
from tests.emulator.helpers import PATCH_TYPE, Api
from tests.interop.conftest import install_or_skip

REPO = Path(__file__).resolve().parents[2]
CREATE = {"name": "h", "os_type": "linux", "disk_format": "raw", "container_format": "bare"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_identity_headers_sent_by_a_client_are_ignored(
    glance: GlanceCloud, session: aiohttp.ClientSession
) -> None:
    base = glance.regions["KR1"]
    src, outsider = glance.tenant("src"), glance.tenant("outsider")
    mine = await Api(session, base, src.token).call(
        "POST", "/v2/images", json={**CREATE, "visibility": "private"}
    )
    assert mine.status == 201
    image_id = mine.json()["id"]
    spoof = {
        "X-Identity-Status": "Confirmed",
        "X-Project-Id": src.project_id,
        "X-Tenant-Id": src.project_id,
        "X-Roles": "admin,member,reader",
    }
    # No token, or an unknown one: refused, whatever the headers claim.
    anonymous = Api(session, base, "")
    for token in (None, "forged"):
        headers = dict(spoof) if token is None else {**spoof, "X-Auth-Token": token}
        reply = await anonymous.call("GET", f"/v2/images/{image_id}", auth=False, headers=headers)
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"].startswith("Keystone uri=")
    # A real token acts as its own tenant, not as the one the headers name.
    theirs = Api(session, base, outsider.token)
    assert (await theirs.call("GET", f"/v2/images/{image_id}", headers=spoof)).status == 404
    made = await theirs.call("POST", "/v2/images", json=CREATE, headers=spoof)
    assert made.status == 201 and made.json()["owner"] == outsider.project_id
    public = await theirs.call(
        "POST", "/v2/images", json={**CREATE, "visibility": "public"}, headers=spoof
    )
    assert public.status == 403  # no admin role either


async def test_concurrent_writes_never_fail_on_sqlite_locks(
    glance: GlanceCloud, session: aiohttp.ClientSession
) -> None:
    api = Api(session, glance.regions["KR2"], glance.tenant("src").token)

    async def churn(index: int) -> list[int]:
        made = await api.call("POST", "/v2/images", json={**CREATE, "name": f"busy-{index}"})
        statuses = [made.status]
        if made.status != 201:
            return statuses
        image_id = made.json()["id"]
        for step in range(3):
            ops = f'[{{"op": "add", "path": "/step{step}", "value": "{step}"}}]'
            reply = await api.call(
                "PATCH", f"/v2/images/{image_id}", data=ops, headers={"Content-Type": PATCH_TYPE}
            )
            statuses.append(reply.status)
        statuses.append((await api.call("PUT", f"/v2/images/{image_id}/tags/t{index}")).status)
        statuses.append((await api.call("DELETE", f"/v2/images/{image_id}")).status)
        return statuses

    # More requests at once than the server has threads, all of them writing.
    results = await asyncio.gather(*(churn(i) for i in range(16)))
    assert [r for r in results if r != [201, 200, 200, 200, 204, 204]] == []


async def test_a_stopped_cloud_leaves_no_server_behind(
    glance_install: GlanceInstall, tmp_path: Path
) -> None:
    cloud = GlanceCloud(glance_install, tmp_path, regions=("KR9",), tenants=("solo",))
    with cloud:
        server = cloud.servers["KR9"]
        assert server.running
        url = cloud.regions["KR9"]
        api = Api(aiohttp.ClientSession(), url, cloud.tenant("solo").token)
        async with api.session:
            assert (await api.call("GET", "/v2/images")).status == 200
        pid = server.pid
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # neither the master nor its worker is left
    host, port = url.removeprefix("http://").split(":")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2).close()


def test_an_unreachable_package_index_is_a_skip_or_a_failure(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("glance==33.0.0\n")
    # pip with no configuration and an index on a closed loopback port.
    offline = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    offline.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL=f"http://127.0.0.1:{closed_port()}/simple",
        PIP_RETRIES="0",
        PIP_TIMEOUT="5",
    )
    root = tmp_path / "interop"

    def build() -> GlanceInstall:
        return ensure_glance(root, requirements=requirements, pip_env=offline)

    with pytest.raises(IndexUnreachable) as caught:
        build()
    assert "package index is unreachable" in str(caught.value)
    assert not (root / "venv" / ".complete").exists()  # the next run tries again

    def unreachable() -> GlanceInstall:
        raise caught.value

    with pytest.raises(pytest.skip.Exception, match="IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1"):
        install_or_skip(unreachable, required=False)
    with pytest.raises(pytest.fail.Exception, match="no test may skip"):
        install_or_skip(unreachable, required=True)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_servers_stop_by_themselves_when_their_starter_is_killed(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interop",
        "--workdir",
        str(tmp_path),
        "--tenants",
        "solo",
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    urls: list[str] = []
    while len(urls) < 2:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line, (await proc.communicate())[1].decode()
        if line.startswith("export GLANCE_"):
            urls.append(line.strip().split("=", 1)[1])
    proc.kill()  # SIGKILL: no clean-up of its own
    await proc.communicate()
    for url in urls:
        host, port = url.removeprefix("http://").split(":")
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, f"{url} still serves after its starter died"
            await asyncio.sleep(0.2)
