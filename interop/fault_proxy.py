"""A fault-injecting reverse proxy for one Glance region: ``FaultProxy``.

It forwards every request to its Glance and, while faults are on, rolls a seeded die for each
one (``Faults``):

- **latency**: a pause before the request goes on (uniform in ``latency``, 0-20 ms);
- **5xx**: an answer of 503, 502 or 500 instead of forwarding (Glance never sees the request),
  half of them with ``Retry-After``, the way a load balancer sheds load;
- **upload cut**: a request body (``PUT /v2/images/{id}/file``) is forwarded up to a random
  byte, then both connections are closed: Glance sees a client that hung up mid-upload, the
  client a connection broken while it was still sending;
- **download cut**: a response body (``GET /v2/images/{id}/file``) is relayed up to a random
  byte, then both connections are closed: the client sees a body cut short, Glance a reader
  that went away.

Faults are switched at run time (``proxy.enabled = False``, or ``proxy.faults = Faults(...)``)
and every injection is counted (``proxy.counters``).  With faults off it is transparent: the
method, path and query go on as sent, headers pass both ways except the hop-by-hop ones, and
bodies stream through in whatever pieces arrive, never held whole, so memory stays flat
whatever the image size.  The only header a proxy must rewrite, ``Host``, names Glance upstream
(so Glance's ``Location`` names its own address, as behind a proxy that does not preserve
``Host``; the engine never follows it).  Each upstream request has a connection of its own:
gunicorn closes a connection after answering an upload early, and a pooled one would add
failures that nobody injected.

The dice come from one ``random.Random(seed)`` per proxy, rolled once per request in arrival
order, so a seed replays the same fault mix; which request meets which fault still depends on
timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

#: Headers that belong to one connection, never forwarded (RFC 9110 7.6.1), plus ``Host``.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Headers aiohttp's client would add on its own: a transparent proxy sends only the client's.
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_DATA_PATH = re.compile(r"^/v2/images/[^/]+/file/?$")
#: Where a cut may fall in a body of unknown length (chunked), from its first byte.
_UNKNOWN_LENGTH_SPAN = 4 << 20
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class Kind(Enum):
    """What a request is, for the faults that concern image data only."""

    UPLOAD = "upload"
    DOWNLOAD = "download"
    OTHER = "other"


def classify(method: str, path: str) -> Kind:
    if _DATA_PATH.match(path):
        if method == "PUT":
            return Kind.UPLOAD
        if method == "GET":
            return Kind.DOWNLOAD
    return Kind.OTHER


@dataclass(frozen=True)
class Faults:
    """The fault levels; the defaults are the issue's (10% 5xx, 5% cuts each way, 0-20 ms)."""

    enabled: bool = True
    error_rate: float = 0.10  # of all requests: answered 5xx without reaching Glance
    error_statuses: tuple[int, ...] = (503, 502, 500)
    retry_after_share: float = 0.5  # of the 5xx answers: the ones that carry Retry-After
    retry_after: int = 1  # seconds (delta-seconds, an integer, as HTTP has it)
    upload_drop_rate: float = 0.05  # of uploads with a body: cut mid-body
    download_drop_rate: float = 0.05  # of downloads: cut mid-body
    latency: tuple[float, float] = (0.0, 0.020)  # seconds, uniform

    def __post_init__(self) -> None:
        for name in ("error_rate", "retry_after_share", "upload_drop_rate", "download_drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        low, high = self.latency
        if not 0.0 <= low <= high:
            raise ValueError(f"latency must be (low, high) with 0 <= low <= high, got {low, high}")
        if self.error_rate and not self.error_statuses:
            raise ValueError("error_rate needs at least one status in error_statuses")
        if self.retry_after < 0:
            raise ValueError(f"retry_after must not be negative, got {self.retry_after!r}")


#: Faults off: a plain, transparent proxy.
NO_FAULTS = Faults(enabled=False)


@dataclass
class Counters:
    """What one proxy has seen and done since it started (or since ``reset``)."""

    requests: int = 0  # every request that arrived
    forwarded: int = 0  # sent on to Glance
    errors: Counter[int] = field(default_factory=Counter)  # injected 5xx, by status
    errors_with_retry_after: int = 0
    upload_drops: int = 0  # request bodies cut (both connections closed)
    download_drops: int = 0  # response bodies cut (both connections closed)
    drops_missed: int = 0  # cuts rolled for a body that ended before the chosen byte
    delayed_seconds: float = 0.0  # latency injected, in total
    upload_bytes: int = 0  # bytes of upload bodies sent on to Glance
    uploads_answered: int = 0  # uploads that Glance answered (any status)
    download_bytes: int = 0  # bytes of download bodies relayed to the client
    mutations: int = 0  # requests forwarded with a method other than GET or HEAD
    client_gone: int = 0  # clients that hung up mid-request (a SIGKILLed engine, say)
    upstream_failures: int = 0  # Glance unreachable or broken (not injected): a 502 or a cut
    by_kind: Counter[str] = field(default_factory=Counter)  # requests by Kind value

    @property
    def injected(self) -> int:
        """Faults injected (latency aside)."""
        return sum(self.errors.values()) + self.upload_drops + self.download_drops

    def summary(self) -> str:
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(self.errors.items())) or "none"
        return (
            f"{self.requests} requests ({self.forwarded} forwarded), 5xx {statuses} "
            f"({self.errors_with_retry_after} with Retry-After), cuts up {self.upload_drops} "
            f"down {self.download_drops}, {self.delayed_seconds:.1f}s latency, "
            f"{self.client_gone} client hang-ups, {self.upstream_failures} upstream failures"
        )

    def add(self, other: Counters) -> Counters:
        """The sum of two proxies' counters (a new object)."""
        total = Counters()
        for name in self.__dataclass_fields__:
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(total, name, mine + theirs)
        return total


