"""What happens to every request before its handler: it is named and counted, delayed and
perhaps failed on purpose, and any error it ends in is answered with a JSON body.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from transfer.emulator.faults import FaultInjector
from transfer.emulator.responses import HttpError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Counters:
    """Requests per route and body bytes moved, for one region (or the identity service)."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.bytes_served = 0
        self.bytes_received = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "bytes_served": self.bytes_served,
            "bytes_received": self.bytes_received,
        }

    def reset(self) -> None:
        self.requests.clear()
        self.bytes_served = 0
        self.bytes_received = 0


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
) -> Any:
    """Counting, injected latency and errors (named routes only), JSON error bodies."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = table.name_of(request)
        if route != "other":
            counters.requests[route] += 1
        try:
            if injector is not None and route != "other":
                delay = injector.delay()
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
            return await handler(request)
        except HttpError as exc:
            return exc.response()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            # Routing errors (unknown path, wrong method) in the same JSON shape as the rest.
            error = HttpError(exc.status, exc.reason, keystone=keystone_errors)
            resp = error.response()
            if "Allow" in exc.headers:
                resp.headers["Allow"] = exc.headers["Allow"]
            return resp

    return middleware


def _retry_after_value(seconds: float) -> str:
    # Retry-After takes whole seconds; keep fractions so fast tests can use small delays.
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
