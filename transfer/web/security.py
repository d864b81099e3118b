"""How the live page keeps itself safe: where it may listen, its token, and the checks every
request passes before a handler sees it.

- **Loopback by default.**  ``parse_listen`` reads ``HOST:PORT``; any address that is not
  loopback needs a token (``--auth-token-file``).  Without a token, requests must name a
  loopback host (or the one listened on) in ``Host``, so that a web site that rebinds its DNS
  name to 127.0.0.1 cannot read the page through a visitor's browser.
- **The token.**  Sent as ``Authorization: Bearer TOKEN`` (scripts), or given once as
  ``?token=TOKEN`` (a browser): that answer sets an HttpOnly, SameSite=Strict cookie and
  redirects to the same address without the token, so that it stays out of the history.  The
  cookie holds a value derived from the token, not the token.  No token: 401; a wrong one: 403.
- **Read-only.**  GET and HEAD only; every other method is 405, whatever the path.
- **Headers.**  A strict Content-Security-Policy (only the page's own script, style and images;
  no inline script or style; no framing), ``nosniff``, ``X-Frame-Options: DENY``, no referrer,
  no caching; ``Server`` names nothing but the tool.
- **Errors.**  A bad request gets its 4xx and a one-line text; anything unexpected a 500 with a
  one-line text (the details go to the log); never a traceback.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from transfer.errors import ConfigError, TransferError
from transfer.log import get_logger
from transfer.web import DEFAULT_LISTEN

log = get_logger("transfer.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE = "image_transfer_token"
MIN_TOKEN = 16
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Cache-Control": "no-store",
    "Server": "image-transfer",
}
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class Listen:
    """Where the page listens: ``host`` (a name or an address) and ``port`` (0: any free)."""

    host: str
    port: int
    option: str  # the option that named it, for messages

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a name other than localhost: it may resolve anywhere

    def url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}/"


def parse_listen(text: str, option: str = "--listen") -> Listen:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    raw = text.strip()
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", raw
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or (":" in host and not _is_address(host)):
        raise ConfigError(f"{option} {text!r}: expected HOST:PORT, as in {DEFAULT_LISTEN}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: the port must be a number, as in {DEFAULT_LISTEN}"
        ) from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{option} {text!r}: the port must be 0 to 65535")
    return Listen(host=host, port=port, option=option)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def read_token(path: Path, option: str = "--auth-token-file") -> tuple[str, list[str]]:
    """The token in ``path`` (its first line, stripped) and warnings about the file."""
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ConfigError(f"{option} {path}: cannot read it: {why}") from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise ConfigError(f"{option} {path}: the file is empty (expected the token on one line)")
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise ConfigError(
            f"{option} {path}: the token must be at least {MIN_TOKEN} characters, without "
            "spaces (for example the output of `openssl rand -hex 24`)"
        )
    warnings = []
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(f"{option} {path} is readable by others: chmod 600 it")
    return token, warnings


def check_bind(listen: Listen, token: str | None) -> None:
    if token is None and not listen.loopback:
        raise ConfigError(
            f"{listen.option} {listen.host}:{listen.port}: not a loopback address; the page "
            "listens elsewhere only behind a token: give --auth-token-file too"
            if listen.option == "--listen"
            else f"{listen.option} {listen.host}:{listen.port}: not a loopback address; give "
            "--serve-token-file too"
        )


def _text(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=headers)


class Guard:
    """The checks of every request (see the module docstring), as aiohttp middlewares."""

    def __init__(self, listen: Listen, token: str | None) -> None:
        self.listen = listen
        self.token = token
        self.cookie = None if token is None else _derive(token)

    def middlewares(self) -> list[Middleware]:
        return [self.errors, self.read_only, self.host, self.auth]

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _text(exc.status, (exc.text or exc.reason).strip())
        except TransferError as exc:  # the journal cannot be read just now
            log.warning("live page: cannot read the journal", error=str(exc))
            return _text(503, f"cannot read the journal: {exc}")
        except Exception:
            log.exception("live page: internal error", path=request.path)
            return _text(500, "internal error (see the log of image-transfer serve)")

    @web.middleware
    async def read_only(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _text(405, "read-only: only GET and HEAD", Allow="GET, HEAD")
        return await handler(request)

    @web.middleware
    async def host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is None:
            name = _host_name(request.headers.get("Host", ""))
            if name not in _LOOPBACK_NAMES and name != self.listen.host:
                return _text(403, f"this page answers to a loopback host, not {name or '(none)'}")
        return await handler(request)

    @web.middleware
    async def auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is None or self.cookie is None:
            return await handler(request)
        given = request.query.get("token")
        if given is not None:
            if not _same(given, self.token):
                return _text(403, "wrong token")
            rest = request.rel_url.without_query_params("token")
            answer = web.HTTPSeeOther(location=str(rest))
            answer.set_cookie(COOKIE, self.cookie, httponly=True, samesite="Strict", path="/")
            return answer
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not _same(value.strip(), self.token):
                return _text(403, "wrong token")
            return await handler(request)
        cookie = request.cookies.get(COOKIE)
        if cookie is not None:
            if not _same(cookie, self.cookie):
                return _text(403, "wrong token (an old cookie?): open the page with ?token=")
            return await handler(request)
        return _text(
            401,
            "this page needs its token: open it once as /?token=TOKEN, or send "
            "Authorization: Bearer TOKEN",
            **{"WWW-Authenticate": 'Bearer realm="image-transfer"'},
        )


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer's headers (an ``on_response_prepare`` signal)."""
    for name, value in HEADERS.items():
        response.headers[name] = value


def _derive(token: str) -> str:
    return hmac.new(token.encode(), b"image-transfer live page cookie", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port or IPv6 brackets, lower case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value
