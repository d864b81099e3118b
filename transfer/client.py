"""The Image API client: the only code in the project that speaks HTTP.

It owns
- ``HttpSettings`` (timeouts, pool size, retry budget, chunk size);
- ``HttpTransport``: one aiohttp session, the per-request retry loop (backoff with jitter,
  ``Retry-After``, one token re-issue on 401) and ``_translate``, the one place where aiohttp, OS
  and asyncio exceptions become ``transfer.errors``; HTTP error statuses are mapped next to it in
  ``_status_error``;
- ``ImageClient``: one typed method per Image API call, and ``Download``, a streamed body.

The token is attached by the transport, and only ever to URLs on the origin of the endpoint the
client was built for: redirects are never followed, and a ``next`` link to another origin is
refused.  No message or log line carries a token or a password: messages are built from the
method, the URL path and the server's own text, and any known secret is scrubbed from the latter.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import enum
import json
import re
import ssl
import time
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import structlog
import yarl
from multidict import CIMultiDictProxy

from transfer import __version__
from transfer.errors import (
    ConfigError,
    Conflict,
    IntegrityError,
    NotFound,
    ProtocolError,
    RequestTimeout,
    TooManyRequests,
    TransferError,
    TransportError,
    Unauthorized,
    api_error_class,
)
from transfer.models import Image, Member, PatchOp
from transfer.retry import RetryPolicy, RetryState, exhausted
from transfer.streams import TokenBucket, keep_large_buffers_in_heap

log = structlog.get_logger("transfer.client")

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

_MAX_ERROR_BODY = 64 * 1024
_MESSAGE_CHARS = 300


@dataclass(frozen=True, kw_only=True)
class HttpSettings:
    """How the client talks HTTP: timeouts (seconds), pool size, retry budget, read size."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # idle time between two reads, not a whole-body deadline
    pool_per_host: int = 16
    attempts: int = 8
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_total: float = 300.0
    chunk_size: int = 1 << 20
    #: At most this many requests per second through one session (None: no cap), for tenants
    #: whose API is rate-limited.  Each attempt counts, retries included.
    requests_per_second: float | None = None

    def __post_init__(self) -> None:
        positive = ("connect_timeout", "read_timeout", "pool_per_host", "attempts", "chunk_size")
        problems = [
            f"http setting {name!r} must be positive, got {getattr(self, name)!r}"
            for name in positive
            if getattr(self, name) <= 0
        ]
        problems += [
            f"http setting {name!r} must not be negative, got {getattr(self, name)!r}"
            for name in ("backoff_base", "backoff_cap", "retry_total")
            if getattr(self, name) < 0
        ]
        if self.requests_per_second is not None and not self.requests_per_second > 0:
            problems.append(
                f"http setting 'requests_per_second' must be positive, "
                f"got {self.requests_per_second!r}"
            )
        if problems:
            raise ConfigError(problems[0], problems=problems)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.attempts,
            base=self.backoff_base,
            cap=self.backoff_cap,
            total=self.retry_total,
        )


class ConnectError(TransportError):
    """The connection could not be opened (refused, DNS, connect timeout): nothing was sent."""


class ConnectTimeout(ConnectError, RequestTimeout):
    """The TCP or TLS connect did not finish in time: nothing was sent."""


class TlsVerificationError(TransportError):
    """The server's certificate could not be verified: repeating cannot help, and it may be
    an interception, so it stops the run."""

    retryable = False
    fatal = True


class TokenSource(Protocol):
    """What the transport needs from authentication (``transfer.auth`` implements it)."""

    async def token(self) -> str:
        """A token that is valid for a while yet (issued or re-issued as needed)."""
        ...

    async def reissue(self, failed: str, error: Unauthorized) -> None:
        """React to a 401 for ``failed``: re-issue it if it is still the current token, or
        raise (a pre-issued token cannot be renewed)."""
        ...


class Retry(enum.Enum):
    """Which failures of a request may be repeated."""

    SAFE = "safe"  # the call is idempotent: any retryable error
    UNSENT = "unsent"  # only failures where the server cannot have acted on the request


@dataclass
class Tries:
    """Filled in by the retry loop: whether an earlier attempt may have taken effect."""

    uncertain: bool = False


BodySource = Callable[[], AsyncIterable[bytes]]
Body = bytes | BodySource | AsyncIterable[bytes] | None


@dataclass(frozen=True)
class Reply:
    """A successful answer: the body read in full, or ``response`` open when streaming."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    response: aiohttp.ClientResponse | None = field(default=None, repr=False)


def _collapse(text: str, limit: int = _MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait, from either form of ``Retry-After`` (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _server_message(body: bytes, status: int, reason: str | None) -> str:
    """The server's own explanation: a JSON ``message`` (top level or one level down, as
    Keystone and Nova-style bodies nest it), else the text with any HTML and status line
    stripped, else the reason phrase."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        message = data.get("message")
        if isinstance(message, str) and message.strip():
            return _collapse(message)
        for value in data.values():
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return _collapse(value["message"])
    text = re.sub(r"<[^>]*>", " ", text)
    text = _collapse(text, 4 * _MESSAGE_CHARS)
    # Glance's webob bodies repeat the status line ("404 Not Found ...") the error already says.
    text = re.sub(rf"^{status}\s+{re.escape(reason or '')}\s*", "", text).strip()
    return _collapse(text) if text else (reason or "")


