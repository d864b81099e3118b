"""Who may do what in one region's Image API: the tenant a request's token names, and which
images that tenant may see, change or share; plus how every handler reads a request (its media
type, its JSON body, strictly).

Access rules: a tenant sees its own images, public (and community) ones, and shared images it
is a member of (whatever its member status); anything else is 404.  Changing an image it can
see but does not own is 403.  A protected image cannot be deleted; on the ``nhn`` flavour it
cannot be changed either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from transfer.emulator.flavours import Flavour
from transfer.emulator.identity import TokenBook
from transfer.emulator.responses import HttpError, unauthorized
from transfer.emulator.store import RegionStore

# member_status(image_id) -> the caller's member status for that image, or None.
MemberLookup = Callable[[str], str | None]


def sees(record: Mapping[str, Any], tenant: str, member_status: MemberLookup) -> bool:
    """Whether ``tenant`` may see the image at all (show, marker of a list, members)."""
    if record["owner"] == tenant or record["visibility"] in ("public", "community"):
        return True
    return record["visibility"] == "shared" and member_status(record["id"]) is not None


class ImageAccess:
    """The access checks of one region: each returns the record or raises 401/403/404."""

    def __init__(
        self,
        store: RegionStore,
        tokens: TokenBook,
        identity_url: Callable[[], str],
        flavour: Flavour,
    ) -> None:
        self._flavour = flavour
        self._store = store
        self._tokens = tokens
        self._identity_url = identity_url

    def tenant(self, request: web.Request) -> str:
        token = request.headers.get("X-Auth-Token")
        if not token:
            raise unauthorized("Authentication required: send X-Auth-Token.", self._identity_url())
        tenant = self._tokens.tenant_of(token)
        if tenant is None:
            raise unauthorized(
                "The token is invalid or has expired; request a new one.", self._identity_url()
            )
        return tenant

    def visible(self, tenant: str, image_id: str) -> dict[str, Any]:
        record = self._store.get(image_id)
        if record is None or not sees(
            record, tenant, lambda other: self._store.member_status(other, tenant)
        ):
            raise HttpError(404, f"No image found with ID {image_id}.")
        return record

    def owned(self, tenant: str, image_id: str) -> dict[str, Any]:
        record = self.visible(tenant, image_id)
        if record["owner"] != tenant:
            raise HttpError(403, "You are not permitted to modify an image you do not own.")
        return record

    def changeable(self, tenant: str, image_id: str) -> dict[str, Any]:
        """An image the caller may change (its tags): owned, and not protected on ``nhn``."""
        record = self.owned(tenant, image_id)
        if self._flavour.protected_blocks_changes and record.get("protected") is True:
            raise HttpError(403, "Image is protected: it cannot be changed or deleted.")
        return record

    def deletable(self, tenant: str, image_id: str) -> dict[str, Any]:
        record = self.owned(tenant, image_id)
        if record.get("protected") is True:
            raise HttpError(403, f"Image {image_id} is protected and cannot be deleted.")
        return record

    def shared(self, tenant: str, image_id: str, *, hidden: bool = False) -> dict[str, Any]:
        """An image the caller sees whose members may be used: only ``shared`` images have
        any (403, or 404 where Glance hides the image's existence)."""
        record = self.visible(tenant, image_id)
        if record["visibility"] != "shared":
            raise HttpError(404 if hidden else 403, "Only shared images have members.")
        return record


def media_type(request: web.Request) -> str:
    """The request's Content-Type without parameters, lower-case ('' when none was sent)."""
    # Not request.content_type: aiohttp reports application/octet-stream for a missing header.
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


async def json_body(request: web.Request) -> Any:
    try:
        return await request.json(loads=_strict_loads)
    except ValueError:
        raise HttpError(400, "The request body is not valid JSON.") from None


def _strict_loads(text: str) -> Any:
    # Python's json accepts NaN and Infinity; Glance (and JSON) do not.
    def reject_constant(name: str) -> Any:
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=reject_constant)
