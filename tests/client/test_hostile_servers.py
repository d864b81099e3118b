"""The client against small servers of our own that misbehave on purpose (real sockets).

They answer what the emulator never would: links and redirects to another host, broken token
answers, non-JSON bodies, a server that is not listening yet.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.typedefs import Middleware

from transfer.cloud.client import ImageClient
from transfer.cloud.sessions import CloudSession
from transfer.config.settings import Credentials, HttpSettings, Secret
from transfer.errors import (
    AuthError,
    Conflict,
    ConnectError,
    NotFound,
    ProtocolError,
    ServerError,
    TransportError,
    Unauthorized,
)

TOKEN = "tok-7f3a9c0e55d2"
PASSWORD = "pw-b81c44e0aa17"
FAST = HttpSettings(attempts=3, backoff_base=0.01, backoff_cap=0.05, retry_total=5.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Recorder:
    """A server's log of what it received, to prove what was (not) sent to it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def middleware(self) -> Middleware:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.requests.append((request.method, request.path_qs, dict(request.headers)))
            return await handler(request)

        return record


@asynccontextmanager
async def serve(
    routes: list[web.RouteDef],
    recorder: Recorder | None = None,
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    app = web.Application(middlewares=[recorder.middleware()] if recorder else [])
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{bound}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def client_for(
    routes: list[web.RouteDef], recorder: Recorder | None = None
) -> AsyncIterator[ImageClient]:
    """An ImageClient (token mode) for a server answering ``routes``."""
    async with (
        serve(routes, recorder) as endpoint,
        CloudSession(token_credentials(endpoint), settings=FAST) as cloud,
    ):
        yield await cloud.image_client("kr1")


def token_credentials(endpoint: str) -> Credentials:
    return Credentials(
        name="hostile", token=Secret(TOKEN), endpoints={"KR1": endpoint}, tenant_id="t1"
    )


def image_json(image_id: str) -> dict[str, object]:
    return {"id": image_id, "status": "active", "name": image_id, "tags": []}


async def test_a_next_link_to_another_host_is_refused_and_gets_no_token() -> None:
    other = Recorder()
    async with serve([web.get("/v2/images", _ok_list)], other) as elsewhere:

        async def listing(request: web.Request) -> web.StreamResponse:
            return web.json_response(
                {"images": [image_json("one")], "next": f"{elsewhere}/v2/images?marker=one"}
            )

        async with client_for([web.get("/v2/images", listing)]) as client:
            seen = []
            with pytest.raises(ProtocolError, match="another host") as caught:
                async for image in client.list_images(page_size=1):
                    seen.append(image.id)
    assert seen == ["one"]
    assert other.requests == []
    assert TOKEN not in str(caught.value)


async def _ok_list(request: web.Request) -> web.StreamResponse:
    return web.json_response({"images": []})


async def test_a_redirect_is_not_followed_and_the_token_stays_home() -> None:
    other = Recorder()
    async with serve([web.get("/v2/images/{id}", _ok_list)], other) as elsewhere:

        async def moved(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(f"{elsewhere}/v2/images/{request.match_info['id']}")

        async with client_for([web.get("/v2/images/{id}", moved)]) as client:
            with pytest.raises(ProtocolError, match="302") as caught:
                await client.get_image("abc")
    assert other.requests == []
    assert "127.0.0.1" in str(caught.value)  # names where it wanted to send us


async def test_a_non_json_answer_is_a_protocol_error() -> None:
    async def garbage(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    async with client_for([web.get("/v2/images/{id}", garbage)]) as client:
        with pytest.raises(ProtocolError, match="not JSON"):
            await client.get_image("abc")


async def test_a_refused_pre_issued_token_says_so_without_showing_it() -> None:
    recorder = Recorder()

    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response({"message": "token " + TOKEN + " is unknown"}, status=401)

    async with client_for([web.get("/v2/images/{id}", refuse)], recorder) as client:
        with pytest.raises(Unauthorized, match="pre-issued token for cloud 'hostile'") as caught:
            await client.get_image("abc")
    assert len(recorder.requests) == 1  # a pre-issued token cannot be renewed: no retry
    assert recorder.requests[0][2]["X-Auth-Token"] == TOKEN
    text = str(caught.value) + repr(caught.value) + str(caught.value.__cause__)
    assert TOKEN not in text


def password_credentials(identity: str) -> Credentials:
    return Credentials(
        name="broken",
        identity_url=identity + "/v2.0",
        tenant_id="t1",
        username="u",
        password=Secret(PASSWORD),
        endpoints={"KR1": identity},
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"access": {"token": {"id": "x", "tenant": {"id": "t1"}}}}, "no readable 'expires'"),
        ({"access": {"token": {"expires": "2099-01-01T00:00:00Z"}}}, "no token 'id'"),
        ({"access": {}}, "no 'access.token'"),
        ("not json at all", "is not JSON"),
    ],
)
async def test_an_unusable_token_answer_is_an_auth_error(answer: object, message: str) -> None:
    async def tokens(request: web.Request) -> web.StreamResponse:
        if isinstance(answer, str):
            return web.Response(text=answer)
        return web.json_response(answer)

    async with (
        serve([web.post("/v2.0/tokens", tokens)]) as identity,
        CloudSession(password_credentials(identity), settings=FAST) as cloud,
    ):
        with pytest.raises(AuthError, match=message) as caught:
            await cloud.tenant_id()
    assert PASSWORD not in str(caught.value)


