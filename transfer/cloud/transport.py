"""The HTTP transport: the only code in the project that speaks HTTP.

``HttpTransport`` owns one aiohttp session and its pool per tenant, and the retry loop every
request goes through (backoff with full jitter, ``Retry-After``, one token re-issue on 401,
and only the repeats that are safe: see ``Retry``).  ``translate`` is the one place where
aiohttp, OS and asyncio exceptions become ``transfer.errors``; HTTP error statuses are mapped
next to it in ``_status_error``.  What each error allows (retry, fatal) is declared on its
class in ``transfer.errors``.

The transport attaches the token to the URLs the client asks for (the client checks their
origin).  No message or log line carries a token or a password: messages are built from the
method, the URL path and the server's own text, and any known secret is scrubbed from the
latter.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import enum
import json
import re
import ssl
import time
from collections.abc import (
    AsyncIterable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypedDict

import aiohttp
import anyio
import yarl
from multidict import CIMultiDictProxy

from transfer import __version__
from transfer.cloud.retry import RetryPolicy, RetryState, exhausted
from transfer.config.settings import HttpSettings
from transfer.errors import (
    ConnectError,
    ConnectTimeout,
    ProtocolError,
    RequestTimeout,
    TlsVerificationError,
    TransferError,
    TransportError,
    Unauthorized,
    api_error_class,
)
from transfer.log import get_logger
from transfer.streams import TokenBucket, keep_large_buffers_in_heap

log = get_logger("transfer.cloud.transport")

_MAX_ERROR_BODY = 64 * 1024
_MESSAGE_CHARS = 300


class TokenSource(Protocol):
    """What the transport needs from authentication (``transfer.cloud.auth`` implements it)."""

    async def token(self) -> str:
        """A token that is valid for a while yet (issued or re-issued as needed)."""
        ...

    async def reissue(self, failed: str, error: Unauthorized) -> None:
        """React to a 401 for ``failed``: re-issue it if it is still the current token, or
        raise (a pre-issued token cannot be renewed)."""
        ...


class CallGuard(Protocol):
    """Asked before every attempt of a request that changes something (any method but GET
    and HEAD): a worker holding an item under a lease refuses calls its lease has no time
    left for."""

    def admit(self, method: str, url: yarl.URL, *, streamed: bool) -> float | None:
        """Raise to refuse the attempt; else the seconds it may take (None: no limit here,
        for a streamed body, which the caller cancels itself)."""
        ...


#: The guard of the calls the current task makes (a context variable: every task has its own,
#: and one set while an item's pipeline runs covers every call made for that item).
CALL_GUARD: ContextVar[CallGuard | None] = ContextVar("transfer_call_guard", default=None)
_READ_METHODS = frozenset({"GET", "HEAD"})


class Retry(enum.Enum):
    """Which failures of a request may be repeated."""

    SAFE = "safe"  # the call is idempotent: any retryable error
    UNSENT = "unsent"  # only failures where the server cannot have acted on the request
    #: As UNSENT, on a connection of its own: for a call whose repeat could make a second
    #: resource (a create without a chosen id), which a pooled connection the server closed
    #: while idle could fail after sending.  An upload needs no such care (Glance takes one
    #: image's bytes once; an upload that failed half-way is found out by the image's next
    #: attempt), so it reuses a pooled connection: over a real link a new one costs the TCP
    #: and TLS handshakes, two round trips per image.
    ONCE = "once"


@dataclass
class Tries:
    """Filled in by the retry loop: whether an earlier attempt may have taken effect."""

    uncertain: bool = False


BodySource = Callable[[], AsyncIterable[bytes]]
Body = bytes | BodySource | AsyncIterable[bytes] | None


class CallOptions(TypedDict, total=False):
    """The options of ``HttpTransport.call`` besides the method, URL, auth and accepted statuses
    (for callers that pass them on)."""

    mode: Retry
    params: Sequence[tuple[str, str]] | None
    headers: Mapping[str, str] | None
    body: Body
    stream: bool
    tries: Tries | None


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
    Keystone and Nova-style bodies nest it), else the text of the body, else the reason phrase.

    Glance's webob bodies carry HTML even in JSON (``...<br /><br />``), escape quotes
    (``&#x27;``) and repeat the status line (in the title and the heading of an HTML page):
    the message keeps only the words."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        candidates = [data.get("message")]
        candidates += [v.get("message") for v in data.values() if isinstance(v, dict)]
        for message in candidates:
            if isinstance(message, str) and (words := _plain(message, status, reason)):
                return _collapse(words)
    words = _plain(_collapse(text, 4 * _MESSAGE_CHARS), status, reason)
    return _collapse(words) if words else (reason or "")


def _plain(text: str, status: int, reason: str | None) -> str:
    """``text`` without markup, entities or leading repeats of the status line."""
    import html  # an error page's entities only: html.entities is a large table to load

    text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    status_line = re.compile(rf"^\s*{status}\s+{re.escape(reason or '')}\s*")
    while (shorter := status_line.sub("", text, count=1)) != text:
        text = shorter
    return " ".join(text.split())


def translate(
    exc: BaseException, where: str, url: yarl.URL, cloud: str | None = None
) -> TransferError:
    """The one mapping of aiohttp, OS and asyncio exceptions into the project's errors (their
    message starts with the cloud's name when it is known)."""
    # A request body that failed (an upload fed by a source download that broke) reaches us
    # wrapped in aiohttp's connection error: the body's own error is the truth, with its own
    # retry class and the source's name in it, not the target's.
    cause: BaseException | None = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, TransferError):
            return cause
        cause = cause.__cause__ or cause.__context__
    host = f"{url.host}:{url.port}" if url.port else str(url.host)
    if cloud is not None:
        where = f"cloud '{cloud}': {where}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", None) or "verification failed"
        return TlsVerificationError(
            f"{where}: the TLS certificate of {host} is not trusted: {reason}"
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(f"{where}: connecting to {host} timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        if isinstance(exc.os_error, ConnectionRefusedError):
            reason = "connection refused (nothing listens there)"
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


NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


class HttpTransport:
    """One aiohttp session with its pool, and the retry loop every request goes through."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        ssl_context: ssl.SSLContext | bool = True,
        cloud: str | None = None,
    ):
        self.settings = settings
        self.cloud = cloud  # named in the messages of connection errors
        self.retry_policy = RetryPolicy(
            attempts=settings.attempts,
            base=settings.backoff_base,
            cap=settings.backoff_cap,
            total=settings.retry_total,
        )
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
        # Requests that may not be repeated once sent (``Retry.ONCE``: a create without a
        # chosen id) go on a connection of their own: a pooled one the server closed while
        # idle would fail them after sending, and nothing could tell whether the server acted.
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
        policy: RetryPolicy | None = None,
    ) -> Reply:
        """Send a request until it succeeds, fails for good, or the retry budget is spent
        (``policy``'s, else the transport's).

        ``stream`` leaves the response open in ``Reply.response`` (the caller releases it).
        An ``AsyncIterable`` body can be sent once only, so after a 401 the token is renewed
        but the error is raised; a ``BodySource`` makes a fresh body for every attempt.
        """
        state = RetryState(policy or self.retry_policy)
        replayable = body is None or isinstance(body, bytes) or callable(body)
        reissued = False
        while True:
            token = await auth.token() if auth is not None else None
            if self._pace is not None:
                await self._pace.consume(1)
            guard = CALL_GUARD.get() if method not in _READ_METHODS else None
            budget = guard.admit(method, url, streamed=not replayable) if guard else None
            started = time.monotonic()
            error: TransferError
            # No scope without a budget: a scope costs a little on every request, and the first
            # one would import anyio's event loop backend (``images`` runs on asyncio alone).
            limit = anyio.fail_after(budget) if budget is not None else contextlib.nullcontext()
            try:
                with limit:
                    reply = await self._attempt(
                        method, url, token, params, headers, body, ok, stream, mode is Retry.ONCE
                    )
            except TimeoutError:
                error = RequestTimeout(
                    f"{method} {url.path}: no answer within the {budget:g} s a call may take "
                    "under a lease"
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
            may_retry = error.retryable and (mode is Retry.SAFE or error.unsent)
            if not may_retry:
                raise error
            delay = state.next_delay(error)
            if delay is None:
                raise exhausted(error, state) from error
            if tries is not None and not error.unsent:
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
        if stream or (body is not None and not isinstance(body, bytes)):
            # Image bodies move in large buffers; see keep_large_buffers_in_heap (once).
            keep_large_buffers_in_heap()
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
        except NETWORK_ERRORS as exc:
            raise translate(exc, where, url, self.cloud) from exc
        keep_open = False
        answered = False
        # Reading an error body hands the connection back to the pool: keep a hold on it.
        connection = response.connection
        transport = connection.transport if connection is not None else None
        try:
            if response.status not in ok:
                raise await self._status_error(response, where)
            if stream:
                keep_open = True
                return Reply(response.status, response.headers, b"", response)
            content = await response.read()
            answered = True
            return Reply(response.status, response.headers, content)
        except NETWORK_ERRORS as exc:
            raise translate(exc, where, url, self.cloud) from exc
        finally:
            if keep_open:
                pass
            elif data is not None and not answered:
                # A server that refuses a request before reading its body (Glance under
                # gunicorn does, for an upload it will not take) closes the connection after
                # its answer even when it says keep-alive, and a body cut off half-way leaves
                # it unusable: never hand such a connection back to the pool.  One whose
                # body was taken and answered goes back (the next image's calls reuse it).
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
