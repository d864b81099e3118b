"""One emulated region's Image API (Glance v2, as NHN documents it or as Glance 33 runs it: the
``Flavour``): the routes, and the handlers of the images themselves (list, create, show,
update, delete), their tags and the schemas.

Who may do what is in ``access``, image data in ``data``, members in ``members``, the
deactivate and reactivate actions in ``actions``, the version document and schemas in
``documents``.  Every route also answers under ``/v2.N/`` as Glance's version negotiation does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from aiohttp import web

from transfer.emulator import schema
from transfer.emulator.access import ImageAccess, json_body, media_type
from transfer.emulator.actions import ImageActions
from transfer.emulator.data import ImageData
from transfer.emulator.documents import SCHEMA_NAMES, VERSION_SEGMENT, schemas_for
from transfer.emulator.faults import FaultInjector
from transfer.emulator.flavours import NHN, Flavour
from transfer.emulator.identity import TokenBook
from transfer.emulator.listing import list_page
from transfer.emulator.members import ImageMembers
from transfer.emulator.middleware import Counters, RouteTable, request_middleware
from transfer.emulator.responses import HttpError, json_response, now
from transfer.emulator.store import RegionStore

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
#: The older patch media type: operations written ``{"add": "/key", "value": ...}``.
LEGACY_PATCH_TYPE = "application/openstack-images-v2.0-json-patch"
_BODY_LIMIT = 1 << 20  # JSON bodies; image bytes are streamed, not limited by this


class RegionService:
    """The Image API of one region, over its ``RegionStore``."""

    def __init__(
        self,
        name: str,
        store: RegionStore,
        tokens: TokenBook,
        injector: FaultInjector,
        *,
        executor: Executor,
        identity_url: Callable[[], str],
        default_page_size: int,
        max_page_size: int,
        image_size_cap: int | None,
        flavour: Flavour = NHN,
    ) -> None:
        self.name = name
        self.flavour = flavour
        self.store = store
        self.counters = Counters()
        self._injector = injector
        self._executor = executor
        self._default_page_size = default_page_size
        self._max_page_size = max_page_size
        self._access = ImageAccess(store, tokens, identity_url, flavour)
        self._schemas = schemas_for(flavour)
        self._data = ImageData(
            store,
            self._access,
            injector,
            self.counters,
            executor=executor,
            image_size_cap=image_size_cap,
            flavour=flavour,
        )
        self._members = ImageMembers(store, self._access)
        self._actions = ImageActions(store, self._access)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=_BODY_LIMIT)
        table = RouteTable(app)
        root = "/" + VERSION_SEGMENT
        base = root + "/images"
        one = base + "/{image_id}"
        data, members = self._data, self._members
        table.add("GET", base, self.list_images, "list")
        table.add("POST", base, self.create_image, "create")
        table.add("GET", one, self.show_image, "show")
        table.add("PATCH", one, self.update_image, "update")
        table.add("DELETE", one, self.delete_image, "delete")
        table.add("PUT", one + "/file", data.upload, "upload")
        table.add("GET", one + "/file", data.download, "download")
        table.add("PUT", one + "/tags/{tag}", self.add_tag, "tags")
        table.add("DELETE", one + "/tags/{tag}", self.remove_tag, "tags")
        table.add("POST", one + "/members", members.add_member, "members")
        table.add("GET", one + "/members", members.list_members, "members")
        table.add("GET", one + "/members/{member_id}", members.show_member, "members")
        table.add("PUT", one + "/members/{member_id}", members.update_member, "members")
        table.add("DELETE", one + "/members/{member_id}", members.remove_member, "members")
        if self.flavour.image_actions:
            for action in ("deactivate", "reactivate"):
                table.add("POST", f"{one}/actions/{action}", self._actions.handler(action), action)
        table.add(
            "GET",
            root + "/schemas/{schema_name:" + "|".join(SCHEMA_NAMES) + "}",
            self.show_schema,
            "other",
        )
        app.middlewares.append(
            request_middleware(
                table, self.counters, self._injector, authenticate=self._access.tenant
            )
        )
        return app

    # -- images --------------------------------------------------------------------------

    async def list_images(self, request: web.Request) -> web.StreamResponse:
        tenant = self._access.tenant(request)
        store = self.store
        page = list_page(
            store.images.values(),
            request.rel_url.query,
            tenant=tenant,
            member_status=lambda image_id: store.member_status(image_id, tenant),
            default_limit=self._default_page_size,
            max_limit=self._max_page_size,
        )
        body: dict[str, Any] = {
            "images": [schema.view(r) for r in page.images],
            "schema": "/v2/schemas/images",
            "first": page.first,
        }
        if page.next is not None:
            body["next"] = page.next
        return json_response(body)

    async def show_schema(self, request: web.Request) -> web.StreamResponse:
        self._access.tenant(request)
        return json_response(self._schemas[request.match_info["schema_name"]])

    async def show_image(self, request: web.Request) -> web.StreamResponse:
        tenant = self._access.tenant(request)
        record = self._access.visible(tenant, request.match_info["image_id"])
        return json_response(schema.view(record))

    async def create_image(self, request: web.Request) -> web.StreamResponse:
        tenant = self._access.tenant(request)
        body = await json_body(request)
        if not isinstance(body, dict):
            raise HttpError(400, "The request body must be a JSON object.")
        record = self.new_record(tenant, body, visibilities=self.flavour.user_visibilities)
        self.store.add(record)
        location = str(request.url.origin().with_path(f"/v2/images/{record['id']}"))
        return json_response(schema.view(record), status=201, headers={"Location": location})

    def new_record(
        self,
        owner: str,
        body: dict[str, Any],
        *,
        visibilities: frozenset[str],
        seeding: bool = False,
    ) -> dict[str, Any]:
        """A queued image from create's body (validated; not yet stored).  ``seeding`` (an
        operator's image, made without HTTP) may leave out the name."""
        image_id = str(uuid.uuid4())
        if "id" in body:
            image_id = schema.canonical_uuid(body["id"])
            if self.store.is_taken(image_id):
                raise HttpError(409, f"Image with identifier {image_id} already exists!")
        record = schema.blank_record(image_id, owner, now(), self.flavour.default_visibility)
        schema.apply_create(
            record, body, visibilities=visibilities, flavour=self.flavour, need_name=not seeding
        )
        return record

    async def update_image(self, request: web.Request) -> web.StreamResponse:
        tenant = self._access.tenant(request)
        record = self._access.owned(tenant, request.match_info["image_id"])
        content_type = media_type(request)
        if content_type not in (PATCH_TYPE, LEGACY_PATCH_TYPE):
            raise HttpError(
                415,
                f"The request media type {content_type or '(none)'} is not supported by this "
                "server.",
                detail=f"Image PATCH expects Content-Type one of: {LEGACY_PATCH_TYPE}, "
                f"{PATCH_TYPE}",
            )
        ops = await json_body(request)
        if content_type == LEGACY_PATCH_TYPE:
            ops = schema.legacy_ops(ops)
        updated = schema.apply_patch(record, ops, flavour=self.flavour)
        if updated != record:
            updated["updated_at"] = now()
            record.clear()
            record.update(updated)
            self.store.changed()
        return json_response(schema.view(record))

    async def delete_image(self, request: web.Request) -> web.StreamResponse:
        tenant = self._access.tenant(request)
        image_id = request.match_info["image_id"]
        record = self._access.deletable(tenant, image_id)
        if record["visibility"] == "public":
            raise HttpError(403, "Public images cannot be deleted.")
        path = self.store.remove(image_id)
        await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: path.unlink(missing_ok=True)
        )
        return web.Response(status=204)

    # -- tags ----------------------------------------------------------------------------

    async def add_tag(self, request: web.Request) -> web.StreamResponse:
        tenant = self._access.tenant(request)
        record = self._access.changeable(tenant, request.match_info["image_id"])
        tag = schema.check_tag(request.match_info["tag"], self.flavour)
        if tag not in record["tags"]:
            record["tags"] = [*record["tags"], tag]
            record["updated_at"] = now()
            self.store.changed()
        return web.Response(status=204)

    async def remove_tag(self, request: web.Request) -> web.StreamResponse:
        tenant = self._access.tenant(request)
        record = self._access.changeable(tenant, request.match_info["image_id"])
        tag = request.match_info["tag"]
        if tag not in record["tags"]:
            raise HttpError(404, f"Tag {tag!r} not found on the image.")
        record["tags"] = [t for t in record["tags"] if t != tag]
        record["updated_at"] = now()
        self.store.changed()
        return web.Response(status=204)
