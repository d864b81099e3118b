"""The emulator's admin endpoint (JSON, no authentication: it listens where the emulator does):
read and change the live faults, expire every token, read and reset the request counters.

    GET   /admin/faults            the live Faults
    PATCH /admin/faults            partial update (400 on an unknown field or a bad value)
    POST  /admin/expire-tokens     every issued token becomes invalid
    GET   /admin/counters          {"regions": {name: counters}, "identity": counters}
    POST  /admin/counters/reset
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from transfer.emulator.faults import Faults
from transfer.emulator.middleware import Counters
from transfer.emulator.responses import HttpError, json_response


class AdminService:
    def __init__(
        self,
        faults: Faults,
        expire_tokens: Callable[[], None],
        region_counters: Mapping[str, Counters],
        identity_counters: Counters,
    ) -> None:
        self._faults = faults
        self._expire_tokens = expire_tokens
        self._regions = region_counters
        self._identity = identity_counters

    def add_routes(self, app: web.Application, prefix: str = "/admin") -> None:
        router = app.router
        router.add_get(prefix + "/faults", self.get_faults, allow_head=False)
        router.add_patch(prefix + "/faults", self.patch_faults)
        router.add_post(prefix + "/expire-tokens", self.expire_tokens)
        router.add_get(prefix + "/counters", self.get_counters, allow_head=False)
        router.add_post(prefix + "/counters/reset", self.reset_counters)

    def counters(self) -> dict[str, Any]:
        return {
            "regions": {name: c.snapshot() for name, c in self._regions.items()},
            "identity": self._identity.snapshot(),
        }

    async def get_faults(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._faults.to_json())

    async def patch_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            raise HttpError(400, "The request body is not valid JSON.", keystone=True) from None
        if not isinstance(body, dict):
            raise HttpError(400, "Expected a JSON object of fault fields.", keystone=True)
        try:
            self._faults.update(**Faults.changes_from_json(body))
        except (TypeError, ValueError) as exc:
            raise HttpError(400, str(exc), keystone=True) from None
        return json_response(self._faults.to_json())

    async def expire_tokens(self, request: web.Request) -> web.StreamResponse:
        self._expire_tokens()
        return web.Response(status=204)

    async def get_counters(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.counters())

    async def reset_counters(self, request: web.Request) -> web.StreamResponse:
        for counters in (*self._regions.values(), self._identity):
            counters.reset()
        return web.Response(status=204)