async def test_a_create_without_id_is_not_repeated_after_a_server_error() -> None:
    recorder = Recorder()

    async def failing(request: web.Request) -> web.StreamResponse:
        return web.json_response({"message": "boom"}, status=503, headers={"Retry-After": "0"})

    async with client_for([web.post("/v2/images", failing)], recorder) as client:
        with pytest.raises(ServerError, match="503 boom"):
            await client.create_image({"name": "x", "os_type": "linux"})
    assert len(recorder.requests) == 1  # it may have been created: never twice


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_create_is_repeated_when_the_connection_was_refused() -> None:
    port = free_port()
    created = asyncio.Event()

    async def create(request: web.Request) -> web.StreamResponse:
        created.set()
        return web.json_response(image_json("new"), status=201)

    settings = HttpSettings(attempts=20, backoff_base=0.05, backoff_cap=0.1, retry_total=10.0)
    async with CloudSession(
        token_credentials(f"http://127.0.0.1:{port}"), settings=settings
    ) as cloud:
        client = await cloud.image_client("KR1")
        attempt = asyncio.ensure_future(client.create_image({"name": "new", "os_type": "linux"}))
        await asyncio.sleep(0.2)  # refused meanwhile: nothing was sent, so retrying is safe
        assert not attempt.done()
        async with serve([web.post("/v2/images", create)], port=port):
            image = await attempt
    assert image.id == "new" and created.is_set()


async def test_connection_refused_ends_in_a_clear_error_when_the_budget_runs_out() -> None:
    port = free_port()
    async with CloudSession(token_credentials(f"http://127.0.0.1:{port}"), settings=FAST) as cloud:
        client = await cloud.image_client("KR1")
        with pytest.raises(ConnectError, match=r"cannot connect to 127\.0\.0\.1.*gave up after 3"):
            await client.get_image("abc")


class LosesFirstAnswer:
    """Acts on the first request but answers 503, as if the answer were lost on the way."""

    def __init__(self) -> None:
        self.calls = 0

    def first(self) -> bool:
        self.calls += 1
        return self.calls == 1


async def test_a_retried_create_with_an_id_returns_the_image_its_lost_answer_made() -> None:
    lost = LosesFirstAnswer()
    made: dict[str, dict[str, object]] = {}

    async def create(request: web.Request) -> web.StreamResponse:
        first = lost.first()
        body = await request.json()
        existed = body["id"] in made
        made.setdefault(body["id"], {**image_json(body["id"]), "name": body["name"], "owner": "t1"})
        if first:
            return web.json_response({"message": "lost"}, status=503)
        if existed:
            return web.json_response({"message": "already exists"}, status=409)
        return web.json_response(made[body["id"]], status=201)

    async def show(request: web.Request) -> web.StreamResponse:
        return web.json_response(made[request.match_info["id"]])

    routes = [web.post("/v2/images", create), web.get("/v2/images/{id}", show)]
    async with client_for(routes) as client:
        image = await client.create_image({"id": "fixed-id", "name": "mine", "os_type": "linux"})
        assert (image.id, image.name) == ("fixed-id", "mine")
        assert lost.calls == 2
        # An id that was already taken by another image (another name) is not adopted.
        made["taken"] = {**image_json("taken"), "name": "theirs", "owner": "t1"}
        lost.calls = 0
        with pytest.raises(Conflict, match="already exists"):
            await client.create_image({"id": "taken", "name": "mine", "os_type": "linux"})
        assert lost.calls == 2


async def test_a_retried_delete_whose_answer_was_lost_is_done() -> None:
    lost = LosesFirstAnswer()
    alive = {"x"}

    async def delete(request: web.Request) -> web.StreamResponse:
        first = lost.first()
        if request.match_info["id"] not in alive:
            return web.json_response({"message": "gone"}, status=404)
        alive.discard(request.match_info["id"])
        if first:
            return web.json_response({"message": "lost"}, status=502)
        return web.Response(status=204)

    async with client_for([web.delete("/v2/images/{id}", delete)]) as client:
        await client.delete_image("x")
        assert lost.calls == 2
        with pytest.raises(NotFound):  # a plain 404 is still an error
            await client.delete_image("x")


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, {}, (200, 0, 10, 10)),  # the server ignored the Range: the body starts at 0
        (206, {"Content-Range": "bytes 4-9/10"}, (206, 4, 6, 10)),
    ],
)
async def test_download_reports_where_the_body_starts(
    status: int, headers: dict[str, str], expected: tuple[int, int, int, int]
) -> None:
    data = b"0123456789"

    async def file(request: web.Request) -> web.StreamResponse:
        assert request.headers["Range"] == "bytes=4-"
        body = data if status == 200 else data[4:]
        return web.Response(body=body, status=status, headers=headers)

    async with (
        client_for([web.get("/v2/images/{id}/file", file)]) as client,
        client.download_image("abc", offset=4) as download,
    ):
        got = (download.status, download.offset, download.length, download.total_size)
        body = b"".join([c async for c in download.chunks()])
    assert got == expected
    assert body == (data if status == 200 else data[4:])


async def test_a_206_from_the_wrong_offset_is_a_protocol_error() -> None:
    async def file(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"456789", status=206, headers={"Content-Range": "bytes 3-8/10"})

    async with client_for([web.get("/v2/images/{id}/file", file)]) as client:
        with pytest.raises(ProtocolError, match="from 4, the server sent them from 3"):
            async with client.download_image("abc", offset=4):
                pass


async def test_a_body_shorter_than_its_length_is_a_transport_error() -> None:
    async def file(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"x" * 40)
        assert request.transport is not None
        request.transport.close()
        return response

    async with client_for([web.get("/v2/images/{id}/file", file)]) as client:
        with pytest.raises(TransportError, match="after 40 of 100 bytes"):
            async with client.download_image("abc") as download:
                async for _ in download.chunks():
                    pass
