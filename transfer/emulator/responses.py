"""How the emulated services answer: JSON bodies, error bodies shaped as Glance and Keystone
shape them, and timestamps printed as NHN prints them.

Handlers raise ``HttpError``; the request middleware turns it into the response.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web

JSON_TYPE = "application/json"


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
    """An error answer: Glance's body by default, Keystone's with ``keystone=True``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        keystone: bool = False,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.keystone = keystone
        self.headers = dict(headers or {})
        self.close = close  # close the connection instead of draining an unread body

    def response(self) -> web.Response:
        title = reason(self.status)
        body: dict[str, Any]
        if self.keystone:
            body = {"error": {"message": self.message, "code": self.status, "title": title}}
        else:
            body = {"message": self.message, "code": f"{self.status} {title}", "title": title}
        resp = json_response(body, self.status, self.headers)
        if self.close:
            resp.force_close()
        return resp


def unauthorized(message: str, identity_url: str) -> HttpError:
    """What keystonemiddleware answers in front of Glance for a missing or bad token."""
    return HttpError(
        401,
        message,
        keystone=True,
        headers={"WWW-Authenticate": f"Keystone uri='{identity_url}'"},
    )
