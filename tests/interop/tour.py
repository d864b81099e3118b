"""The scripted tour of the Image API that the differential test runs against real Glance and
against the emulator: every call of the seed guide, with the edge cases a copier meets (bad
values, missing properties, other tenants, paging, Range, an interrupted upload).

The tour records one ``Observation`` per step: status, the headers that mean something, and the
body made comparable (image ids become the names the tour gave them, tenant ids their roles,
timestamps in NHN's format ``<time>``, error messages ``<message>``, tags a sorted list).  Both
runs take the same steps in the same order, so their observations line up one for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.emulator.helpers import OCTET, PATCH_TYPE, Api, Reply, pieces
from transfer.emulator import fill_bytes

#: The tenants the tour acts as, by role.
ROLES = ("owner", "member", "outsider")
#: The image data every upload sends: a bit over 1 MiB, so that chunked and Range reads span
#: pieces.
DATA = fill_bytes(7, (1 << 20) + 4321)
#: A caller-chosen image id, the same on both sides.
CHOSEN_ID = "3f0c2a58-4c1e-4d8e-9b7a-5d6e7f809a1b"

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Headers compared by value; any other header is ignored.
_HEADERS = ("Content-Type", "Content-Range", "Content-MD5", "Content-Length", "Location")
_DATA_ROUTE = re.compile(r"/file$")


@dataclass
class Observation:
    step: str
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Side:
    """One server under test: its image endpoint and a token and tenant id per role."""

    name: str
    base: str
    tokens: Mapping[str, str] = field(repr=False)
    tenant_ids: Mapping[str, str]


class Tour:
    def __init__(self, side: Side, session: aiohttp.ClientSession) -> None:
        self.side = side
        self.apis = {role: Api(session, side.base, side.tokens[role]) for role in ROLES}
        self._raw: list[tuple[str, Reply, str, bool]] = []
        self._names: dict[str, str] = {CHOSEN_ID: "<image:chosen>"}
        self._host = urlsplit(side.base).netloc

    # -- recording -----------------------------------------------------------------------

    def name(self, image_id: str, label: str) -> str:
        self._names[image_id] = f"<image:{label}>"
        return image_id

    def _text(self, text: str) -> str:
        if _TIME.fullmatch(text):
            return "<time>"
        text = text.replace(f"http://{self._host}", "<endpoint>")
        for tenant_role, tenant_id in self.side.tenant_ids.items():
            text = text.replace(tenant_id, f"<tenant:{tenant_role}>")
        return _UUID.sub(lambda m: self._names.get(m.group(0), "<image:unnamed>"), text)

    def _normal(self, value: Any, *, error: bool) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if error and key == "message" and isinstance(item, str):
                    out[key] = "<message>"
                elif key == "tags" and isinstance(item, list):
                    # Glance keeps tags as a set and answers them in any order.
                    out[key] = sorted(self._normal(item, error=error))
                else:
                    out[key] = self._normal(item, error=error)
            return out
        if isinstance(value, list):
            return [self._normal(item, error=error) for item in value]
        if isinstance(value, str):
            return self._text(value)
        return value

    def record(self, step: str, reply: Reply, *, path: str, unordered: bool = False) -> None:
        self._raw.append((step, reply, path, unordered))

    def observations(self) -> list[Observation]:
        """Every step made comparable; done at the end, once every image has its name."""
        return [self._observe(*raw) for raw in self._raw]

    def _observe(self, step: str, reply: Reply, path: str, unordered: bool) -> Observation:
        headers = {}
        data_reply = reply.status < 300 and bool(_DATA_ROUTE.search(path.split("?")[0]))
        for name in _HEADERS:
            if name not in reply.headers:
                continue
            value = reply.headers[name]
            if name == "Content-Type":
                if not reply.body:
                    continue  # a 204's type says nothing
                value = value.split(";")[0].strip()
            if name == "Content-Length" and not data_reply:
                continue  # JSON lengths vary with ids, key order and messages; data lengths count
            headers[name] = self._text(value)
        body: Any = None
        media = reply.headers.get("Content-Type", "").split(";")[0].strip()
        if reply.body and media == "application/json":
            body = self._normal(json.loads(reply.body), error=reply.status >= 400)
        elif reply.body and reply.status < 300 and media == OCTET:
            body = {"bytes": len(reply.body), "md5": hashlib.md5(reply.body).hexdigest()}
        elif reply.body and reply.status >= 400:
            body = _error_text(reply.body.decode("utf-8", "replace"))
        elif reply.body:
            body = f"<{media or 'untyped'} body>"
        if unordered and isinstance(body, dict):
            for key in ("images", "members"):
                if isinstance(body.get(key), list):
                    body[key] = sorted(body[key], key=lambda item: json.dumps(item, sort_keys=True))
        return Observation(step, reply.status, headers, body)

    async def call(
        self,
        step: str,
        role: str,
        method: str,
        path: str,
        *,
        unordered: bool = False,
        **kwargs: Any,
    ) -> Reply:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        reply = await self.apis[role].call(method, path, headers=headers, **kwargs)
        self.record(step, reply, path=path, unordered=unordered)
        return reply

    # -- helpers -------------------------------------------------------------------------

    async def create(self, step: str, label: str, role: str = "owner", **fields: Any) -> str:
        # Visibility said, not left to the default: the flavours' defaults differ (steps of
        # their own probe them).
        body = {
            "name": label,
            "os_type": "linux",
            "visibility": "shared",
            "disk_format": "qcow2",
            "container_format": "bare",
        }
        body.update(fields)
        reply = await self.call(step, role, "POST", "/v2/images", json=body)
        assert reply.status == 201, f"{self.side.name} {step}: {reply.status} {reply.body!r}"
        return self.name(reply.json()["id"], label)

    async def patch(self, step: str, role: str, image_id: str, ops: Any, **kw: Any) -> Reply:
        headers = {"Content-Type": kw.pop("content_type", PATCH_TYPE)}
        return await self.call(
            step, role, "PATCH", f"/v2/images/{image_id}", data=json.dumps(ops), headers=headers
        )

    async def upload(
        self, step: str, image_id: str, data: Any = None, *, refused: bool = False, **headers: str
    ) -> Reply:
        """Upload ``DATA`` (or ``data``).  An upload meant to be ``refused`` sends a few bytes:
        the server answers before reading the body and may close the connection while a large
        one is still being sent (a broken pipe, not an answer)."""
        if refused:
            data = io.BytesIO(b"refused?")
        # A file-like body: aiohttp sends its length and reads it without blocking the loop.
        data = io.BytesIO(DATA) if data is None else data
        sent = {"Content-Type": OCTET, **headers}
        return await self.call(
            step, "owner", "PUT", f"/v2/images/{image_id}/file", data=data, headers=sent
        )

    async def quiet(self, method: str, path: str, ops: Any = None) -> None:
        """A clean-up call that is not compared (a JSON Patch body when ``ops`` is given)."""
        headers = {"Accept": "application/json"}
        data = None
        if ops is not None:
            headers["Content-Type"] = PATCH_TYPE
            data = json.dumps(ops)
        reply = await self.apis["owner"].call(method, path, data=data, headers=headers)
        assert reply.status < 300, f"{self.side.name} {method} {path}: {reply.status}"

    async def show(self, step: str, image_id: str, role: str = "owner") -> Reply:
        return await self.call(step, role, "GET", f"/v2/images/{image_id}")

    async def interrupted_upload(self, image_id: str, sent: int = 200_000) -> None:
        """Promise more bytes than are sent, then hang up, as a killed copier would."""
        url = urlsplit(self.side.base)
        assert url.hostname is not None and url.port is not None
        _, writer = await asyncio.open_connection(url.hostname, url.port)
        head = (
            f"PUT /v2/images/{image_id}/file HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\n"
            f"X-Auth-Token: {self.side.tokens['owner']}\r\n"
            f"Content-Type: {OCTET}\r\n"
            f"Content-Length: {len(DATA)}\r\n\r\n"
        )
        writer.write(head.encode() + DATA[:sent])
        await writer.drain()
        await asyncio.sleep(0.3)  # let the server start saving before the line drops
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def settled(self, step: str, image_id: str, within: float = 10.0) -> None:
        """Record the image once it has left ``saving`` (servers notice a hang-up late)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            reply = await self.apis["owner"].call(
                "GET", f"/v2/images/{image_id}", headers={"Accept": "application/json"}
            )
            if reply.status != 200 or reply.json()["status"] != "saving":
                break
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.1)
        self.record(step, reply, path=f"/v2/images/{image_id}")


