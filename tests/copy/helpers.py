"""What the ``copy``/``sync`` tests share: a HOME with a clouds.yaml for the emulator's tenants
(``OS_CLIENT_CONFIG_FILE`` pointed at it, every other ``OS_*`` and ``XDG_*`` variable cleared so
the machine's own never leak in), the journal at its default path under that HOME, and a plain
HTTP listing of a region as its tenant sees it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import token
from tests.emulator.helpers import Api
from tests.engine.helpers import DST, MARKER, REPO, SRC, Outcome, finish
from transfer.emulator import Emulator, TenantSpec

JOB_LINE = re.compile(r"job (copy-[0-9a-f]{12}): ")


def write_clouds_yaml(home: Path, emu: Emulator) -> Path:
    """``nhn`` (the src tenant, region_name KR1) and ``other`` (the dst tenant, no region)."""
    path = home / "clouds.yaml"
    entries = []
    for name, spec, region in (("nhn", SRC, "KR1"), ("other", DST, None)):
        entries.append(
            f"  {name}:\n"
            f"    auth:\n"
            f"      auth_url: {emu.identity_url}\n"
            f"      username: {spec.username}\n"
            f"      project_id: {spec.tenant_id}\n"
            + (f"    region_name: {region}\n" if region else "")
        )
        # The passwords live in secure.yaml, merged over clouds.yaml as openstacksdk does.
    path.write_text("clouds:\n" + "".join(entries))
    secure = home / ".config" / "openstack" / "secure.yaml"
    secure.parent.mkdir(parents=True, exist_ok=True)
    secure.write_text(
        "clouds:\n"
        + "".join(
            f"  {name}:\n    auth:\n      password: {spec.password}\n"
            for name, spec in (("nhn", SRC), ("other", DST))
        )
    )
    return path


def child_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OS_", "XDG_", "ENGINE_TEST_", "IMAGE_TRANSFER_"))
    }
    env.update(HOME=str(home), OS_CLIENT_CONFIG_FILE=str(home / "clouds.yaml"), **extra)
    return env


async def start(home: Path, *args: str, **extra: str) -> asyncio.subprocess.Process:
    """``image-transfer ARGS`` as a child process with ``child_env(home)``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transfer",
        *args,
        cwd=REPO,
        env=child_env(home, **extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run(home: Path, *args: str, within: float = 60.0, **extra: str) -> Outcome:
    return await finish(await start(home, *args, **extra), within)


def job_name(outcome: Outcome) -> str:
    found = JOB_LINE.search(outcome.err)
    assert found, outcome.err
    return found.group(1)


def journal_path(home: Path) -> Path:
    return home / ".local" / "state" / "image-transfer" / "journal.db"


async def listing(
    emu: Emulator, http: aiohttp.ClientSession, region: str, tenant: TenantSpec
) -> list[dict[str, Any]]:
    """Every image the tenant owns in the region, through ``GET /v2/images`` (all pages)."""
    api = Api(http, emu.regions[region], await token(emu, tenant, http))
    images: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100, "owner": tenant.tenant_id}
    while True:
        reply = await api.list(**params)
        assert reply.status == 200, reply.body
        page = reply.json()
        images += page["images"]
        if not page["images"] or "next" not in page:
            return images
        params["marker"] = page["images"][-1]["id"]


def by_source(
    images: list[dict[str, Any]], job: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The images that name a source (the engine's marker), by that source's id; with ``job``,
    only that job's."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for image in images:
        if MARKER in image and job in (None, image.get("image_transfer_job")):
            found[image[MARKER]].append(image)
    return found
