"""Servers that misbehave on purpose, configs that point a job at them, and the real CLI.

``HostileCloud`` is one aiohttp server (a real loopback socket) that plays any number of image
regions and identity services at once, each under a path prefix of its own: a region's endpoint
is ``{url}/{case}`` and its identity service ``{url}/{case}/v2.0``.  What each prefix does wrong
is named by ``case`` (see ``LISTINGS``, ``IDENTITIES`` and ``DOWNLOADS``).  ``Foreign`` is another
server, on another port: a token or a password that reaches it has left its home.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.client.test_hostile_servers import Recorder, serve

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hostile-tok-4be1f07a9c"
SOURCE_PASSWORD = "hostile-pw-0c3d9e71"
TENANT = "t-hostile"
HUGE = 4 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Foreign:
    """Another host: answers anything harmlessly and records what it was sent."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.url = ""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Foreign]:
        async def anything(request: web.Request) -> web.StreamResponse:
            await request.read()
            return web.json_response({"images": [], "access": {}})

        async with serve([web.route("*", "/{tail:.*}", anything)], self.recorder) as url:
            self.url = url
            yield self

    def tokens_received(self) -> list[str]:
        return [h["X-Auth-Token"] for _, _, h in self.recorder.requests if "X-Auth-Token" in h]


@dataclass
class SourceImage:
    """An image of the hostile source region, and how its download misbehaves."""

    id: str
    data: bytes
    download: str = "ok"
    visibility: str = "private"

    @property
    def name(self) -> str:
        return f"img-{self.id}"

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": "active",
            "visibility": self.visibility,
            "owner": TENANT,
            "protected": False,
            "size": len(self.data),
            "checksum": hashlib.md5(self.data).hexdigest(),
            "os_hash_algo": "sha512",
            "os_hash_value": hashlib.sha512(self.data).hexdigest(),
            "disk_format": "qcow2",
            "container_format": "bare",
            "min_disk": 0,
            "min_ram": 0,
            "tags": ["hostile"],
            "os_type": "linux",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "self": f"/v2/images/{self.id}",
            "file": f"/v2/images/{self.id}/file",
            "schema": "/v2/schemas/image",
        }


