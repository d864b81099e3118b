"""What the end-to-end tests against real Glance share: seeding source images through the API,
an engine config in pre-issued-token mode, the real CLI as a child process, and the checks a
user would make by reading the target clouds through the API (never the engine's report).
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from interop.server import GlanceCloud
from tests.emulator.helpers import OCTET, Api
from tests.engine.helpers import COPIED_FIELDS, MARKER, NOT_PROPERTIES
from transfer.emulator import fill_bytes

REPO = Path(__file__).resolve().parents[2]
JOB_MARKER = "image_transfer_job"
#: The clouds a config names (the outsider's token is never given to the engine).
CLOUDS = ("src", "dst", "partner")


def token_env(cloud: str) -> str:
    return f"INTEROP_{cloud.upper()}_TOKEN"


@dataclass(frozen=True)
class Target:
    cloud: str
    region: str

    @property
    def key(self) -> str:
        return f"{self.cloud}/{self.region}"


@dataclass
class SourceImage:
    name: str
    size: int
    fields: dict[str, Any] = field(default_factory=dict)
    members: tuple[str, ...] = ()  # tenant names
    protect: bool = False


class GlanceApi:
    """The interop cloud's Image API as each tenant, in each region."""

    def __init__(self, cloud: GlanceCloud, session: aiohttp.ClientSession) -> None:
        self.cloud = cloud
        self.session = session

    def api(self, tenant: str, region: str) -> Api:
        return Api(self.session, self.cloud.regions[region], self.cloud.tenant(tenant).token)

    async def seed(self, image: SourceImage, *, region: str = "KR1", seed: int = 0) -> str:
        """Create and upload a source image owned by ``src``, as its owner would."""
        api = self.api("src", region)
        body = {
            "name": image.name,
            "os_type": "linux",
            "disk_format": "qcow2",
            "container_format": "bare",
            "visibility": "shared" if image.members else "private",
            **image.fields,
        }
        reply = await api.call("POST", "/v2/images", json=body)
        assert reply.status == 201, reply.body
        image_id: str = reply.json()["id"]
        data = io.BytesIO(fill_bytes(seed, image.size))
        reply = await api.call(
            "PUT", f"/v2/images/{image_id}/file", data=data, headers={"Content-Type": OCTET}
        )
        assert reply.status == 204, reply.body
        for member in image.members:
            member_id = self.cloud.tenant(member).project_id
            reply = await api.call(
                "POST", f"/v2/images/{image_id}/members", json={"member": member_id}
            )
            assert reply.status == 200, reply.body
        if image.protect:
            reply = await api.call(
                "PATCH",
                f"/v2/images/{image_id}",
                data=b'[{"op": "replace", "path": "/protected", "value": true}]',
                headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
            )
            assert reply.status == 200, reply.body
        return image_id

    async def show(self, tenant: str, region: str, image_id: str) -> dict[str, Any]:
        reply = await self.api(tenant, region).call("GET", f"/v2/images/{image_id}")
        assert reply.status == 200, reply.body
        shown: dict[str, Any] = reply.json()
        return shown

    async def owned(self, tenant: str, region: str) -> list[dict[str, Any]]:
        """Every image ``tenant`` owns in ``region``, following ``next`` to the end."""
        api = self.api(tenant, region)
        owner = self.cloud.tenant(tenant).project_id
        images: list[dict[str, Any]] = []
        path: str | None = f"/v2/images?limit=50&owner={owner}"
        while path is not None:
            reply = await api.call("GET", path)
            assert reply.status == 200, reply.body
            page = reply.json()
            images.extend(page["images"])
            path = page.get("next")
        return images

    async def members(self, tenant: str, region: str, image_id: str) -> dict[str, str]:
        """Member tenant id -> status, as the image's owner sees them."""
        reply = await self.api(tenant, region).call("GET", f"/v2/images/{image_id}/members")
        if reply.status == 403:  # only shared images have members
            return {}
        assert reply.status == 200, reply.body
        return {m["member_id"]: m["status"] for m in reply.json()["members"]}

    async def copies(self, target: Target, job: str) -> dict[str, list[dict[str, Any]]]:
        """The target's images that a job made, by their source's id (the Glance servers live
        for the whole suite: other tests' copies are there too)."""
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for image in await self.owned(target.cloud, target.region):
            if MARKER in image and image.get(JOB_MARKER) == job:
                found[image[MARKER]].append(image)
        return found

    async def problems(
        self,
        sources: Iterable[str],
        targets: Sequence[Target],
        job: str,
        *,
        accepting: Iterable[str] = CLOUDS,
    ) -> list[str]:
        """Why the targets do not hold exactly one faithful copy of each source."""
        problems: list[str] = []
        accepted_by = {self.cloud.tenant(name).project_id for name in accepting}
        wanted = list(sources)
        for target in targets:
            held = await self.copies(target, job)
            owner = self.cloud.tenant(target.cloud).project_id
            for source_id in wanted:
                src = await self.show("src", "KR1", source_id)
                where = f"{target.key} {src['name']}"
                records = held.get(source_id, [])
                if len(records) != 1:
                    shown = [(r["id"], r["status"]) for r in records]
                    problems.append(f"{where}: {len(records)} copies, expected one: {shown}")
                    continue
                copy = records[0]
                for name in COPIED_FIELDS:
                    if copy.get(name) != src.get(name):
                        problems.append(f"{where}: {name} {copy.get(name)!r} != {src.get(name)!r}")
                if sorted(copy["tags"]) != sorted(src["tags"]):
                    problems.append(f"{where}: tags {copy['tags']} != {src['tags']}")
                want = custom_properties(src)
                want.update(
                    image_transfer_source_region="KR1",
                    image_transfer_source_id=source_id,
                    image_transfer_source_checksum=src["checksum"],
                    image_transfer_job=job,
                )
                have = custom_properties(copy)
                if have != want:
                    problems.append(f"{where}: properties {have} != {want}")
                source_members = await self.members("src", "KR1", source_id)
                want_members = {
                    tenant: "accepted" if tenant in accepted_by else "pending"
                    for tenant in source_members
                    if tenant != owner
                }
                have_members = await self.members(target.cloud, target.region, copy["id"])
                if have_members != want_members:
                    problems.append(f"{where}: members {have_members} != {want_members}")
        return problems


