"""How the emulated services answer: JSON bodies, error bodies shaped as Glance and Keystone
shape them, and timestamps printed as NHN prints them.

Handlers raise ``HttpError``; the request middleware turns it into the response.  A Glance
error body is webob's, negotiated on the request's ``Accept`` as webob does: HTML unless the
client prefers JSON (``application/json``), plain text when it accepts neither or sends no
Accept.  Keystone's errors (the 401 of the token check, the identity service's) are JSON.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=UTF-8"
PLAIN_TYPE = "text/plain; charset=UTF-8"


def format_time(epoch: float) -> str:
    """``YYYY-MM-DDThh:mm:ssZ`` in UTC, as NHN's API prints every timestamp."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def now() -> str:
    return format_time(time.time())


# Where Glance's error titles (webob's) differ from the standard phrases.
_GLANCE_TITLES = {416: "Request Range Not Satisfiable"}


def reason(status: int) -> str:
    if status in _GLANCE_TITLES:
        return _GLANCE_TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=JSON_TYPE,
        headers=headers,
    )


class HttpError(Exception):
    """An error answer: Glance's body by default, Keystone's with ``keystone=True``.

    ``message`` is what Glance puts first (webob's explanation); ``detail`` what it adds after
    (for example the 409 of a missing property, under webob's generic explanation).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        keystone: bool = False,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
        detail: str = "",
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.detail = detail
        self.keystone = keystone
        self.headers = dict(headers or {})
        self.close = close  # close the connection instead of draining an unread body

    def response(self, accept: str | None = None) -> web.Response:
        """The answer, in the media type ``accept`` (the request's header) negotiates."""
        title = reason(self.status)
        if self.keystone:
            body = {"error": {"message": self.message, "code": self.status, "title": title}}
            resp = json_response(body, self.status, self.headers)
        else:
            content_type, data = glance_error_body(
                self.status, title, self.message, self.detail, accept
            )
            resp = web.Response(
                status=self.status,
                body=data,
                headers={**self.headers, "Content-Type": content_type},
            )
        if self.close:
            resp.force_close()
        return resp


# webob's templates of an error's text: explanation, then detail (405 and 415 have their own).
_TEMPLATES = {405: "{e}<br /><br />\n{d}", 415: "{e}\n<br /><br />\n{d}"}
_DEFAULT_TEMPLATE = "{e}<br /><br />\n{d}\n\n"
_HTML = (
    "<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n"
    "  <h1>{status}</h1>\n  {body}\n </body>\n</html>"
)


def glance_error_body(
    status: int, title: str, message: str, detail: str, accept: str | None
) -> tuple[str, bytes]:
    """The Content-Type and body of Glance's (webob's) error answer for this ``Accept``."""
    template = _TEMPLATES.get(status, _DEFAULT_TEMPLATE)
    line = f"{status} {title}"
    kind = negotiate(accept)
    if kind == "json":
        text = template.format(e=message, d=detail)
        return JSON_TYPE, json.dumps({"message": text, "code": line, "title": title}).encode()
    if kind == "html":
        text = template.format(e=html.escape(message), d=html.escape(detail))
        return HTML_TYPE, _HTML.format(status=line, body=text).encode()
    text = template.format(e=message, d=detail).replace("\n", " ").replace("<br /><br />", "\n\n")
    return PLAIN_TYPE, f"{line}\n\n{text}".encode()


def _quality(accept: list[tuple[str, float]], offer: str) -> float:
    """The quality ``accept`` gives ``offer``: that of its most specific matching range."""
    kind = offer.split("/")[0]
    best, quality = -1, 0.0
    for media, q in accept:
        rank = 2 if media == offer else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
        if rank > best:
            best, quality = rank, q
    return quality if best >= 0 else 0.0


def negotiate(accept: str | None) -> str:
    """``html``, ``json`` or ``plain``: what webob answers an error with for this ``Accept``."""
    if accept is None or not accept.strip():
        return "plain"  # webob reads a missing header as an empty one: nothing is acceptable
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    return "html"  # an invalid header: webob accepts anything
        if media:
            ranges.append((media.lower(), q))
    html_q, json_q = _quality(ranges, "text/html"), _quality(ranges, JSON_TYPE)
    if html_q <= 0 and json_q <= 0:
        return "plain"
    return "json" if json_q > html_q else "html"


def unauthorized(message: str, identity_url: str) -> HttpError:
    """What keystonemiddleware answers in front of Glance for a missing or bad token."""
    return HttpError(
        401,
        message,
        keystone=True,
        headers={"WWW-Authenticate": f"Keystone uri='{identity_url}'"},
    )
