"""``POST /v2/images/{id}/actions/deactivate`` and ``/reactivate`` (the ``glance`` flavour only),
as Glance 33 answers a project member: the owner may deactivate an active image and reactivate
a deactivated one (both idempotent, 204); any other status is 403; a tenant that sees the
image but does not own it gets 403, one that does not see it 404; a request body is 400.

A deactivated image still shows, lists and takes changes, and may be deleted; its data may not
be downloaded (403) nor uploaded (409).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from transfer.emulator.access import ImageAccess
from transfer.emulator.responses import HttpError, now
from transfer.emulator.store import RegionStore

#: action -> (the statuses it acts on, the status it leaves)
_ACTIONS = {
    "deactivate": (("active", "deactivated"), "deactivated"),
    "reactivate": (("active", "deactivated"), "active"),
}


class ImageActions:
    def __init__(self, store: RegionStore, access: ImageAccess) -> None:
        self._store = store
        self._access = access

    def handler(self, action: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        sources, target = _ACTIONS[action]

        async def act(request: web.Request) -> web.StreamResponse:
            tenant = self._access.tenant(request)
            if await request.read():
                raise HttpError(400, "A body is not expected with this request.")
            record = self._access.visible(tenant, request.match_info["image_id"])
            if record["owner"] != tenant:
                raise HttpError(403, f"You are not authorized to complete {action} action.")
            status = record["status"]
            if status not in sources:
                raise HttpError(403, f"Not allowed to {action} image in status '{status}'")
            if status != target:
                record["status"] = target
                record["updated_at"] = now()
                self._store.changed()
            return web.Response(status=204)

        return act