def custom_properties(image: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in image.items() if k not in NOT_PROPERTIES}


def write_config(
    directory: Path,
    cloud: GlanceCloud,
    job: str,
    targets: Sequence[Target],
    *,
    extra: str = "",
    endpoints: Mapping[str, str] | None = None,
    transfers: int = 2,
    retries: int = 3,
) -> Path:
    """An engine config in pre-issued-token mode: tokens from the environment, endpoints given
    (a pre-issued token has no service catalog): Glance's own, unless ``endpoints`` (region ->
    URL, a fault proxy's for example) says otherwise."""
    parts = ['[journal]\npath = "journal.db"\n\n[log]\nlevel = "warning"\nformat = "json"\n']
    urls = cloud.regions if endpoints is None else endpoints
    listed_urls = "\n".join(f'{region} = "{url}"' for region, url in sorted(urls.items()))
    for name in CLOUDS:
        parts.append(
            f"[clouds.{name}]\n"
            f'tenant_id = "{cloud.tenant(name).project_id}"\n'
            f'token_env = "{token_env(name)}"\n\n'
            f"[clouds.{name}.endpoints]\n{listed_urls}\n"
        )
    listed = ", ".join(f'{{ cloud = "{t.cloud}", region = "{t.region}" }}' for t in targets)
    parts.append(
        f"""[[jobs]]
name = "{job}"
source = {{ cloud = "src", region = "KR1" }}
targets = [ {listed} ]
transfers = {transfers}
checkers = 4
retries = {retries}
{extra}
[jobs.select]
owner = "{cloud.tenant("src").project_id}"
names = ["{job}-*"]

[jobs.copy]
protected = true
members = true
accept = true
"""
    )
    path = directory / "config.toml"
    path.write_text("\n".join(parts))
    return path


def environment(cloud: GlanceCloud) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEROP_")}
    env.update({token_env(name): cloud.tenant(name).token for name in CLOUDS})
    return env


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"


async def start_cli(cloud: GlanceCloud, *args: str) -> asyncio.subprocess.Process:
    """``image-transfer ARGS`` as a child process, tokens in its environment."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transfer",
        *args,
        cwd=REPO,
        env=environment(cloud),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, within: float = 120.0) -> Outcome:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"the child did not finish in {within}s:\n{out.decode()}\n{err.decode()}"
        ) from None
    assert proc.returncode is not None
    return Outcome(proc.returncode, out.decode(), err.decode())


async def cli(cloud: GlanceCloud, *args: str, within: float = 120.0) -> Outcome:
    return await finish(await start_cli(cloud, *args), within)
