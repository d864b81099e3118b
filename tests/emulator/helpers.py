"""A thin test client for the emulated Image API: one call, one ``Reply`` (status, headers,
body), no error handling, so tests see exactly what the server answered."""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from tests.conftest import token
from transfer.emulator import Emulator

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
OCTET = "application/octet-stream"


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class Api:
    """Calls one region's Image API as one tenant."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token_id: str) -> None:
        self.session = session
        self.base = base_url
        self.token = token_id

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str | None] | None = None,
        params: Any = None,
        auth: bool = True,
        allow_redirects: bool = True,
    ) -> Reply:
        """One request; a header given as None is not sent (``"Accept": None``: no Accept)."""
        # JSON errors, as the project's client asks for them (Glance answers HTML otherwise).
        sent = {"Accept": "application/json"}
        if auth:
            sent["X-Auth-Token"] = self.token
        for name, value in (headers or {}).items():
            if value is None:
                sent.pop(name, None)
            else:
                sent[name] = value
        async with self.session.request(
            method,
            self.base + path,
            json=json,
            data=data,
            headers=sent,
            params=params,
            allow_redirects=allow_redirects,
            skip_auto_headers=() if "Accept" in sent else ("Accept",),
        ) as resp:
            body = await resp.read()
            return Reply(resp.status, resp.headers, body)

    async def create(self, **fields: Any) -> dict[str, Any]:
        body = {
            "name": "img",
            "os_type": "linux",
            "disk_format": "qcow2",
            "container_format": "bare",
        }
        body.update(fields)
        reply = await self.call("POST", "/v2/images", json=body)
        assert reply.status == 201, reply.body
        created: dict[str, Any] = reply.json()
        return created

    async def show(self, image_id: str) -> Reply:
        return await self.call("GET", f"/v2/images/{image_id}")

    async def patch(self, image_id: str, ops: list[dict[str, Any]]) -> Reply:
        return await self.call(
            "PATCH",
            f"/v2/images/{image_id}",
            data=jsonlib.dumps(ops),
            headers={"Content-Type": PATCH_TYPE},
        )

    async def upload(self, image_id: str, data: Any, **headers: str) -> Reply:
        sent = {"Content-Type": OCTET}
        sent.update(headers)
        return await self.call("PUT", f"/v2/images/{image_id}/file", data=data, headers=sent)

    async def download(self, image_id: str, **headers: str) -> Reply:
        return await self.call("GET", f"/v2/images/{image_id}/file", headers=headers)

    async def list(self, **params: Any) -> Reply:
        return await self.call("GET", "/v2/images", params=params or None)


async def api_for(
    emulator: Emulator,
    session: aiohttp.ClientSession,
    tenant: str = "demo-src",
    region: str = "KR1",
) -> Api:
    return Api(session, emulator.regions[region], await token(emulator, tenant, session))


async def pieces(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    """An async body: aiohttp sends it chunked unless a Content-Length is given."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
