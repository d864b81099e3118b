"""What happens to every request before its handler: an Image API region first negotiates the
version as Glance does (``documents``); then the request is named and counted, delayed and
perhaps failed on purpose, and any error it ends in is answered with an error body (Glance's,
negotiated on ``Accept``, or Keystone's JSON).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from transfer.emulator.documents import VERSION_PREFIXES, first_segment, version_document
from transfer.emulator.faults import FaultInjector
from transfer.emulator.responses import HttpError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Checks a request's token (raises the 401), for requests no route takes.
Authenticate = Callable[[web.Request], object]


class Counters:
    """Requests per route and body bytes moved, for one region (or the identity service)."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.bytes_served = 0
        self.bytes_received = 0
        self.connections = 0  # connections that brought a request (each one a handshake)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "bytes_served": self.bytes_served,
            "bytes_received": self.bytes_received,
            "connections": self.connections,
        }

    def reset(self) -> None:
        self.requests.clear()
        self.bytes_served = 0
        self.bytes_received = 0
        self.connections = 0


class RouteTable:
    """Adds routes to an app and remembers each one's name for counting and fault targeting."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.names: dict[web.AbstractRoute, str] = {}

    def add(self, method: str, path: str, handler: Handler, name: str) -> None:
        route = self.app.router.add_route(method, path, handler)
        self.names[route] = name

    def name_of(self, request: web.Request) -> str:
        return self.names.get(request.match_info.route, "other")


def request_middleware(
    table: RouteTable,
    counters: Counters,
    injector: FaultInjector | None,
    *,
    keystone_errors: bool = False,
    authenticate: Authenticate | None = None,
) -> Any:
    """Counting, injected latency and errors (named routes only), error bodies.  With
    ``authenticate`` (an Image API region): Glance's version negotiation first, and the token
    check before an unknown route's 404 or a wrong method's 405."""

    seen: weakref.WeakSet[Any] = weakref.WeakSet()  # the connections that brought a request

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        if transport is not None and transport not in seen:
            # A new connection: over a real link it cost a handshake before this request.
            seen.add(transport)
            counters.connections += 1
            handshake = injector.faults.connect_latency if injector is not None else 0.0
            if handshake > 0:
                await asyncio.sleep(handshake)
        accept = request.headers.get("Accept")
        if authenticate is not None:
            segment = first_segment(request.path)
            if segment == "versions":
                return version_document(request, explicit=True)
            if segment not in VERSION_PREFIXES:
                return version_document(request, explicit=False)
        route = table.name_of(request)
        if route != "other":
            counters.requests[route] += 1
        try:
            if injector is not None and route != "other":
                await _inject(injector, route, keystone_errors)
            return await handler(request)
        except HttpError as exc:
            return exc.response(accept)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            try:
                return _unrouted(request, exc, keystone_errors, authenticate)
            except HttpError as error:
                return error.response(accept)

    return middleware


async def _inject(injector: FaultInjector, route: str, keystone_errors: bool) -> None:
    delay = injector.delay(route)
    if delay > 0:
        await asyncio.sleep(delay)
    status = injector.pick_error(route)
    if status is not None:
        retry_after = injector.faults.retry_after
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = _retry_after_value(retry_after)
        raise HttpError(
            status,
            "Injected fault: the emulated service failed this request.",
            keystone=keystone_errors,
            headers=headers,
        )


def _unrouted(
    request: web.Request,
    exc: web.HTTPException,
    keystone_errors: bool,
    authenticate: Authenticate | None,
) -> web.Response:
    """The answer to a request no route took (unknown path, wrong method)."""
    if authenticate is None:
        error = HttpError(exc.status, exc.reason, keystone=keystone_errors)
    else:
        authenticate(request)
        if request.path == "/" + first_segment(request.path) and exc.status == 404:
            # "/v2" alone: Glance's URL map redirects to the version's root.
            location = f"{request.scheme}://{request.host}/v2/"
            return web.Response(
                status=302,
                headers={"Location": location, "Content-Type": "text/plain; charset=utf8"},
            )
        if exc.status == 405:
            message = f"The method {request.method} is not allowed for this resource. "
        elif exc.status == 404:
            message = "The resource could not be found."
        else:
            message = exc.reason
        error = HttpError(exc.status, message, keystone=keystone_errors)
    if "Allow" in exc.headers:
        error.headers["Allow"] = exc.headers["Allow"]
    raise error


def _retry_after_value(seconds: float) -> str:
    # Retry-After takes whole seconds; keep fractions so fast tests can use small delays.
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