def fill(size: int, seed: int) -> bytes:
    block = hashlib.sha512(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def _echo(request: web.Request) -> str:
    """What a careless server does: repeat the caller's token in its error text."""
    return request.headers.get("X-Auth-Token", "")


async def _cut(request: web.Request, declared: int, body: bytes) -> web.StreamResponse:
    """Declare ``declared`` bytes, send ``body``, then drop the connection."""
    response = web.StreamResponse(headers={"Content-Length": str(declared)})
    await response.prepare(request)
    await response.write(body)
    assert request.transport is not None
    request.transport.close()
    return response


# -- the listing of a region: each answer stops the run --------------------------------------------


def _image(image_id: str, **changes: Any) -> dict[str, Any]:
    record = SourceImage(image_id, b"abc").record()
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


async def _list_ok(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.json_response({"images": [], "schema": "/v2/schemas/images"})


async def _list_invalid_json(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.Response(
        text='{"images": [{"id": "a1", "status": "act', content_type="application/json"
    )


async def _list_html(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    page = "<html><head><title>Maintenance</title></head><body>Back soon</body></html>"
    return web.Response(text=page, content_type="text/html")


async def _list_token_in_html(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    page = f"<html><body>session {_echo(request)} is not welcome here</body></html>"
    return web.Response(text=page, content_type="text/html")


async def _list_no_images(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.json_response({"items": [_image("a1")]})


async def _list_json_array(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.json_response([_image("a1")])


async def _list_without_id(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.json_response({"images": [_image("a1"), _image("a2", id=None)]})


async def _list_without_status(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.json_response({"images": [_image("a1", status=None)]})


async def _list_wrong_size(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.json_response({"images": [_image("a1"), _image("a2", size="big")]})


async def _list_tags_string(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.json_response({"images": [_image("a1", tags="golden")]})


async def _list_next_foreign(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    link = f"{cloud.foreign.url}/v2/images?limit=1000&marker=a1"
    return web.json_response({"images": [_image("a1")], "next": link})


async def _list_next_loop(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.json_response({"images": [_image("a1")], "next": "/v2/images?marker=a1"})


async def _list_next_number(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.json_response({"images": [_image("a1")], "next": 42})


async def _list_redirect(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{cloud.foreign.url}/v2/images")


async def _list_huge_error(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    line = f"<p>forbidden for {_echo(request)}</p>\n"
    body = (line * (HUGE // len(line) + 1)).encode()
    return web.Response(body=body, status=403, content_type="text/html")


async def _list_refused(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return web.json_response({"message": f"token {_echo(request)} is unknown"}, status=401)


async def _list_truncated(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    return await _cut(request, 4096, b'{"images": [{"id": "a1", ')


async def _list_503_huge(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    body = ("overloaded " * (HUGE // 11)).encode()
    return web.Response(body=body, status=503, headers={"Retry-After": "0"})


async def _list_hang_up(cloud: HostileCloud, request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    return web.Response()


async def _list_shared_garbage_members(
    cloud: HostileCloud, request: web.Request
) -> web.StreamResponse:
    images = [_image("a1"), _image("s1", visibility="shared")]
    return web.json_response({"images": images})


ListAnswer = Callable[["HostileCloud", web.Request], Awaitable[web.StreamResponse]]

LISTINGS: dict[str, ListAnswer] = {
    "ok": _list_ok,
    "invalid-json": _list_invalid_json,
    "html-200": _list_html,
    "token-in-html": _list_token_in_html,
    "no-images-key": _list_no_images,
    "json-array": _list_json_array,
    "image-without-id": _list_without_id,
    "image-without-status": _list_without_status,
    "size-not-a-number": _list_wrong_size,
    "tags-a-string": _list_tags_string,
    "next-to-another-host": _list_next_foreign,
    "next-loops": _list_next_loop,
    "next-a-number": _list_next_number,
    "redirect-to-another-host": _list_redirect,
    "huge-error-body": _list_huge_error,
    "token-refused": _list_refused,
    "truncated": _list_truncated,
    "503-huge-body": _list_503_huge,
    "hang-up": _list_hang_up,
    "members-not-json": _list_shared_garbage_members,
}


# -- the identity service: each answer stops the run -------------------------------------------


def _access(cloud: HostileCloud, case: str, **token_changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    token: dict[str, Any] = {
        "id": TOKEN,
        "issued_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expires": (now + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tenant": {"id": TENANT, "name": "hostile"},
    }
    token.update(token_changes)
    token = {k: v for k, v in token.items() if v is not None}
    endpoint = f"{cloud.url}/{case}-region"
    catalog = [
        {"type": "image", "name": "glance", "endpoints": [{"region": "KR1", "publicURL": endpoint}]}
    ]
    return {"access": {"token": token, "serviceCatalog": catalog}}


async def _id_no_expires(
    cloud: HostileCloud, case: str, request: web.Request
) -> web.StreamResponse:
    return web.json_response(_access(cloud, case, expires=None))


async def _id_expired(cloud: HostileCloud, case: str, request: web.Request) -> web.StreamResponse:
    return web.json_response(_access(cloud, case, expires="2001-01-01T00:00:00Z"))


async def _id_no_region(cloud: HostileCloud, case: str, request: web.Request) -> web.StreamResponse:
    access = _access(cloud, case)
    access["access"]["serviceCatalog"][0]["endpoints"][0]["region"] = "JP1"
    return web.json_response(access)


async def _id_no_catalog(
    cloud: HostileCloud, case: str, request: web.Request
) -> web.StreamResponse:
    access = _access(cloud, case)
    del access["access"]["serviceCatalog"]
    return web.json_response(access)


async def _id_html(cloud: HostileCloud, case: str, request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")


async def _id_redirect(cloud: HostileCloud, case: str, request: web.Request) -> web.StreamResponse:
    raise web.HTTPTemporaryRedirect(f"{cloud.foreign.url}/v2.0/tokens")


async def _id_refused(cloud: HostileCloud, case: str, request: web.Request) -> web.StreamResponse:
    body = await request.text()  # a server that quotes the request back, password and all
    return web.json_response({"error": {"code": 401, "message": body}}, status=401)


IdentityAnswer = Callable[["HostileCloud", str, web.Request], Awaitable[web.StreamResponse]]

IDENTITIES: dict[str, IdentityAnswer] = {
    "token-without-expires": _id_no_expires,
    "token-already-expired": _id_expired,
    "catalog-without-the-region": _id_no_region,
    "no-catalog": _id_no_catalog,
    "identity-html-200": _id_html,
    "identity-redirect": _id_redirect,
    "identity-refuses-and-quotes": _id_refused,
}


# -- downloads: each answer fails one image -----------------------------------------------------


async def _dl_ok(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    md5 = hashlib.md5(image.data).hexdigest()
    return web.Response(body=image.data, headers={"Content-MD5": md5})


async def _dl_truncated(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    return await _cut(request, len(image.data), image.data[: len(image.data) // 2])


async def _dl_short_length(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    return web.Response(body=image.data[:-7])


async def _dl_longer(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(image.data + b"trailing garbage" * 8)
    await response.write_eof()
    return response


async def _dl_md5_mismatch(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    return web.Response(body=image.data, headers={"Content-MD5": hashlib.md5(b"x").hexdigest()})


async def _dl_md5_unreadable(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    return web.Response(body=image.data, headers={"Content-MD5": "not-a-digest"})


async def _dl_corrupt(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    data = bytearray(image.data)
    data[len(data) // 3] ^= 0x5A
    return web.Response(body=bytes(data))


async def _dl_html(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    return web.Response(text=page, content_type="text/html")


async def _dl_redirect(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    raise web.HTTPFound(f"{cloud.foreign.url}/v2/images/{image.id}/file")


async def _dl_huge_403(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    line = f"download of {image.id} not allowed for {_echo(request)}. "
    body = (line * (HUGE // len(line) + 1)).encode()
    return web.Response(body=body, status=403, content_type="text/plain")


async def _dl_204(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    return web.Response(status=204)


async def _dl_wrong_range(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    size = len(image.data)
    headers = {"Content-Range": f"bytes 3-{size - 1}/{size}"}
    return web.Response(body=image.data[3:], status=206, headers=headers)


async def _dl_gone(
    cloud: HostileCloud, request: web.Request, image: SourceImage
) -> web.StreamResponse:
    message = f"No image found with ID {image.id}"
    return web.json_response({"code": 404, "message": message}, status=404)


DownloadAnswer = Callable[["HostileCloud", web.Request, SourceImage], Awaitable[web.StreamResponse]]

DOWNLOADS: dict[str, DownloadAnswer] = {
    "ok": _dl_ok,
    "truncated": _dl_truncated,
    "short-content-length": _dl_short_length,
    "longer-than-declared": _dl_longer,
    "content-md5-mismatch": _dl_md5_mismatch,
    "content-md5-unreadable": _dl_md5_unreadable,
    "corrupt-bytes": _dl_corrupt,
    "html-200": _dl_html,
    "redirect-to-another-host": _dl_redirect,
    "huge-403-echoing-the-token": _dl_huge_403,
    "204-for-a-sized-image": _dl_204,
    "206-from-the-wrong-offset": _dl_wrong_range,
    "404-gone-meanwhile": _dl_gone,
}


class HostileCloud:
    """Regions and identity services under path prefixes of one server (see the module doc)."""

    def __init__(self, foreign: Foreign, images: Sequence[SourceImage] = ()) -> None:
        self.foreign = foreign
        self.images = {image.id: image for image in images}
        self.recorder = Recorder()
        self.url = ""

    @asynccontextmanager
    async def running(
        self, ssl_context: ssl.SSLContext | None = None
    ) -> AsyncIterator[HostileCloud]:
        routes = [
            web.get("/{case}/v2/images", self._list),
            web.get("/{case}/v2/images/{id}", self._show),
            web.get("/{case}/v2/images/{id}/file", self._file),
            web.get("/{case}/v2/images/{id}/members", self._members),
            web.post("/{case}/v2.0/tokens", self._tokens),
        ]
        async with serve(routes, self.recorder, ssl_context=ssl_context) as url:
            self.url = url
            yield self

    def requests_to(self, case: str) -> list[str]:
        """The paths requested under one case's prefix."""
        return [path for _, path, _ in self.recorder.requests if path.startswith(f"/{case}/")]

    def endpoint(self, case: str) -> str:
        return f"{self.url}/{case}"

    async def _list(self, request: web.Request) -> web.StreamResponse:
        case = request.match_info["case"]
        if case.endswith("-region") or case == "images":
            return web.json_response({"images": [i.record() for i in self.images.values()]})
        return await LISTINGS[case](self, request)

    async def _show(self, request: web.Request) -> web.StreamResponse:
        image = self.images.get(request.match_info["id"])
        if image is None:
            return web.json_response({"message": "not found"}, status=404)
        return web.json_response(image.record())

    async def _file(self, request: web.Request) -> web.StreamResponse:
        image = self.images.get(request.match_info["id"])
        if image is None:  # an image only a listing case names: gone, as Glance would say
            raise web.HTTPNotFound(text="404 Not Found: no image with that id")
        return await DOWNLOADS[image.download](self, request, image)

    async def _members(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["case"] == "members-not-json":
            return web.Response(text="<html>oops</html>", content_type="text/html")
        return web.json_response({"members": [], "schema": "/v2/schemas/members"})

    async def _tokens(self, request: web.Request) -> web.StreamResponse:
        case = request.match_info["case"]
        return await IDENTITIES[case](self, case, request)


# -- configs and the command line ---------------------------------------------------------------


def token_cloud(endpoint: str, *, insecure: bool = False) -> str:
    """The hostile source in token mode: a pre-issued token and an explicit endpoint."""
    return (
        "[clouds.hostile]\n"
        f'tenant_id = "{TENANT}"\n'
        'token_env = "REL_HOSTILE_TOKEN"\n'
        f"insecure = {'true' if insecure else 'false'}\n"
        f'endpoints = {{ KR1 = "{endpoint}" }}\n'
    )


def password_cloud(identity: str) -> str:
    """The hostile source in password mode: its identity service hands out the catalog."""
    return (
        "[clouds.hostile]\n"
        f'identity_url = "{identity}"\n'
        f'tenant_id = "{TENANT}"\n'
        'username = "op"\n'
        'password_env = "REL_HOSTILE_PW"\n'
    )


def write_config(
    folder: Path, source_cloud: str, *, identity_url: str, dst_tenant: str, dst_user: str
) -> Path:
    """A job pulling every image of the hostile KR1 into the emulator's dst/KR1."""
    folder.mkdir(parents=True, exist_ok=True)
    text = f"""\
[journal]
path = "journal.db"

[log]
level = "warning"
format = "json"

{source_cloud}
[clouds.dst]
identity_url = "{identity_url}"
tenant_id = "{dst_tenant}"
username = "{dst_user}"
password_env = "REL_DST_PW"

[[jobs]]
name = "pull"
source = {{ cloud = "hostile", region = "KR1" }}
targets = [ {{ cloud = "dst", region = "KR1" }} ]
transfers = 4
retries = 2
"""
    path = folder / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


@dataclass
class Outcome:
    code: int
    out: str
    err: str


async def cli(*args: str, cwd: Path, env: Mapping[str, str], within: float = 120.0) -> Outcome:
    """``python -m transfer ARGS`` as a child process."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("REL_")}
    child_env.update(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transfer",
        *args,
        cwd=cwd,
        env=child_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"no exit in {within}s:\n{out.decode()}\n{err.decode()}") from None
    assert proc.returncode is not None
    return Outcome(proc.returncode, out.decode(), err.decode())


def every_byte(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def leaks(secrets: Sequence[str], texts: Mapping[str, bytes | str]) -> list[str]:
    """Which secret shows up where (secrets here are plain ASCII: no escaping hides them)."""
    found = []
    for secret in secrets:
        needle = secret.encode()
        for where, content in texts.items():
            data = content.encode() if isinstance(content, str) else content
            if needle in data:
                found.append(f"{secret[:6]}... in {where}")
    return found