@dataclass(frozen=True)
class Dice:
    """One request's fate, rolled when it arrives."""

    delay: float = 0.0
    error: int | None = None  # the status to answer instead of forwarding
    retry_after: bool = False
    cut: float | None = None  # where the data body is cut, as a share of its length


class _Cut(Exception):
    """Raised in an upload body to abort the upstream request mid-body."""


class _ClientGone(Exception):
    """The client's side of an upload broke or ended short."""


@dataclass
class _Upload:
    """What happened to one request body on its way up."""

    cut: bool = False
    client_gone: bool = False


def _forwardable(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The end-to-end headers: all but the hop-by-hop ones, those ``Connection`` names, and
    ``Host`` (which names the upstream)."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        lower = key.lower()
        if lower in HOP_BY_HOP or lower in named or lower == "host":
            continue
        out.add(key, value)
    return out


class FaultProxy:
    """A reverse proxy to ``upstream`` on a loopback port; ``async with FaultProxy(...) as p``.

    ``p.url`` is its endpoint (what an engine config names instead of Glance's).
    """

    def __init__(
        self,
        upstream: str,
        *,
        seed: int | str = 0,
        faults: Faults = NO_FAULTS,
        host: str = "127.0.0.1",
        name: str = "",
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults
        self.counters = Counters()
        self.name = name or upstream
        self.host = host
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sock: socket.socket | None = None
        self._url: str | None = None

    # -- life --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the proxy is not started")
        return self._url

    @property
    def enabled(self) -> bool:
        return self.faults.enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self.faults = dataclasses.replace(self.faults, enabled=on)

    def reset_counters(self) -> Counters:
        """Start counting afresh; returns the counts so far."""
        old, self.counters = self.counters, Counters()
        return old

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        # Bound here and handed over, so the port is known and nobody can take it meanwhile.
        sock = socket.create_server((self.host, 0), backlog=128)
        self._sock = sock
        await web.SockSite(self._runner, sock).start()
        self._url = f"http://{self.host}:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- dice --------------------------------------------------------------------------------

    def roll(self, kind: Kind) -> Dice:
        """This request's fate: every die is rolled for every request, in one order, so the
        n-th request meets the same dice whatever happened to the ones before it."""
        f = self.faults
        if not f.enabled:
            return Dice()
        rng = self._rng
        delay = rng.uniform(*f.latency)
        error_roll, status_roll, after_roll = rng.random(), rng.random(), rng.random()
        cut_roll, cut_at = rng.random(), rng.random()
        error = None
        if error_roll < f.error_rate:
            error = f.error_statuses[int(status_roll * len(f.error_statuses))]
        rate = {Kind.UPLOAD: f.upload_drop_rate, Kind.DOWNLOAD: f.download_drop_rate}.get(kind, 0)
        return Dice(
            delay=delay,
            error=error,
            retry_after=error is not None and after_roll < f.retry_after_share,
            cut=cut_at if cut_roll < rate else None,
        )

    # -- the handler -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        counters = self.counters
        counters.requests += 1
        kind = classify(request.method, request.path)
        counters.by_kind[kind.value] += 1
        dice = self.roll(kind)
        if dice.delay:
            counters.delayed_seconds += dice.delay
            await asyncio.sleep(dice.delay)
        if dice.error is not None:
            return self._injected_error(dice)
        return await self._forward(request, kind, dice)

    def _injected_error(self, dice: Dice) -> web.Response:
        assert dice.error is not None
        status = dice.error
        self.counters.errors[status] += 1
        reason = _REASONS.get(status, "Error")
        headers = {"Content-Type": "text/html"}
        if dice.retry_after:
            self.counters.errors_with_retry_after += 1
            headers["Retry-After"] = str(self.faults.retry_after)
        body = f"<html><body><h1>{status} {reason}</h1>injected by the fault proxy</body></html>"
        return web.Response(status=status, reason=reason, text=body, headers=headers)

    async def _forward(self, request: web.Request, kind: Kind, dice: Dice) -> web.StreamResponse:
        session = self._session
        assert session is not None
        counters = self.counters
        url = yarl.URL(self.upstream + request.raw_path, encoded=True)
        headers = _forwardable(request.headers)
        length = request.content_length
        upload = _Upload()
        body: AsyncIterator[bytes] | None = None
        if request.body_exists:
            cut_at = None
            if kind is Kind.UPLOAD and dice.cut is not None:
                cut_at = int(dice.cut * (length if length is not None else _UNKNOWN_LENGTH_SPAN))
                if length == 0:
                    cut_at = None
            body = self._request_body(request, kind, length, cut_at, upload)
        elif kind is Kind.UPLOAD and dice.cut is not None:
            counters.drops_missed += 1
        counters.forwarded += 1
        if request.method not in ("GET", "HEAD"):
            counters.mutations += 1
        response: web.StreamResponse | None = None
        try:
            async with session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=_NO_AUTO_HEADERS,
            ) as upstream:
                if kind is Kind.UPLOAD:
                    counters.uploads_answered += 1
                response = await self._relay(request, upstream, kind, dice)
        except (aiohttp.ClientError, OSError, TimeoutError, _Cut, _ClientGone):
            if not (upload.cut or upload.client_gone):
                counters.upstream_failures += 1
        if upload.cut:
            counters.upload_drops += 1
            return self._hang_up(request)
        if upload.client_gone:
            counters.client_gone += 1
            return self._hang_up(request)
        if response is None:  # Glance unreachable, or broken before it answered
            return web.Response(status=502, reason="Bad Gateway", text="upstream failed")
        return response

    async def _request_body(
        self,
        request: web.Request,
        kind: Kind,
        length: int | None,
        cut_at: int | None,
        state: _Upload,
    ) -> AsyncIterator[bytes]:
        """The client's body as it arrives, cut at ``cut_at`` (raising, which aborts the
        upstream request and closes its connection)."""
        sent = 0
        while True:
            try:
                chunk = await request.content.readany()
            except Exception as exc:  # the client hung up (aiohttp raises several kinds)
                state.client_gone = True
                raise _ClientGone from exc
            if not chunk:
                break
            if cut_at is not None and sent + len(chunk) > cut_at:
                piece = chunk[: cut_at - sent]
                if piece:
                    sent += len(piece)
                    self._count_up(kind, len(piece))
                    yield piece
                state.cut = True
                raise _Cut
            sent += len(chunk)
            self._count_up(kind, len(chunk))
            yield chunk
        if length is not None and sent < length:  # ended short: a hang-up, not an end
            state.client_gone = True
            raise _ClientGone
        if cut_at is not None:
            self.counters.drops_missed += 1

    def _count_up(self, kind: Kind, size: int) -> None:
        if kind is Kind.UPLOAD:
            self.counters.upload_bytes += size

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        kind: Kind,
        dice: Dice,
    ) -> web.StreamResponse:
        counters = self.counters
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=_forwardable(upstream.headers),
        )
        cut_at = None
        if kind is Kind.DOWNLOAD and dice.cut is not None and upstream.status in (200, 206):
            size = upstream.content_length
            cut_at = int(dice.cut * (size if size is not None else _UNKNOWN_LENGTH_SPAN))
            if size == 0:
                cut_at = None
                counters.drops_missed += 1
        try:
            await response.prepare(request)
            sent = 0
            while True:
                try:
                    chunk = await upstream.content.readany()
                except (aiohttp.ClientError, OSError, TimeoutError):
                    counters.upstream_failures += 1
                    return self._hang_up(request, response)  # headers are out: break it
                if not chunk:
                    break
                if cut_at is not None and sent + len(chunk) > cut_at:
                    piece = chunk[: cut_at - sent]
                    if piece:
                        await response.write(piece)
                        counters.download_bytes += len(piece)
                    counters.download_drops += 1
                    upstream.close()
                    return self._hang_up(request, response)
                await response.write(chunk)
                sent += len(chunk)
                if kind is Kind.DOWNLOAD:
                    counters.download_bytes += len(chunk)
            if cut_at is not None:
                counters.drops_missed += 1
            await response.write_eof()
        except ConnectionError:
            counters.client_gone += 1
            upstream.close()
        return response

    @staticmethod
    def _hang_up(
        request: web.Request, response: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        """Close the client's connection now (what was written is flushed first).  aiohttp
        then fails to write anything more (the rest of ``response``, or the headers of a new
        one) and drops the connection without a word."""
        transport = request.transport
        if transport is not None:
            transport.close()
        return response if response is not None else web.Response(status=502)


@contextlib.asynccontextmanager
async def proxies(
    upstreams: Mapping[str, str], *, seed: int, faults: Faults = NO_FAULTS
) -> AsyncIterator[dict[str, FaultProxy]]:
    """One proxy per region (region -> upstream URL), each with its own dice from ``seed``."""
    started: dict[str, FaultProxy] = {}
    try:
        for index, (region, upstream) in enumerate(sorted(upstreams.items())):
            proxy = FaultProxy(upstream, seed=seed * 1009 + index, faults=faults, name=region)
            await proxy.start()
            started[region] = proxy
        yield started
    finally:
        for proxy in started.values():
            await proxy.stop()


def total(counters: Mapping[str, Counters] | list[Counters]) -> Counters:
    """The sum of several proxies' counters."""
    values = list(counters.values()) if isinstance(counters, Mapping) else counters
    out = Counters()
    for c in values:
        out = out.add(c)
    return out


__all__ = [
    "NO_FAULTS",
    "Counters",
    "Dice",
    "FaultProxy",
    "Faults",
    "Kind",
    "classify",
    "proxies",
    "total",
]