def _translate(exc: BaseException, where: str, url: yarl.URL) -> TransferError:
    """The one mapping of aiohttp, OS and asyncio exceptions into the project's errors."""
    # A request body that failed (an upload fed by a source download that broke) reaches us
    # wrapped in aiohttp's connection error: the body's own error is the truth, with its own
    # retry class and the source's name in it, not the target's.
    cause: BaseException | None = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, TransferError):
            return cause
        cause = cause.__cause__ or cause.__context__
    host = f"{url.host}:{url.port}" if url.port else str(url.host)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", None) or "verification failed"
        return TlsVerificationError(
            f"{where}: the TLS certificate of {host} is not trusted: {reason}"
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(f"{where}: connecting to {host} timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return ConnectError(f"{where}: cannot connect to {host}: {reason}")
    if isinstance(exc, TimeoutError):
        return RequestTimeout(f"{where}: {host} sent nothing for too long (read timeout)")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(f"{where}: the body from {host} was cut short")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError(f"{where}: {host} closed the connection")
    if isinstance(exc, aiohttp.InvalidURL):
        return ProtocolError(f"{where}: invalid URL for {host}")
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
        return TransportError(f"{where}: connection to {host} failed: {reason}")
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"{where}: connection to {host} failed: {type(exc).__name__}")
    return TransportError(f"{where}: {type(exc).__name__}")


_NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


class HttpTransport:
    """One aiohttp session with its pool, and the retry loop every request goes through."""

    def __init__(self, settings: HttpSettings, *, ssl_context: ssl.SSLContext | bool = True):
        self.settings = settings
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None
        self._secrets: set[str] = set()
        # A bucket of request "tokens": one request may go per 1/rate seconds, no bursts.
        rate = settings.requests_per_second
        self._pace = TokenBucket(rate, burst=1) if rate is not None else None

    async def open(self) -> None:
        if self._session is not None:
            return
        # Image bodies move in large buffers; see keep_large_buffers_in_heap.
        keep_large_buffers_in_heap()
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=self.settings.pool_per_host, ssl=self._ssl
        )
        # sock_connect, not connect: the latter also counts the wait for a pooled connection,
        # which is long and healthy when many transfers share one host.
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.connect_timeout,
            sock_read=self.settings.read_timeout,
        )
        common: dict[str, Any] = {
            "timeout": timeout,
            "read_bufsize": 1 << 20,
            # identity: image bytes must arrive as stored, and bodies are parsed as sent.
            "headers": {
                "User-Agent": f"image-transfer/{__version__}",
                "Accept-Encoding": "identity",
            },
            "auto_decompress": False,
        }
        self._session = aiohttp.ClientSession(connector=connector, **common)
        # Requests that may not be repeated once sent (a create without a chosen id) go on a
        # connection of their own: a pooled one the server closed while idle would fail them
        # after sending, and nothing could tell whether the server acted on it.
        self._fresh = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, ssl=self._ssl), **common
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._fresh is not None:
            await self._fresh.close()
            self._fresh = None

    def register_secret(self, value: str) -> None:
        """Remember a value (token, password) to scrub from any text a server sends back."""
        if value:
            self._secrets.add(value)

    def forget_secret(self, value: str) -> None:
        self._secrets.discard(value)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    async def call(
        self,
        method: str,
        url: yarl.URL,
        *,
        auth: TokenSource | None,
        ok: Collection[int],
        mode: Retry = Retry.SAFE,
        params: Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        tries: Tries | None = None,
    ) -> Reply:
        """Send a request until it succeeds, fails for good, or the retry budget is spent.

        ``stream`` leaves the response open in ``Reply.response`` (the caller releases it).
        An ``AsyncIterable`` body can be sent once only, so after a 401 the token is renewed
        but the error is raised; a ``BodySource`` makes a fresh body for every attempt.
        """
        state = RetryState(self.settings.retry_policy)
        replayable = body is None or isinstance(body, bytes) or callable(body)
        reissued = False
        while True:
            token = await auth.token() if auth is not None else None
            if self._pace is not None:
                await self._pace.consume(1)
            started = time.monotonic()
            try:
                reply = await self._attempt(
                    method, url, token, params, headers, body, ok, stream, mode is Retry.UNSENT
                )
            except TransferError as exc:
                error = exc
            else:
                self._log(method, url, reply.status, state.attempt, started)
                return reply
            self._log(
                method, url, getattr(error, "status", type(error).__name__), state.attempt, started
            )
            if isinstance(error, Unauthorized) and auth is not None and token is not None:
                if reissued:
                    raise error
                reissued = True
                await auth.reissue(token, error)
                if not replayable:
                    raise error
                continue
            may_retry = error.retryable and (
                mode is Retry.SAFE or isinstance(error, ConnectError | TooManyRequests)
            )
            if not may_retry:
                raise error
            delay = state.next_delay(error)
            if delay is None:
                raise exhausted(error, state) from error
            if tries is not None and not isinstance(error, ConnectError | TooManyRequests):
                tries.uncertain = True
            log.debug(
                "http.retry",
                method=method,
                path=url.path,
                error=type(error).__name__,
                attempt=state.attempt,
                delay=round(delay, 3),
            )
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        method: str,
        url: yarl.URL,
        token: str | None,
        params: Sequence[tuple[str, str]] | None,
        headers: Mapping[str, str] | None,
        body: Body,
        ok: Collection[int],
        stream: bool,
        fresh: bool = False,
    ) -> Reply:
        session = self._fresh if fresh else self._session
        if session is None:
            raise RuntimeError("HttpTransport used outside its 'async with' block")
        where = f"{method} {url.path}"
        send_headers = dict(headers or {})
        if token is not None:
            send_headers["X-Auth-Token"] = token
        data = body() if callable(body) else body
        try:
            response = await session.request(
                method,
                url,
                params=params,
                headers=send_headers,
                data=data,
                allow_redirects=False,
            )
        except _NETWORK_ERRORS as exc:
            raise _translate(exc, where, url) from exc
        keep_open = False
        refused = False
        # Reading an error body hands the connection back to the pool: keep a hold on it.
        connection = response.connection
        transport = connection.transport if connection is not None else None
        try:
            if response.status not in ok:
                refused = True
                raise await self._status_error(response, where)
            if stream:
                keep_open = True
                return Reply(response.status, response.headers, b"", response)
            content = await response.read()
            return Reply(response.status, response.headers, content)
        except _NETWORK_ERRORS as exc:
            raise _translate(exc, where, url) from exc
        finally:
            if keep_open:
                pass
            elif (refused and data is not None) or not isinstance(data, bytes | None):
                # A server that refuses a request before reading its body (Glance under
                # gunicorn does, for an upload it will not take) closes the connection after
                # its answer even when it says keep-alive; after a streamed upload the same
                # can happen.  Never hand such a connection back to the pool (an upload is
                # big: one new connection per upload costs nothing that shows).
                response.close()
                if transport is not None:
                    transport.close()  # the pool drops a closed connection instead of reusing it
            else:
                response.release()

    async def _status_error(self, response: aiohttp.ClientResponse, where: str) -> TransferError:
        status = response.status
        if 300 <= status < 400:
            target = yarl.URL(response.headers.get("Location", ""))
            to = f" to {target.host}" if target.host else ""
            return ProtocolError(
                f"{where}: the server answered {status} (a redirect{to}); "
                "redirects are not followed, so the token is never sent on"
            )
        if status < 400:
            return ProtocolError(f"{where}: unexpected status {status}")
        chunks: list[bytes] = []
        size = 0
        while size < _MAX_ERROR_BODY:
            chunk = await response.content.read(_MAX_ERROR_BODY - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        message = self.scrub(_server_message(b"".join(chunks), status, response.reason))
        method, _, path = where.partition(" ")
        return api_error_class(status)(
            message,
            status=status,
            method=method,
            path=path,
            retry_after=_parse_retry_after(response.headers.get("Retry-After")),
        )

    def parse_json(self, reply: Reply, where: str) -> Any:
        try:
            return json.loads(reply.body)
        except ValueError as exc:
            snippet = self.scrub(_collapse(reply.body[:_MESSAGE_CHARS].decode("utf-8", "replace")))
            raise ProtocolError(
                f"{where}: the server answered {reply.status} with a body that is not JSON: "
                f"{snippet!r}"
            ) from exc

    @staticmethod
    def _log(method: str, url: yarl.URL, status: int | str, attempt: int, started: float) -> None:
        log.debug(
            "http.request",
            method=method,
            path=url.path,
            status=status,
            attempt=attempt,
            elapsed=round(time.monotonic() - started, 4),
        )


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
            except _NETWORK_ERRORS as exc:
                error = _translate(exc, self._where, url)
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
        self,
        method: str,
        url: yarl.URL,
        *,
        ok: Collection[int],
        mode: Retry = Retry.SAFE,
        params: Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        tries: Tries | None = None,
    ) -> Reply:
        if url.origin() != self._origin:
            # The token may only go where it was issued for.
            raise ProtocolError(
                f"{method} {url.path}: refusing to send the token to {url.host}, "
                f"which is not the image endpoint of {self.region} ({self._origin.host})"
            )
        return await self._transport.call(
            method,
            url,
            auth=self._auth,
            ok=ok,
            mode=mode,
            params=params,
            headers=headers,
            body=body,
            stream=stream,
            tries=tries,
        )

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
            if key not in IMAGE_FILTERS:
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
        mode = Retry.SAFE if isinstance(chosen_id, str) and chosen_id else Retry.UNSENT
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

        state = RetryState(self._transport.settings.retry_policy)
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
