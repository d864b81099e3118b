"""One region's image members, ``/v2/images/{id}/members``: how an owner shares a ``shared``
image with another tenant, and how that tenant accepts or rejects it.

The owner adds and removes members and sees all of them; a member sees only itself and is
the only one who may change its own status.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from transfer.emulator import schema
from transfer.emulator.access import ImageAccess, json_body
from transfer.emulator.responses import HttpError, json_response, now
from transfer.emulator.store import RegionStore


class ImageMembers:
    """The member handlers of one region."""

    def __init__(self, store: RegionStore, access: ImageAccess) -> None:
        self._store = store
        self._access = access

    def _members_of(self, image_id: str) -> dict[str, dict[str, Any]]:
        return self._store.members.get(image_id, {})

    async def add_member(self, request: web.Request) -> web.StreamResponse:
        tenant = self._access.tenant(request)
        image_id = request.match_info["image_id"]
        record = self._access.visible(tenant, image_id)
        if record["owner"] != tenant:
            raise HttpError(403, "Only the image's owner may share it.")
        if record["visibility"] != "shared":
            raise HttpError(403, "Only images with visibility 'shared' can have members.")
        body = await json_body(request)
        member_id = body.get("member") if isinstance(body, dict) else None
        if not isinstance(member_id, str) or not member_id:
            raise HttpError(400, 'Expected a body {"member": "<tenant id>"}.')
        members = self._store.members.setdefault(image_id, {})
        if member_id in members:
            raise HttpError(409, f"Member {member_id} is already a member of the image.")
        stamp = now()
        member = {
            "created_at": stamp,
            "updated_at": stamp,
            "image_id": image_id,
            "member_id": member_id,
            "schema": "/v2/schemas/member",
            "status": "pending",
        }
        members[member_id] = member
        self._store.changed()
        return json_response(member)

    def _shared_image(
        self, request: web.Request, *, hidden: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """The caller's tenant and the shared image the request names."""
        tenant = self._access.tenant(request)
        return tenant, self._access.shared(tenant, request.match_info["image_id"], hidden=hidden)

    async def list_members(self, request: web.Request) -> web.StreamResponse:
        tenant, record = self._shared_image(request)
        members = self._members_of(record["id"])
        listed = [
            m for m in members.values() if record["owner"] == tenant or m["member_id"] == tenant
        ]
        return json_response({"members": listed, "schema": "/v2/schemas/members"})

    async def show_member(self, request: web.Request) -> web.StreamResponse:
        tenant, record = self._shared_image(request, hidden=True)
        member_id = request.match_info["member_id"]
        member = self._members_of(record["id"]).get(member_id)
        if member is None or (record["owner"] != tenant and member_id != tenant):
            raise _no_member(member_id, record)
        return json_response(member)

    async def update_member(self, request: web.Request) -> web.StreamResponse:
        tenant, record = self._shared_image(request)
        member_id = request.match_info["member_id"]
        if record["owner"] == tenant:
            raise HttpError(403, "Only the member itself may change its status.")
        member = self._members_of(record["id"]).get(member_id)
        if member is None:
            raise _no_member(member_id, record)
        if member_id != tenant:
            raise HttpError(403, "Only the member itself may change its status.")
        body = await json_body(request)
        status = body.get("status") if isinstance(body, dict) else None
        if status not in schema.MEMBER_STATUSES:
            raise HttpError(400, "Member status must be one of accepted, pending, rejected.")
        if member["status"] != status:
            member["status"] = status
            member["updated_at"] = now()
            self._store.changed()
        return json_response(member)

    async def remove_member(self, request: web.Request) -> web.StreamResponse:
        tenant, record = self._shared_image(request)
        if record["owner"] != tenant:
            raise HttpError(403, "Only the image's owner may remove a member.")
        member_id = request.match_info["member_id"]
        members = self._members_of(record["id"])
        if member_id not in members:
            raise _no_member(member_id, record)
        del members[member_id]
        self._store.changed()
        return web.Response(status=204)


def _no_member(member_id: str, record: dict[str, Any]) -> HttpError:
    return HttpError(404, f"Member {member_id} not found for image {record['id']}.")
