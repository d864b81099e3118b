"""What every identity handler shares: reading a JSON body, Keystone's error answers, who the
caller is (its ``X-Auth-Token``), and Keystone's timestamps.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from transfer.emulator.identity.directory import Directory, User
from transfer.emulator.identity.tokens import Token, TokenBook
from transfer.emulator.responses import HttpError

AUTH_REQUIRED = "The request you have made requires authentication."


def format_time_us(epoch: float, *, exact: bool = True) -> str:
    """``2026-12-01T13:00:00.123456Z``: Keystone v3's timestamps (``exact=False`` prints
    ``.000000``, as Keystone prints a token's expiry)."""
    whole = int(epoch)
    micros = round((epoch - whole) * 1_000_000) if exact else 0
    if micros >= 1_000_000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


def bad(message: str) -> HttpError:
    return HttpError(400, message, keystone=True)


def unauthorized(root: str, message: str = AUTH_REQUIRED) -> HttpError:
    """Keystone's 401, with the ``WWW-Authenticate`` header it sends."""
    return HttpError(
        401, message, keystone=True, headers={"WWW-Authenticate": f'Keystone uri="{root}"'}
    )


def forbidden(action: str) -> HttpError:
    return HttpError(
        403,
        f"You are not authorized to perform the requested action: {action}.",
        keystone=True,
    )


def not_found(kind: str, ident: str) -> HttpError:
    return HttpError(404, f"Could not find {kind}: {ident}.", keystone=True)


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise bad("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.")
    return body


def member(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """``obj[key]`` that must be a JSON object (400 naming the field otherwise)."""
    value = obj.get(key)
    if not isinstance(value, dict):
        raise bad(f"Expecting to find {key} in {where}: a JSON object.")
    return value


def opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise bad(f"Invalid input for field '{where}/{key}': expected a string.")
    return value


def flag(request: web.Request, name: str) -> bool:
    """A query flag such as ``?nocatalog`` (present without a value, or a true value)."""
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("0", "false", "no", "off")


class Caller:
    """The token a request carries in ``X-Auth-Token`` and its user (401 if none is live)."""

    def __init__(self, token_id: str, token: Token, user: User) -> None:
        self.token_id = token_id
        self.token = token
        self.user = user

    @classmethod
    def of(cls, request: web.Request, tokens: TokenBook, directory: Directory, root: str) -> Caller:
        token_id = request.headers.get("X-Auth-Token", "")
        token = tokens.get(token_id) if token_id else None
        user = directory.user_of(token.username, token.tenant_id) if token else None
        if token is None or user is None:
            raise unauthorized(root)
        return cls(token_id, token, user)
