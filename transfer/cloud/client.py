"""The Image API client: one typed method per Image API call, and ``Download``, a streamed body.

``ImageClient`` is one region of the Image API as one tenant sees it.  It builds the URLs, the
bodies and the JSON patches, follows pagination, and decides which calls may be repeated
safely (see its docstring); the transport (``transfer.cloud.transport``) sends them.  The token
only ever goes to the origin of the endpoint the client was built for: redirects are never
followed, and a ``next`` link to another origin is refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Unpack
from urllib.parse import quote

import aiohttp
import yarl

from transfer.cloud.retry import RetryState, exhausted
from transfer.cloud.transport import (
    NETWORK_ERRORS,
    CallOptions,
    HttpTransport,
    Reply,
    Retry,
    TokenSource,
    Tries,
    translate,
)
from transfer.errors import (
    ConfigError,
    Conflict,
    IntegrityError,
    NotFound,
    ProtocolError,
    TransferError,
    TransportError,
)
from transfer.log import get_logger
from transfer.metadata import MARKER_KEYS
from transfer.models import Image, Member, PatchOp

log = get_logger("transfer.cloud.client")

JSON_PATCH_TYPE = "application/openstack-images-v2.1-json-patch"

#: Query parameters ``GET /v2/images`` understands (NHN's list plus upstream's).
IMAGE_FILTERS: frozenset[str] = frozenset(
    {
        "name",
        "visibility",
        "owner",
        "status",
        "size_min",
        "size_max",
        "nhncloud_product",
        "sort_key",
        "sort_dir",
        "member_status",
        "tag",
        "marker",
    }
)
#: Custom properties a listing may filter on too (Glance matches any other key against the
#: images' properties): a takeover looks for a pair's copies by the job's markers.
PROPERTY_FILTERS: frozenset[str] = frozenset(MARKER_KEYS)


def _content_md5(value: str | None, where: str) -> str | None:
    """Content-MD5 as lower-case hex (Glance sends hex; RFC 1864 says base64: accept both)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{32}", value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise ProtocolError(f"{where}: unreadable Content-MD5 header {value[:40]!r}")
    return raw.hex()


