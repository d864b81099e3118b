"""One emulated region's Image API (Glance v2 as NHN documents it): the ``/v2/images`` routes,
who may see and change what, image statuses, uploads and downloads.

Access rules: a tenant sees its own images, public (and community) ones, and shared images it
is a member of (whatever its member status); anything else is 404.  Changing an image it can
see but does not own is 403.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from aiohttp import web

from transfer.emulator import schema
from transfer.emulator.faults import FaultInjector
from transfer.emulator.identity import TokenBook
from transfer.emulator.listing import list_page
from transfer.emulator.middleware import Counters, RouteTable, request_middleware
from transfer.emulator.responses import HttpError, json_response, now, unauthorized
from transfer.emulator.store import RegionStore
from transfer.emulator.streams import (
    CHUNK,
    Digest,
    LanePipeline,
    Pacer,
    RangeError,
    UploadSink,
    read_piece,
    resolve_range,
)

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
_BODY_LIMIT = 1 << 20  # JSON bodies; image bytes are streamed, not limited by this


class RegionService:
    """The Image API handlers of one region, over its ``RegionStore``."""

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
    ) -> None:
        self.name = name
        self.store = store
        self.counters = Counters()
        self._tokens = tokens
        self._injector = injector
        self._executor = executor
        self._identity_url = identity_url
        self._default_page_size = default_page_size
        self._max_page_size = max_page_size
        self._size_cap = image_size_cap

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=_BODY_LIMIT)
        table = RouteTable(app)
        base = "/v2/images"
        one = base + "/{image_id}"
        table.add("GET", base, self.list_images, "list")
        table.add("POST", base, self.create_image, "create")
        table.add("GET", one, self.show_image, "show")
        table.add("PATCH", one, self.update_image, "update")
        table.add("DELETE", one, self.delete_image, "delete")
        table.add("PUT", one + "/file", self.upload, "upload")
        table.add("GET", one + "/file", self.download, "download")
        table.add("PUT", one + "/tags/{tag}", self.add_tag, "tags")
        table.add("DELETE", one + "/tags/{tag}", self.remove_tag, "tags")
        table.add("POST", one + "/members", self.add_member, "members")
        table.add("GET", one + "/members", self.list_members, "members")
        table.add("GET", one + "/members/{member_id}", self.show_member, "members")
        table.add("PUT", one + "/members/{member_id}", self.update_member, "members")
        table.add("DELETE", one + "/members/{member_id}", self.remove_member, "members")
        app.middlewares.append(request_middleware(table, self.counters, self._injector))
        return app

    # -- who may do what -----------------------------------------------------------------

    def _tenant(self, request: web.Request) -> str:
        token = request.headers.get("X-Auth-Token")
        if not token:
            raise unauthorized("Authentication required: send X-Auth-Token.", self._identity_url())
        tenant = self._tokens.tenant_of(token)
        if tenant is None:
            raise unauthorized(
                "The token is invalid or has expired; request a new one.", self._identity_url()
            )
        return tenant

    def can_see(self, tenant: str, record: dict[str, Any]) -> bool:
        if record["owner"] == tenant or record["visibility"] in ("public", "community"):
            return True
        return (
            record["visibility"] == "shared"
            and self.store.member_status(record["id"], tenant) is not None
        )

    def _visible(self, tenant: str, image_id: str) -> dict[str, Any]:
        record = self.store.get(image_id)
        if record is None or not self.can_see(tenant, record):
            raise HttpError(404, f"No image found with ID {image_id}.")
        return record

    def _owned(self, tenant: str, image_id: str) -> dict[str, Any]:
        record = self._visible(tenant, image_id)
        if record["owner"] != tenant:
            raise HttpError(403, "You are not permitted to modify an image you do not own.")
        return record

    def _changeable(self, tenant: str, image_id: str) -> dict[str, Any]:
        record = self._owned(tenant, image_id)
        if record.get("protected") is True:
            raise HttpError(403, "Image is protected: it cannot be changed or deleted.")
        return record

    @staticmethod
    def view(record: dict[str, Any]) -> dict[str, Any]:
        """The image as the API shows it."""
        image_id = record["id"]
        out = dict(record)
        out["tags"] = list(record.get("tags") or [])
        out["self"] = f"/v2/images/{image_id}"
        out["file"] = f"/v2/images/{image_id}/file"
        out["schema"] = "/v2/schemas/image"
        return out

    async def _json_body(self, request: web.Request) -> Any:
        try:
            return await request.json(loads=_strict_loads)
        except ValueError:
            raise HttpError(400, "The request body is not valid JSON.") from None

    # -- images --------------------------------------------------------------------------

    async def list_images(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
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
            "images": [self.view(r) for r in page.images],
            "schema": "/v2/schemas/images",
            "first": page.first,
        }
        if page.next is not None:
            body["next"] = page.next
        return json_response(body)

    async def show_image(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        return json_response(self.view(self._visible(tenant, request.match_info["image_id"])))

    async def create_image(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        body = await self._json_body(request)
        if not isinstance(body, dict):
            raise HttpError(400, "The request body must be a JSON object.")
        record = self.new_record(tenant, body, visibilities=schema.USER_VISIBILITIES)
        self.store.add(record)
        location = str(request.url.origin().with_path(f"/v2/images/{record['id']}"))
        return json_response(self.view(record), status=201, headers={"Location": location})

    def new_record(
        self, owner: str, body: dict[str, Any], *, visibilities: frozenset[str]
    ) -> dict[str, Any]:
        """A queued image from create's body (validated; not yet stored)."""
        image_id = str(uuid.uuid4())
        if "id" in body:
            image_id = schema.canonical_uuid(body["id"])
            if self.store.is_taken(image_id):
                raise HttpError(409, f"Image with identifier {image_id} already exists!")
        record = schema.blank_record(image_id, owner, now())
        schema.apply_create(record, body, visibilities=visibilities)
        return record

    async def update_image(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        record = self._owned(tenant, request.match_info["image_id"])
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != PATCH_TYPE:
            raise HttpError(
                415,
                f"Unsupported Content-Type {content_type or '(none)'!r}; send {PATCH_TYPE}.",
            )
        ops = await self._json_body(request)
        updated = schema.apply_patch(record, ops)
        if updated != record:
            updated["updated_at"] = now()
            record.clear()
            record.update(updated)
            self.store.changed()
        return json_response(self.view(record))

    async def delete_image(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        image_id = request.match_info["image_id"]
        record = self._changeable(tenant, image_id)
        if record["visibility"] == "public":
            raise HttpError(403, "Public images cannot be deleted.")
        path = self.store.remove(image_id)
        await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: path.unlink(missing_ok=True)
        )
        return web.Response(status=204)

    # -- image data ----------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        image_id = request.match_info["image_id"]
        record = self._owned(tenant, image_id)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/octet-stream":
            raise HttpError(415, "Image data must be sent as application/octet-stream.")
        if record["status"] != "queued":
            raise HttpError(
                409, f"Image status is {record['status']!r}: only a queued image takes data."
            )
        if not record.get("disk_format") or not record.get("container_format"):
            raise HttpError(
                400, "Set disk_format and container_format before uploading image data."
            )
        cap = self._size_cap
        declared = request.content_length
        if cap is not None and declared is not None and declared > cap:
            raise HttpError(413, f"Image exceeds the size cap of {cap} bytes.", close=True)

        record["status"] = "saving"
        record["updated_at"] = now()
        self.store.changed()
        sink = UploadSink(self.store.part_path(image_id), self.store.data_path(image_id))
        received = False
        try:
            digest = await self._receive(request, sink, cap, declared)
            received = True
        except _Dropped:
            return web.Response(status=500)  # never sent: the connection is already closed
        except (ConnectionError, asyncio.IncompleteReadError, web.RequestPayloadError):
            return web.Response(status=400)  # the client went away mid-body
        finally:
            if not received:
                sink.discard()
                if self.store.get(image_id) is record and record["status"] == "saving":
                    record["status"] = "queued"  # a failed upload may be retried on this id
                    record["updated_at"] = now()
                    self.store.changed()
        if self.store.get(image_id) is not record:
            self.store.data_path(image_id).unlink(missing_ok=True)
            raise HttpError(410, "The image was deleted during the upload.")
        record.update(
            status="active",
            size=digest.size,
            checksum=digest.md5,
            os_hash_algo="sha512",
            os_hash_value=digest.sha512,
            updated_at=now(),
        )
        self.store.changed()
        return web.Response(status=204)

    async def _receive(
        self, request: web.Request, sink: UploadSink, cap: int | None, declared: int | None
    ) -> Digest:
        pacer = Pacer(self._injector.faults.bandwidth)
        cut = self._injector.upload_cut()
        if cut is not None and declared is not None and declared <= cut:
            cut = None  # the whole body fits before the cut: nothing to drop
        pipeline = LanePipeline(sink, self._executor)
        await pipeline.open()
        reader = request.content
        received = 0
        try:
            while True:
                want = pacer.piece_size(CHUNK)
                if cut is not None:
                    want = min(want, cut - received + 1)
                chunk = await reader.read(want)
                if not chunk:
                    break
                received += len(chunk)
                self.counters.bytes_received += len(chunk)
                if cap is not None and received > cap:
                    raise HttpError(413, f"Image exceeds the size cap of {cap} bytes.", close=True)
                if cut is not None and received > cut:
                    if self._injector.upload_dropped():
                        _close_connection(request)
                        raise _Dropped
                    cut = None
                # Written and hashed in worker threads while the next piece arrives.
                await pipeline.push(chunk)
                await pacer.pace(len(chunk))
            return await pipeline.commit()
        except BaseException:
            await pipeline.settle()
            raise

    async def download(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        image_id = request.match_info["image_id"]
        record = self._visible(tenant, image_id)
        allow = record.get("nhncloud_allow_download")
        if allow is not None and allow != "true":
            raise HttpError(403, "Download of this image is not allowed.")
        size = record.get("size")
        path = self.store.data_path(image_id)
        if record["status"] != "active" or size is None:
            return web.Response(status=204)
        if "," in request.headers.get("Range", ""):
            raise HttpError(400, "Requests with multiple ranges are not supported.")
        try:
            offset, length, partial = resolve_range(request.http_range, size)
        except (ValueError, RangeError):
            # As Glance answers it: no Content-Range (RFC 9110 would have bytes */size).
            raise HttpError(416, "The Range requested is not available.") from None
        headers = {
            "Content-MD5": str(record["checksum"]),
            "Content-Type": "application/octet-stream",
        }
        if self._injector.faults.downloads_untouched:
            # sendfile(2) through aiohttp; it applies the same Range rules as resolve_range.
            self.counters.bytes_served += length
            return web.FileResponse(path, chunk_size=CHUNK, headers=headers)
        return await self._faulty_download(request, path, offset, length, partial, size, headers)

    async def _faulty_download(
        self,
        request: web.Request,
        path: Path,
        offset: int,
        length: int,
        partial: bool,
        size: int,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        resp = web.StreamResponse(status=206 if partial else 200, headers=headers)
        resp.headers["Accept-Ranges"] = "bytes"
        if partial:
            resp.headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{size}"
        resp.content_length = length
        cut = self._injector.download_cut(length)
        flip = self._injector.corruption_offset(length)
        pacer = Pacer(self._injector.faults.bandwidth)
        limit = length if cut is None else cut
        fobj = await loop.run_in_executor(self._executor, open, path, "rb")
        try:
            await resp.prepare(request)
            sent = 0
            while sent < limit:
                want = min(pacer.piece_size(CHUNK), limit - sent)
                data = await loop.run_in_executor(
                    self._executor, read_piece, fobj, offset + sent, want
                )
                if not data:
                    break
                if flip is not None and sent <= flip < sent + len(data):
                    flipped = bytearray(data)
                    flipped[flip - sent] ^= 0xFF
                    data = bytes(flipped)
                await resp.write(data)
                sent += len(data)
                self.counters.bytes_served += len(data)
                await pacer.pace(len(data))
            if cut is not None:
                _close_connection(request)
                return resp
            await resp.write_eof()
        except ConnectionError:
            pass  # the client went away; nothing left to answer
        finally:
            await loop.run_in_executor(self._executor, fobj.close)
        return resp

    # -- tags ----------------------------------------------------------------------------

    async def add_tag(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        record = self._changeable(tenant, request.match_info["image_id"])
        tag = schema.check_tag(request.match_info["tag"])
        if tag not in record["tags"]:
            record["tags"] = [*record["tags"], tag]
            record["updated_at"] = now()
            self.store.changed()
        return web.Response(status=204)

    async def remove_tag(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        record = self._changeable(tenant, request.match_info["image_id"])
        tag = request.match_info["tag"]
        if tag not in record["tags"]:
            raise HttpError(404, f"Tag {tag!r} not found on the image.")
        record["tags"] = [t for t in record["tags"] if t != tag]
        record["updated_at"] = now()
        self.store.changed()
        return web.Response(status=204)

    # -- members -------------------------------------------------------------------------

    def _members_of(self, image_id: str) -> dict[str, dict[str, Any]]:
        return self.store.members.setdefault(image_id, {})

    async def add_member(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        image_id = request.match_info["image_id"]
        record = self._visible(tenant, image_id)
        if record["owner"] != tenant:
            raise HttpError(403, "Only the image's owner may share it.")
        if record["visibility"] != "shared":
            raise HttpError(403, "Only images with visibility 'shared' can have members.")
        body = await self._json_body(request)
        member_id = body.get("member") if isinstance(body, dict) else None
        if not isinstance(member_id, str) or not member_id:
            raise HttpError(400, 'Expected a body {"member": "<tenant id>"}.')
        members = self._members_of(image_id)
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
        self.store.changed()
        return json_response(member)

    def _shared(self, tenant: str, image_id: str, *, hidden: bool = False) -> dict[str, Any]:
        """An image the caller sees whose members may be used: only ``shared`` images have
        any (403, or 404 where Glance hides the image's existence)."""
        record = self._visible(tenant, image_id)
        if record["visibility"] != "shared":
            raise HttpError(404 if hidden else 403, "Only shared images have members.")
        return record

    def _member_view_access(
        self, request: web.Request, *, hidden: bool = False
    ) -> tuple[str, dict[str, Any]]:
        tenant = self._tenant(request)
        return tenant, self._shared(tenant, request.match_info["image_id"], hidden=hidden)

    async def list_members(self, request: web.Request) -> web.StreamResponse:
        tenant, record = self._member_view_access(request)
        members = self.store.members.get(record["id"], {})
        listed = [
            m for m in members.values() if record["owner"] == tenant or m["member_id"] == tenant
        ]
        return json_response({"members": listed, "schema": "/v2/schemas/members"})

    async def show_member(self, request: web.Request) -> web.StreamResponse:
        tenant, record = self._member_view_access(request, hidden=True)
        member_id = request.match_info["member_id"]
        member = self.store.members.get(record["id"], {}).get(member_id)
        if member is None or (record["owner"] != tenant and member_id != tenant):
            raise HttpError(404, f"Member {member_id} not found for image {record['id']}.")
        return json_response(member)

    async def update_member(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        record = self._shared(tenant, request.match_info["image_id"])
        member_id = request.match_info["member_id"]
        if record["owner"] == tenant:
            raise HttpError(403, "Only the member itself may change its status.")
        member = self.store.members.get(record["id"], {}).get(member_id)
        if member is None:
            raise HttpError(404, f"Member {member_id} not found for image {record['id']}.")
        if member_id != tenant:
            raise HttpError(403, "Only the member itself may change its status.")
        body = await self._json_body(request)
        status = body.get("status") if isinstance(body, dict) else None
        if status not in ("accepted", "pending", "rejected"):
            raise HttpError(400, "Member status must be one of accepted, pending, rejected.")
        if member["status"] != status:
            member["status"] = status
            member["updated_at"] = now()
            self.store.changed()
        return json_response(member)

    async def remove_member(self, request: web.Request) -> web.StreamResponse:
        tenant = self._tenant(request)
        record = self._shared(tenant, request.match_info["image_id"])
        if record["owner"] != tenant:
            raise HttpError(403, "Only the image's owner may remove a member.")
        member_id = request.match_info["member_id"]
        members = self.store.members.get(record["id"], {})
        if member_id not in members:
            raise HttpError(404, f"Member {member_id} not found for image {record['id']}.")
        del members[member_id]
        self.store.changed()
        return web.Response(status=204)


class _Dropped(Exception):
    """An injected fault cut the connection."""


def _close_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        # close() sends what is already buffered, then ends the connection mid-body.
        transport.close()


def _strict_loads(text: str) -> Any:
    def reject_constant(name: str) -> Any:
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=reject_constant)
