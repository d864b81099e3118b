"""One region's image data routes, ``PUT`` and ``GET /v2/images/{id}/file``: the checks before
an upload, the status an image moves through while its bytes arrive, the size cap, and
downloads (``Range``, ``Content-MD5``), with the injected cuts, corruption and bandwidth.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from pathlib import Path

from aiohttp import web

from transfer.emulator import schema
from transfer.emulator.access import ImageAccess, media_type
from transfer.emulator.faults import FaultInjector
from transfer.emulator.flavours import Flavour
from transfer.emulator.middleware import Counters
from transfer.emulator.responses import HttpError, now
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


class ImageData:
    """The upload and download handlers of one region."""

    def __init__(
        self,
        store: RegionStore,
        access: ImageAccess,
        injector: FaultInjector,
        counters: Counters,
        *,
        executor: Executor,
        image_size_cap: int | None,
        flavour: Flavour,
    ) -> None:
        self._flavour = flavour
        self._store = store
        self._access = access
        self._injector = injector
        self._counters = counters
        self._executor = executor
        self._size_cap = image_size_cap

    # -- upload --------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.StreamResponse:
        tenant = self._access.tenant(request)
        image_id = request.match_info["image_id"]
        record = self._access.owned(tenant, image_id)
        if media_type(request) != "application/octet-stream":
            raise HttpError(415, "Image data must be sent as application/octet-stream.")
        if record["status"] == "deactivated":
            raise HttpError(
                409, "Image status transition from deactivated to saving is not allowed"
            )
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
            raise _too_large(cap)

        store = self._store
        record["status"] = "saving"
        record["updated_at"] = now()
        store.changed()
        sink = UploadSink(store.part_path(image_id), store.data_path(image_id))
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
                if store.get(image_id) is record and record["status"] == "saving":
                    record["status"] = "queued"  # a failed upload may be retried on this id
                    record["updated_at"] = now()
                    store.changed()
        if store.get(image_id) is not record:
            store.data_path(image_id).unlink(missing_ok=True)
            raise HttpError(410, "The image was deleted during the upload.")
        schema.mark_active(record, digest)
        store.changed()
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
                self._counters.bytes_received += len(chunk)
                if cap is not None and received > cap:
                    raise _too_large(cap)
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

    # -- download ------------------------------------------------------------------------

    async def download(self, request: web.Request) -> web.StreamResponse:
        tenant = self._access.tenant(request)
        image_id = request.match_info["image_id"]
        record = self._access.visible(tenant, image_id)
        if record["status"] == "deactivated":
            raise HttpError(
                403,
                "The requested image has been deactivated. Image data download is forbidden.",
            )
        allow = record.get("nhncloud_allow_download")
        if self._flavour.download_rule and allow is not None and allow != "true":
            raise HttpError(403, "Download of this image is not allowed.")
        size = record.get("size")
        path = self._store.data_path(image_id)
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
            self._counters.bytes_served += length
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
                self._counters.bytes_served += len(data)
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


class _Dropped(Exception):
    """An injected fault cut the connection."""


def _too_large(cap: int) -> HttpError:
    # Closing, not draining: the rest of an oversized body is not worth reading.
    return HttpError(413, f"Image exceeds the size cap of {cap} bytes.", close=True)


def _close_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        # close() sends what is already buffered, then ends the connection mid-body.
        transport.close()