def _content_range(value: str | None, where: str) -> tuple[int, int, int | None]:
    """``bytes first-last/total`` -> (first, last, total or None for ``*``)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if match is None:
        raise ProtocolError(f"{where}: 206 without a readable Content-Range ({value!r})")
    total = None if match[3] == "*" else int(match[3])
    return int(match[1]), int(match[2]), total


class Download:
    """One image download in progress: what the server said, and the body as a stream."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        where: str,
        requested_offset: int,
        chunk_size: int,
    ) -> None:
        self._response = response
        self._where = where
        self._chunk_size = chunk_size
        self._consumed = False
        self.status: int = response.status
        self.offset: int
        self.length: int | None
        self.total_size: int | None
        self.content_md5 = _content_md5(response.headers.get("Content-MD5"), where)
        header_length = response.headers.get("Content-Length")
        length = int(header_length) if header_length and header_length.isdigit() else None
        if self.status == 204:
            self.offset, self.length, self.total_size = 0, 0, None
        elif self.status == 206:
            first, last, total = _content_range(response.headers.get("Content-Range"), where)
            if first != requested_offset:
                raise ProtocolError(
                    f"{where}: asked for bytes from {requested_offset}, "
                    f"the server sent them from {first}"
                )
            self.offset = first
            self.length = length if length is not None else last - first + 1
            self.total_size = total
        else:
            # A 200 to a Range request means the server ignored the range: the body starts at 0.
            self.offset, self.length, self.total_size = 0, length, length

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body in chunks of up to ``chunk_size``; a body cut short raises TransportError."""
        if self._consumed:
            raise RuntimeError("a download's body can be read once only")
        self._consumed = True
        received = 0
        reader = self._response.content.iter_chunked(self._chunk_size)
        url = self._response.url
        while True:
            try:
                chunk = await reader.__anext__()
            except StopAsyncIteration:
                break
            except NETWORK_ERRORS as exc:
                error = translate(exc, self._where, url)
                raise type(error)(f"{error} after {received} of {self.length} bytes") from exc
            received += len(chunk)
            yield chunk
        if self.length is not None and received != self.length:
            raise TransportError(
                f"{self._where}: the body was cut short after {received} of {self.length} bytes"
            )


def _segment(value: str) -> str:
    return quote(value, safe="")


class ImageClient:
    """The Image API of one region, as one tenant sees it.

    Retries (see ``HttpTransport.call``) are used only where repeating is safe:
    - GET, PATCH, DELETE, PUT of a tag or member status: always.  A repeated DELETE that meets a
      404, or a repeated PATCH that meets a 409, after an attempt whose outcome is unknown, is
      checked and treated as done when the first attempt evidently took effect.
    - ``create_image``: when ``fields`` carries an ``id`` the create is retried, and a 409 after
      an uncertain attempt fetches that id and returns it if it is ours (same owner and name), so
      a lost answer never leaves a duplicate.  Without an ``id`` only failures where nothing
      reached the server (connection refused, DNS, connect timeout, 429) are retried: a create
      never runs twice, at the price of surfacing other failures to the caller.
    - ``add_member``: retried; a 409 after an uncertain attempt returns the existing member.
    - ``upload_image`` from a ``Path``: re-read and re-sent after the image is back to
      ``queued``; if it is ``active`` by then, the lost answer was a success (the caller verifies
      the checksum in any case).  From an async iterable: sent once (the stream is consumed).
    """

    def __init__(
        self,
        transport: HttpTransport,
        auth: TokenSource,
        *,
        region: str,
        endpoint: str,
        tenant_id: str | None = None,
    ) -> None:
        self.region = region
        self.endpoint = endpoint.rstrip("/")
        self._transport = transport
        self._auth = auth
        self._tenant_id = tenant_id
        base = yarl.URL(self.endpoint)
        if base.scheme not in ("http", "https") or not base.host:
            raise ConfigError(f"image endpoint for region {region} is not an http(s) URL")
        self._origin = base.origin()
        self._base = self.endpoint + "/v2"

    def __repr__(self) -> str:
        return f"ImageClient(region={self.region!r}, endpoint={self.endpoint!r})"

    # -- plumbing -----------------------------------------------------------------------------

    def _url(self, *segments: str) -> yarl.URL:
        path = "/".join(_segment(s) for s in segments)
        return yarl.URL(f"{self._base}/{path}", encoded=True)

    async def _call(
        self, method: str, url: yarl.URL, *, ok: Collection[int], **options: Unpack[CallOptions]
    ) -> Reply:
        if url.origin() != self._origin:
            # The token may only go where it was issued for.
            raise ProtocolError(
                f"{method} {url.path}: refusing to send the token to {url.host}, "
                f"which is not the image endpoint of {self.region} ({self._origin.host})"
            )
        return await self._transport.call(method, url, auth=self._auth, ok=ok, **options)

    async def _json_call(
        self,
        method: str,
        url: yarl.URL,
        *,
        ok: Collection[int] = (200,),
        payload: Any = None,
        content_type: str = "application/json",
        mode: Retry = Retry.SAFE,
        params: Sequence[tuple[str, str]] | None = None,
        tries: Tries | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = content_type
        reply = await self._call(
            method, url, ok=ok, mode=mode, params=params, headers=headers, body=body, tries=tries
        )
        return self._transport.parse_json(reply, f"{method} {url.path}")

    def _resolve_next(self, link: Any, where: str) -> yarl.URL:
        if not isinstance(link, str) or not link:
            raise ProtocolError(f"{where}: malformed 'next' link {link!r}")
        target = yarl.URL(link, encoded=True)
        if target.is_absolute():
            if target.origin() != self._origin:
                raise ProtocolError(
                    f"{where}: the 'next' link points to another host ({target.host}); "
                    "not following it, so the token is not sent there"
                )
            return target
        if link.startswith("/v2/"):
            # Glance writes the version path from the root; the endpoint may carry a prefix.
            return yarl.URL(self.endpoint + link, encoded=True)
        return yarl.URL(self._base + "/images", encoded=True).join(target)

    # -- images -------------------------------------------------------------------------------

    async def list_images(
        self, *, page_size: int = 1000, **filters: str | int | Sequence[str]
    ) -> AsyncGenerator[Image, None]:
        """Every image matching ``filters``, page after page (``tag`` may be a sequence)."""
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        params: list[tuple[str, str]] = [("limit", str(page_size))]
        for key, value in filters.items():
            if key not in IMAGE_FILTERS and key not in PROPERTY_FILTERS:
                raise TypeError(f"unknown image filter {key!r}")
            if isinstance(value, str | int) and not isinstance(value, bool):
                params.append((key, str(value)))
            elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
                params.extend((key, v) for v in value)
            else:
                raise TypeError(f"image filter {key!r} must be a string, an integer or strings")
        url: yarl.URL | None = self._url("images")
        query: list[tuple[str, str]] | None = params
        seen: set[str] = set()
        while url is not None:
            where = f"GET {url.path}"
            data = await self._json_call("GET", url, params=query)
            if not isinstance(data, dict) or not isinstance(data.get("images"), list):
                raise ProtocolError(f"{where}: the answer has no 'images' list")
            try:
                page = [Image.from_api(item) for item in data["images"]]
            except ProtocolError as exc:
                raise ProtocolError(f"{where} on {self.region} ({url.host}): {exc}") from None
            for image in page:
                yield image
            link = data.get("next")
            if not page or not link:
                return
            url = self._resolve_next(link, where)
            if str(url) in seen:
                raise ProtocolError(f"{where}: the 'next' link repeats itself ({url.path_qs})")
            seen.add(str(url))
            query = None

    async def get_image(self, image_id: str) -> Image:
        url = self._url("images", image_id)
        data = await self._json_call("GET", url)
        try:
            return Image.from_api(data)
        except ProtocolError as exc:
            raise ProtocolError(f"GET {url.path} on {self.region}: {exc}") from None

    async def create_image(self, fields: Mapping[str, Any]) -> Image:
        """Create an image record (status ``queued``); see the class docstring on duplicates."""
        chosen_id = fields.get("id")
        tries = Tries()
        mode = Retry.SAFE if isinstance(chosen_id, str) and chosen_id else Retry.ONCE
        try:
            data = await self._json_call(
                "POST",
                self._url("images"),
                ok=(201, 200),
                payload=dict(fields),
                mode=mode,
                tries=tries,
            )
        except Conflict:
            if mode is not Retry.SAFE or not tries.uncertain:
                raise
            assert isinstance(chosen_id, str)
            existing = await self.get_image(chosen_id)
            ours = self._tenant_id is None or existing.owner == self._tenant_id
            if ours and existing.name == fields.get("name"):
                return existing
            raise
        return Image.from_api(data)

    async def update_image(self, image_id: str, patch: Sequence[PatchOp]) -> Image:
        url = self._url("images", image_id)
        tries = Tries()
        try:
            data = await self._json_call(
                "PATCH", url, payload=list(patch), content_type=JSON_PATCH_TYPE, tries=tries
            )
        except Conflict:
            if not tries.uncertain:
                raise
            # A remove or replace repeated after it took effect meets 409: check the result.
            current = await self.get_image(image_id)
            if _patch_applied(current, patch):
                return current
            raise
        return Image.from_api(data)

    async def delete_image(self, image_id: str) -> None:
        await self._delete(self._url("images", image_id))

    async def _delete(self, url: yarl.URL) -> None:
        tries = Tries()
        try:
            await self._call("DELETE", url, ok=(200, 204), tries=tries)
        except NotFound:
            if not tries.uncertain:
                raise

    async def upload_image(
        self,
        image_id: str,
        data: AsyncIterable[bytes] | Path,
        *,
        size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Send the image's bytes (the image must be ``queued``).

        ``size`` becomes Content-Length (a Path's size is read from the file); without it the
        body is sent chunked.  ``progress`` is called with each chunk's length as it is read for
        sending (a retried Path upload starts again from zero).
        """
        url = self._url("images", image_id, "file")
        headers = {"Content-Type": "application/octet-stream"}
        if isinstance(data, Path):
            await self._upload_file(image_id, url, headers, data, size, progress)
            return
        if size is not None:
            headers["Content-Length"] = str(size)
        body: AsyncIterable[bytes] = data if progress is None else _counting(data, progress)
        await self._call(
            "PUT", url, ok=(204, 200, 201), mode=Retry.UNSENT, headers=headers, body=body
        )

    async def _upload_file(
        self,
        image_id: str,
        url: yarl.URL,
        headers: dict[str, str],
        path: Path,
        size: int | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        try:
            file_size = (await asyncio.to_thread(path.stat)).st_size
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        if size is not None and size != file_size:
            raise IntegrityError(f"{path} holds {file_size} bytes, expected {size}")
        headers["Content-Length"] = str(file_size)
        chunk_size = self._transport.settings.chunk_size

        def body() -> AsyncIterable[bytes]:
            return _read_file(path, chunk_size, progress)

        state = RetryState(self._transport.retry_policy)
        while True:
            try:
                await self._call(
                    "PUT", url, ok=(204, 200, 201), mode=Retry.UNSENT, headers=headers, body=body
                )
                return
            except TransferError as error:
                if not error.retryable:
                    raise
                delay = state.next_delay(error)
                if delay is None:
                    raise exhausted(error, state) from error
                log.debug("http.retry", method="PUT", path=url.path, attempt=state.attempt)
                await asyncio.sleep(delay)
                status = await self._settled_status(image_id, state)
                if status == "active":
                    return
                if status != "queued":
                    raise

    async def _settled_status(self, image_id: str, state: RetryState) -> str:
        """The image's status once it has left ``saving`` (a failed upload returns to queued)."""
        while True:
            status = (await self.get_image(image_id)).status
            if status != "saving" or state.elapsed() > state.policy.total:
                return status
            await asyncio.sleep(min(1.0, max(0.05, state.policy.base)))

    def download_image(
        self, image_id: str, *, offset: int = 0
    ) -> AbstractAsyncContextManager[Download]:
        """Open the image's body, from ``offset`` on (a Range request); use ``async with``."""
        if offset < 0:
            raise ValueError("offset must not be negative")
        return self._download(image_id, offset)

    @asynccontextmanager
    async def _download(self, image_id: str, offset: int) -> AsyncIterator[Download]:
        url = self._url("images", image_id, "file")
        headers = {"Range": f"bytes={offset}-"} if offset else None
        reply = await self._call("GET", url, ok=(200, 204, 206), headers=headers, stream=True)
        response = reply.response
        assert response is not None
        try:
            yield Download(
                response,
                where=f"GET {url.path}",
                requested_offset=offset,
                chunk_size=self._transport.settings.chunk_size,
            )
        except BaseException:
            response.close()  # a half-read body: drop the connection rather than reuse it
            raise
        finally:
            response.release()

    # -- tags -----------------------------------------------------------------------------

    async def add_tag(self, image_id: str, tag: str) -> None:
        await self._call("PUT", self._url("images", image_id, "tags", tag), ok=(204, 200))

    async def remove_tag(self, image_id: str, tag: str) -> None:
        await self._delete(self._url("images", image_id, "tags", tag))

    # -- members ------------------------------------------------------------------------------

    async def add_member(self, image_id: str, member_id: str) -> Member:
        tries = Tries()
        try:
            data = await self._json_call(
                "POST",
                self._url("images", image_id, "members"),
                payload={"member": member_id},
                tries=tries,
            )
        except Conflict:
            if not tries.uncertain:
                raise
            return await self.get_member(image_id, member_id)
        return Member.from_api(data)

    async def list_members(self, image_id: str) -> list[Member]:
        url = self._url("images", image_id, "members")
        data = await self._json_call("GET", url)
        if not isinstance(data, dict) or not isinstance(data.get("members"), list):
            raise ProtocolError(f"GET {url.path}: the answer has no 'members' list")
        return [Member.from_api(item) for item in data["members"]]

    async def get_member(self, image_id: str, member_id: str) -> Member:
        url = self._url("images", image_id, "members", member_id)
        return Member.from_api(await self._json_call("GET", url))

    async def update_member(self, image_id: str, member_id: str, status: str) -> Member:
        url = self._url("images", image_id, "members", member_id)
        return Member.from_api(await self._json_call("PUT", url, payload={"status": status}))

    async def delete_member(self, image_id: str, member_id: str) -> None:
        await self._delete(self._url("images", image_id, "members", member_id))


def _patch_applied(image: Image, patch: Sequence[PatchOp]) -> bool:
    """Whether ``image`` already looks as ``patch`` would leave it (top-level keys only)."""
    for op in patch:
        key = op.get("path", "").lstrip("/").replace("~1", "/").replace("~0", "~")
        if op.get("op") == "remove":
            if key in image.raw:
                return False
        elif image.raw.get(key) != op.get("value"):
            return False
    return True


async def _counting(
    data: AsyncIterable[bytes], progress: Callable[[int], None]
) -> AsyncIterator[bytes]:
    async for chunk in data:
        progress(len(chunk))
        yield chunk


async def _read_file(
    path: Path, chunk_size: int, progress: Callable[[int], None] | None
) -> AsyncIterator[bytes]:
    # Reads run in a worker thread so a slow disk never stalls the event loop.
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while True:
            chunk = await asyncio.to_thread(handle.read, chunk_size)
            if not chunk:
                return
            if progress is not None:
                progress(len(chunk))
            yield chunk
    finally:
        handle.close()