_HTML_ERROR = re.compile(r"(?s)(<html>.*<h1>[^<]*</h1>\n  ).*(\n </body>\n</html>)")


def _error_text(text: str) -> str:
    """A non-JSON error body with its message named: the HTML page or the plain text's status
    line stay, so the shape is compared (webob's HTML, or its plain text)."""
    page = _HTML_ERROR.fullmatch(text)
    if page:
        return f"{page.group(1)}<message>{page.group(2)}"
    status_line, sep, _ = text.partition("\n\n")
    return f"{status_line}{sep}<message>" if sep else "<non-JSON error body>"


async def run_tour(
    side: Side, session: aiohttp.ClientSession, *more: Callable[[Tour], Awaitable[None]]
) -> list[Observation]:
    """The tour's steps, then ``more`` (parts of it kept in modules of their own)."""
    tour = Tour(side, session)
    await _images(tour)
    await _listing(tour)
    await _data(tour)
    await _updates(tour)
    await _tags(tour)
    await _sharing(tour)
    await _deletion(tour)
    for part in more:
        await part(tour)
    return tour.observations()


async def _images(t: Tour) -> None:
    await t.create("create: minimal", "minimal")
    full = await t.create(
        "create: every documented field",
        "full",
        min_disk=20,
        min_ram=512,
        protected=False,
        tags=["golden", "ubuntu"],
        visibility="private",
        os_distro="ubuntu",
        os_version="Server 22.04 LTS",
        login_username="ubuntu",
    )
    await t.show("show: own image", full)
    await t.create("create: chosen id", "chosen", id=CHOSEN_ID)
    base = {
        "name": "x",
        "os_type": "linux",
        "visibility": "shared",
        "disk_format": "qcow2",
        "container_format": "bare",
    }
    bad_creates: list[tuple[str, dict[str, Any]]] = [
        ("create: chosen id taken", {"id": CHOSEN_ID}),
        ("create: id not a uuid", {"id": "not-a-uuid"}),
        ("create: read-only status", {"status": "active"}),
        ("create: read-only checksum", {"checksum": "0" * 32}),
        ("create: read-only size", {"size": 5}),
        ("create: read-only owner", {"owner": side_tenant(t, "member")}),
        ("create: reserved os_glance prefix", {"os_glance_importer": "x"}),
        ("create: read-only locations", {"locations": []}),
        ("create: visibility public", {"visibility": "public"}),
        ("create: visibility community", {"visibility": "community"}),
        ("create: visibility bogus", {"visibility": "everyone"}),
        ("create: bad disk_format", {"disk_format": "floppy"}),
        ("create: bad container_format", {"container_format": "crate"}),
        ("create: property not a string", {"build": 5}),
        ("create: min_disk negative", {"min_disk": -1}),
        ("create: protected not a boolean", {"protected": "yes"}),
        ("create: name too long", {"name": "n" * 256}),
        ("create: tag starting with underscore", {"tags": ["_hidden"]}),
        ("create: duplicate tags", {"tags": ["a", "a", "b"]}),
        ("create: tags not a list", {"tags": "a"}),
        ("create: hidden image", {"os_hidden": True}),
        ("create: os_type missing", {"os_type": None}),
        ("create: os_type unknown", {"os_type": "bsd"}),
    ]
    for step, changes in bad_creates:
        body = {**base, **changes}
        body = {k: v for k, v in body.items() if v is not None}
        reply = await t.call(step, "owner", "POST", "/v2/images", json=body)
        if reply.status == 201:  # accepted here: name it, and remove it to keep lists equal
            made = t.name(reply.json()["id"], f"accepted {step}")
            await t.apis["owner"].call("DELETE", f"/v2/images/{made}")
    await t.call(
        "create: body not JSON",
        "owner",
        "POST",
        "/v2/images",
        data=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    await t.call("create: body a list", "owner", "POST", "/v2/images", json=[base])
    await t.call("show: unknown id", "owner", "GET", f"/v2/images/{uuid.UUID(int=7)}")
    await t.call("show: no token", "owner", "GET", f"/v2/images/{full}", headers={}, auth=False)
    await t.call(
        "show: unknown token",
        "owner",
        "GET",
        f"/v2/images/{full}",
        auth=False,
        headers={"X-Auth-Token": "not-a-token"},
    )
    await t.show("show: another tenant's private image", full, role="outsider")


def side_tenant(t: Tour, role: str) -> str:
    return t.side.tenant_ids[role]


async def _listing(t: Tour) -> None:
    for index in range(3):
        await t.create(f"list setup: create page-{index}", f"page-{index}", tags=[f"p{index}"])
    await t.call("list: default", "owner", "GET", "/v2/images", unordered=True)
    by_name = {"sort_key": "name", "sort_dir": "asc"}
    first = await t.call(
        "list: page 1 of 2 by name", "owner", "GET", "/v2/images", params={**by_name, "limit": 3}
    )
    link = first.json().get("next")
    if isinstance(link, str):
        await t.call("list: follow next", "owner", "GET", link)
    await t.call(
        "list: name, descending",
        "owner",
        "GET",
        "/v2/images",
        params={"sort_key": "name", "sort_dir": "desc"},
    )
    await t.call("list: sort=name:asc", "owner", "GET", "/v2/images", params={"sort": "name:asc"})
    filters: list[tuple[str, dict[str, str]]] = [
        ("list: name filter", {"name": "page-1"}),
        ("list: tag filter", {"tag": "p2"}),
        ("list: property filter", {"os_distro": "ubuntu"}),
        ("list: visibility private", {"visibility": "private"}),
        ("list: visibility shared", {"visibility": "shared"}),
        ("list: owner filter", {"owner": side_tenant(t, "owner")}),
        ("list: status queued", {"status": "queued"}),
        ("list: status active", {"status": "active"}),
        ("list: size_min", {"size_min": "1"}),
        ("list: limit 0", {"limit": "0"}),
        ("list: limit over the maximum", {"limit": "2000"}),
        ("list: visibility all", {"visibility": "all"}),
        ("list: member_status all", {"member_status": "all"}),
        ("list: hidden images", {"os_hidden": "true"}),
    ]
    for step, params in filters:
        await t.call(step, "owner", "GET", "/v2/images", params=params, unordered=True)
    bad: list[tuple[str, dict[str, str]]] = [
        ("list: bad sort_dir", {"sort_dir": "sideways"}),
        ("list: bad limit", {"limit": "many"}),
        ("list: negative limit", {"limit": "-1"}),
        ("list: unknown marker", {"marker": str(uuid.UUID(int=9))}),
        ("list: bad visibility", {"visibility": "everyone"}),
        ("list: bad status", {"status": "sleeping"}),
        ("list: bad member_status", {"member_status": "maybe"}),
        ("list: bad size_min", {"size_min": "big"}),
        ("list: bad sort direction in sort", {"sort": "name:sideways"}),
        ("list: sort with sort_key", {"sort": "name", "sort_key": "size"}),
        ("list: bad os_hidden", {"os_hidden": "maybe"}),
    ]
    for step, params in bad:
        await t.call(step, "owner", "GET", "/v2/images", params=params)
    await t.call("list: outsider sees none of it", "outsider", "GET", "/v2/images")


async def _data(t: Tour) -> None:
    image = await t.create("data setup: create", "data")
    await t.call("download: no data yet", "owner", "GET", f"/v2/images/{image}/file")
    await t.upload("upload: with Content-Length", image)
    await t.show("show: after upload", image)
    await t.upload("upload: again once active", image, refused=True)
    await t.call("download: whole", "owner", "GET", f"/v2/images/{image}/file")
    ranges = {
        "download: Range first bytes": "bytes=0-9",
        "download: Range open end": f"bytes={len(DATA) - 5}-",
        "download: Range suffix": "bytes=-7",
        "download: Range past the end": f"bytes={len(DATA) + 10}-",
        "download: Range end past the end": f"bytes={len(DATA) - 3}-{len(DATA) + 100}",
        "download: Range reversed": "bytes=9-3",
        "download: Range in lines": "lines=1-2",
        "download: two ranges": "bytes=0-1,5-6",
    }
    for step, value in ranges.items():
        await t.call(step, "owner", "GET", f"/v2/images/{image}/file", headers={"Range": value})
    await t.call("download: outsider", "outsider", "GET", f"/v2/images/{image}/file")

    chunked = await t.create("data setup: create for chunked", "chunked")
    await t.upload("upload: chunked, no length", chunked, data=pieces(DATA, 256 << 10))
    await t.show("show: after chunked upload", chunked)

    empty = await t.create("data setup: create for empty", "empty")
    await t.upload("upload: zero bytes", empty, data=b"")
    await t.show("show: after zero-byte upload", empty)

    typed = await t.create("data setup: create for content type", "typed")
    await t.upload(
        "upload: wrong Content-Type", typed, refused=True, **{"Content-Type": "text/plain"}
    )
    formatless = await t.create(
        "data setup: create without formats", "formatless", disk_format=None, container_format=None
    )
    await t.show("show: without formats", formatless)
    await t.upload("upload: no disk_format", formatless, refused=True)

    await t.call(
        "upload: another tenant's image",
        "outsider",
        "PUT",
        f"/v2/images/{formatless}/file",
        data=io.BytesIO(b"refused?"),
        headers={"Content-Type": OCTET},
    )
    cut = await t.create("data setup: create for interrupted upload", "interrupted")
    await t.interrupted_upload(cut)
    await t.settled("show: after an interrupted upload", cut)
    await t.upload("upload: again after the interruption", cut)
    await t.show("show: after the second upload", cut)

    gated = await t.create("data setup: create download-gated", "gated")
    await t.upload("data setup: upload gated", gated)
    ops = [{"op": "add", "path": "/nhncloud_allow_download", "value": "false"}]
    await t.patch("update: nhncloud_allow_download false", "owner", gated, ops)
    await t.call(
        "download: nhncloud_allow_download false", "owner", "GET", f"/v2/images/{gated}/file"
    )


async def _updates(t: Tour) -> None:
    image = await t.create("update setup: create", "updates", build="1")
    steps: list[tuple[str, Any]] = [
        (
            "update: add properties",
            [
                {"op": "add", "path": "/metadata1", "value": "value1"},
                {"op": "add", "path": "/metadata2", "value": "1"},
            ],
        ),
        ("update: replace a property", [{"op": "replace", "path": "/metadata1", "value": "v2"}]),
        ("update: remove a property", [{"op": "remove", "path": "/metadata1"}]),
        ("update: replace a missing property", [{"op": "replace", "path": "/nope", "value": "x"}]),
        ("update: remove a missing property", [{"op": "remove", "path": "/nope"}]),
        ("update: add over an existing property", [{"op": "add", "path": "/build", "value": "2"}]),
        ("update: replace name", [{"op": "replace", "path": "/name", "value": "renamed"}]),
        ("update: replace min_ram", [{"op": "replace", "path": "/min_ram", "value": 1024}]),
        ("update: min_ram as a string", [{"op": "replace", "path": "/min_ram", "value": "1"}]),
        ("update: property not a string", [{"op": "add", "path": "/count", "value": 3}]),
        ("update: read-only status", [{"op": "replace", "path": "/status", "value": "active"}]),
        ("update: read-only checksum", [{"op": "add", "path": "/checksum", "value": "0" * 32}]),
        ("update: reserved os_glance key", [{"op": "add", "path": "/os_glance_x", "value": "1"}]),
        ("update: remove a core field", [{"op": "remove", "path": "/name"}]),
        (
            "update: visibility public",
            [{"op": "replace", "path": "/visibility", "value": "public"}],
        ),
        ("update: unknown op", [{"op": "move", "path": "/build", "value": "x"}]),
        ("update: path without slash", [{"op": "add", "path": "build", "value": "x"}]),
        ("update: not a list", {"op": "add", "path": "/build", "value": "x"}),
        ("update: escaped path", [{"op": "add", "path": "/a~1b", "value": "slash"}]),
    ]
    for step, ops in steps:
        await t.patch(step, "owner", image, ops)
    await t.patch(
        "update: wrong Content-Type",
        "owner",
        image,
        [{"op": "add", "path": "/x", "value": "1"}],
        content_type="application/json",
    )
    await t.patch(
        "update: another tenant's image",
        "outsider",
        image,
        [{"op": "add", "path": "/x", "value": "1"}],
    )
    await t.show("show: after updates", image)
    await t.patch(
        "update: protect", "owner", image, [{"op": "replace", "path": "/protected", "value": True}]
    )
    await t.call("delete: protected image", "owner", "DELETE", f"/v2/images/{image}")
    await t.patch(
        "update: unprotect",
        "owner",
        image,
        [{"op": "replace", "path": "/protected", "value": False}],
    )
    await t.call("delete: unprotected image", "owner", "DELETE", f"/v2/images/{image}")
    # NHN refuses changes to a protected image, Glance only its deletion: probed on an image of
    # its own, so the servers' states do not drift apart for the steps after.
    locked = await t.create("update setup: create protected", "locked", protected=True)
    await t.patch(
        "update: property of a protected image",
        "owner",
        locked,
        [{"op": "add", "path": "/x", "value": "1"}],
    )
    await t.call("tags: add on a protected image", "owner", "PUT", f"/v2/images/{locked}/tags/t")
    await t.quiet(
        "PATCH", f"/v2/images/{locked}", [{"op": "replace", "path": "/protected", "value": False}]
    )
    await t.quiet("DELETE", f"/v2/images/{locked}")


async def _tags(t: Tour) -> None:
    image = await t.create("tags setup: create", "tags")
    base = f"/v2/images/{image}/tags"
    await t.call("tags: add", "owner", "PUT", f"{base}/golden")
    await t.call("tags: add again", "owner", "PUT", f"{base}/golden")
    await t.call("tags: add with a space", "owner", "PUT", f"{base}/ubuntu%2022")
    await t.call("tags: add 255 characters", "owner", "PUT", f"{base}/{'t' * 255}")
    await t.call("tags: add 256 characters", "owner", "PUT", f"{base}/{'t' * 256}")
    await t.show("show: after tags", image)
    await t.call("tags: remove", "owner", "DELETE", f"{base}/golden")
    await t.call("tags: remove a missing tag", "owner", "DELETE", f"{base}/golden")
    # Last on this image: NHN refuses it, Glance keeps it.
    await t.call("tags: add starting with underscore", "owner", "PUT", f"{base}/_hidden")
    await t.call("tags: another tenant adds", "outsider", "PUT", f"{base}/theirs")
    await t.call("tags: unknown image", "owner", "PUT", f"/v2/images/{uuid.UUID(int=11)}/tags/x")


async def _sharing(t: Tour) -> None:
    image = await t.create("share setup: create", "shared", visibility="private")
    await t.upload("share setup: upload", image)
    members = f"/v2/images/{image}/members"
    member_id = side_tenant(t, "member")
    outsider_id = side_tenant(t, "outsider")
    mine = f"{members}/{member_id}"
    await t.call(
        "members: add to a private image", "owner", "POST", members, json={"member": member_id}
    )
    await t.call("members: list of a private image", "owner", "GET", members)
    await t.patch(
        "share: visibility shared",
        "owner",
        image,
        [{"op": "replace", "path": "/visibility", "value": "shared"}],
    )
    await t.call("members: add", "owner", "POST", members, json={"member": member_id})
    await t.call("members: add again", "owner", "POST", members, json={"member": member_id})
    await t.call("members: add without a body", "owner", "POST", members, json={})
    await t.call(
        "members: add by a non-owner", "outsider", "POST", members, json={"member": outsider_id}
    )
    await t.call("members: list as owner", "owner", "GET", members)
    await t.call("members: show as owner", "owner", "GET", mine)
    await t.call("members: show as the member", "member", "GET", mine)
    await t.call("members: list as the member", "member", "GET", members)
    await t.call("members: show as an outsider", "outsider", "GET", mine)
    await t.call("members: show unknown member", "owner", "GET", f"{members}/{outsider_id}")
    await t.show("show: shared image as a pending member", image, role="member")
    await t.call("download: as a pending member", "member", "GET", f"/v2/images/{image}/file")
    await t.call("list: member, pending hidden", "member", "GET", "/v2/images")
    await t.call(
        "list: member, member_status pending",
        "member",
        "GET",
        "/v2/images",
        params={"member_status": "pending"},
    )
    await t.call("members: owner accepts", "owner", "PUT", mine, json={"status": "accepted"})
    await t.call("members: bad status", "member", "PUT", mine, json={"status": "maybe"})
    await t.call("members: member accepts", "member", "PUT", mine, json={"status": "accepted"})
    await t.call("list: member, accepted shown", "member", "GET", "/v2/images")
    await t.call(
        "list: member, visibility shared",
        "member",
        "GET",
        "/v2/images",
        params={"visibility": "shared"},
    )
    await t.patch(
        "update: by a member", "member", image, [{"op": "add", "path": "/x", "value": "1"}]
    )
    await t.call("tags: by a member", "member", "PUT", f"/v2/images/{image}/tags/x")
    await t.call("delete: by a member", "member", "DELETE", f"/v2/images/{image}")
    await t.call(
        "members: member re-shares", "member", "POST", members, json={"member": outsider_id}
    )
    await t.call("members: member removes itself", "member", "DELETE", mine)
    await t.call("members: member rejects", "member", "PUT", mine, json={"status": "rejected"})
    await t.call("list: member, rejected hidden", "member", "GET", "/v2/images")
    await t.call("members: owner removes", "owner", "DELETE", mine)
    await t.call("members: remove again", "owner", "DELETE", mine)
    await t.show("show: after the member is removed", image, role="member")
    theirs = f"{members}/{outsider_id}"
    await t.call("members: add another", "owner", "POST", members, json={"member": outsider_id})
    await t.patch(
        "share: back to private",
        "owner",
        image,
        [{"op": "replace", "path": "/visibility", "value": "private"}],
    )
    await t.call("members: list, image private again", "owner", "GET", members)
    await t.call("members: show, image private again", "owner", "GET", theirs)
    await t.call(
        "members: status, image private again",
        "outsider",
        "PUT",
        theirs,
        json={"status": "accepted"},
    )
    await t.call("members: remove, image private again", "owner", "DELETE", theirs)
    await t.show("show: private again, as the old member", image, role="outsider")
    await t.patch(
        "share: shared once more",
        "owner",
        image,
        [{"op": "replace", "path": "/visibility", "value": "shared"}],
    )
    await t.call("members: list, shared once more", "owner", "GET", members)
    await t.call(
        "members: unknown image", "owner", "GET", f"/v2/images/{uuid.UUID(int=12)}/members"
    )


async def _deletion(t: Tour) -> None:
    image = await t.create("delete setup: create", "doomed")
    await t.call("delete: by another tenant", "outsider", "DELETE", f"/v2/images/{image}")
    await t.call("delete: own image", "owner", "DELETE", f"/v2/images/{image}")
    await t.call("delete: again", "owner", "DELETE", f"/v2/images/{image}")
    await t.show("show: deleted image", image)
    await t.patch(
        "update: deleted image", "owner", image, [{"op": "add", "path": "/x", "value": "1"}]
    )
    await t.call("download: deleted image", "owner", "GET", f"/v2/images/{image}/file")
    await t.upload("upload: deleted image", image, refused=True)
    await t.call("tags: deleted image", "owner", "PUT", f"/v2/images/{image}/tags/x")
    await t.call(
        "create: id of a deleted image",
        "owner",
        "POST",
        "/v2/images",
        json={
            "id": image,
            "name": "again",
            "os_type": "linux",
            "disk_format": "qcow2",
            "container_format": "bare",
        },
    )
    await t.call("delete: chosen-id image", "owner", "DELETE", f"/v2/images/{CHOSEN_ID}")
