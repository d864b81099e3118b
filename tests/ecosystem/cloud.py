"""One ``image-transfer emulator`` process (the real command) and plain HTTP against it.

``EmulatorCloud`` starts the command with the tours' tenants, reads its JSON line and stops it;
``Http`` is what every tour step checks its effect with: the Image API called with a token from
the emulator's own identity service, nothing of the clients in between.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
COMMAND = REPO / ".venv" / "bin" / "image-transfer"
REGION = "KR1"
DOMAIN = "Default"
PATCH_TYPE = "application/openstack-images-v2.1-json-patch"


@dataclass(frozen=True)
class Tenant:
    name: str
    tenant_id: str
    username: str
    password: str


@dataclass(frozen=True)
class CloudKind:
    """How a cloud is started and which Keystone its users speak."""

    name: str  # "nhn" or "glance": the emulator's flavour
    identity: str  # "v2.0" or "v3"

    @property
    def needs_os_type(self) -> bool:
        return self.name == "nhn"


NHN = CloudKind("nhn", "v2.0")
PRIVATE = CloudKind("glance", "v3")


@dataclass
class EmulatorCloud:
    kind: CloudKind
    tenants: tuple[str, ...]
    page_size: int
    log: Path
    proc: subprocess.Popen[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        argv = [str(COMMAND), "emulator", "--region", REGION, "--page-size", str(self.page_size)]
        argv += ["--flavour", self.kind.name, "--identity", self.kind.identity]
        for name in self.tenants:
            argv += ["--tenant", f"{name}:{name}-user:{name}-pw"]
        with open(self.log, "wb") as log:  # stderr to a file: a full pipe would block it
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            said = self.log.read_text(errors="replace").strip()
            raise RuntimeError(f"`{' '.join(argv[1:])}` did not start: {said}")
        self.info = json.loads(line)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate()

    @property
    def root(self) -> str:
        """The identity service without a version: what keystoneauth discovers from."""
        url = str(self.info["identity_url"]).rstrip("/")
        for suffix in ("/v2.0", "/v3"):
            url = url.removesuffix(suffix)
        return str(self.info.get("identity_root", url)).rstrip("/")

    @property
    def auth_url(self) -> str:
        """The versioned auth URL a user of this cloud is given."""
        return self.root + ("/v3" if self.kind.identity == "v3" else "/v2.0")

    @property
    def image_url(self) -> str:
        return str(self.info["regions"][REGION])

    def tenant(self, name: str) -> Tenant:
        for t in self.info["tenants"]:
            if t["name"] == name:
                return Tenant(t["name"], t["tenant_id"], t["username"], t["password"])
        raise KeyError(name)

    async def token(self, session: aiohttp.ClientSession, name: str) -> str:
        """A token for tenant ``name`` from the emulator's identity service."""
        t = self.tenant(name)
        if self.kind.identity == "v3":
            user = {"name": t.username, "domain": {"name": DOMAIN}, "password": t.password}
            body: dict[str, Any] = {
                "auth": {
                    "identity": {"methods": ["password"], "password": {"user": user}},
                    "scope": {"project": {"id": t.tenant_id}},
                }
            }
            async with session.post(self.root + "/v3/auth/tokens", json=body) as resp:
                assert resp.status == 201, await resp.text()
                return resp.headers["X-Subject-Token"]
        creds = {"username": t.username, "password": t.password}
        body = {"auth": {"tenantId": t.tenant_id, "passwordCredentials": creds}}
        async with session.post(self.root + "/v2.0/tokens", json=body) as resp:
            assert resp.status == 200, await resp.text()
            token_id: str = (await resp.json())["access"]["token"]["id"]
            return token_id


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def message(self) -> str:
        """The emulator's own words in an error body (Glance's shapes: flat or one level down;
        without the ``<br />`` tail webob leaves in Glance's JSON messages)."""
        return re.split(r"<br\s*/?>", self._message())[0].strip()

    def _message(self) -> str:
        try:
            data = self.json()
        except ValueError:
            return self.body.decode(errors="replace").strip()
        if isinstance(data, dict):
            for value in data.values():
                if isinstance(value, dict) and "message" in value:
                    return str(value["message"])
            if "message" in data:
                return str(data["message"])
        return str(data)


@dataclass
class Http:
    """The Image API of one region as one tenant, over plain HTTP."""

    session: aiohttp.ClientSession
    base: str
    token: str

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        # JSON, as a script asks for it (without an Accept, errors come as Glance's HTML).
        sent = {"X-Auth-Token": self.token, "Accept": "application/json"}
        headers = {**sent, **kwargs.pop("headers", {})}
        async with self.session.request(
            method, self.base + path, headers=headers, **kwargs
        ) as resp:
            return Reply(resp.status, await resp.read())

    async def image(self, image_id: str) -> Reply:
        return await self.call("GET", f"/v2/images/{image_id}")

    async def shown(self, image_id: str) -> dict[str, Any]:
        reply = await self.image(image_id)
        assert reply.status == 200, (reply.status, reply.body)
        data: dict[str, Any] = reply.json()
        return data

    async def create(self, **fields: Any) -> dict[str, Any]:
        body = {"disk_format": "raw", "container_format": "bare", **fields}
        reply = await self.call("POST", "/v2/images", json=body)
        assert reply.status == 201, (reply.status, reply.body)
        data: dict[str, Any] = reply.json()
        return data

    async def members(self, image_id: str) -> list[dict[str, Any]]:
        reply = await self.call("GET", f"/v2/images/{image_id}/members")
        assert reply.status == 200, (reply.status, reply.body)
        found: list[dict[str, Any]] = reply.json()["members"]
        return found

    async def md5_of_file(self, image_id: str) -> str:
        reply = await self.call("GET", f"/v2/images/{image_id}/file")
        assert reply.status == 200, (reply.status, reply.body[:200])
        return hashlib.md5(reply.body).hexdigest()


async def start_clouds(*clouds: EmulatorCloud) -> None:
    """Start several emulators at once (each start is a Python start-up)."""
    await asyncio.gather(*(asyncio.to_thread(c.start) for c in clouds))
