"""The interop cloud's stand-in for Keystone: a WSGI filter in Glance's paste pipeline that
turns ``X-Auth-Token`` into the identity headers Glance's ``ContextMiddleware`` trusts.

Glance runs this module (it is on the server's PYTHONPATH, not installed), so it uses the
standard library only.  The tokens file is JSON ``{token: {"project_id": ..., "user_id": ...,
"roles": [...]}}``; one token per tenant, written by ``interop/server.py``.

Identity headers a client sent are removed first, whatever the token: otherwise a caller could
name any project with ``X-Project-Id``.  A missing or unknown token is answered 401 in
keystonemiddleware's shape, before Glance sees the request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# Environ keys (CGI-style header names) that carry identity to the services behind.
_IDENTITY_PREFIXES = (
    "HTTP_X_IDENTITY_STATUS",
    "HTTP_X_SERVICE_",
    "HTTP_X_USER",
    "HTTP_X_PROJECT",
    "HTTP_X_TENANT",
    "HTTP_X_DOMAIN",
    "HTTP_X_ROLE",
    "HTTP_X_IS_ADMIN_PROJECT",
    "HTTP_X_SYSTEM_SCOPE",
    "HTTP_X_STORAGE_TOKEN",
    "HTTP_X_AUTHORIZATION",
)


def load_tokens(path: str) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as fobj:
        raw = json.load(fobj)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of tokens")
    tokens: dict[str, dict[str, Any]] = {}
    for token, who in raw.items():
        if not isinstance(who, dict) or not isinstance(who.get("project_id"), str):
            raise ValueError(f"{path}: every token needs a project_id")
        tokens[str(token)] = who
    return tokens


class TokenAuth:
    """Maps a known token to Glance's trusted identity headers; refuses anything else."""

    def __init__(self, app: WsgiApp, tokens: Mapping[str, Mapping[str, Any]]) -> None:
        self._app = app
        self._tokens = dict(tokens)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        for key in [k for k in environ if k.startswith(_IDENTITY_PREFIXES)]:
            del environ[key]
        who = self._tokens.get(environ.get("HTTP_X_AUTH_TOKEN", ""))
        if who is None:
            return _unauthorized(environ, start_response)
        roles = who.get("roles") or ["member", "reader"]
        environ["HTTP_X_IDENTITY_STATUS"] = "Confirmed"
        environ["HTTP_X_PROJECT_ID"] = who["project_id"]
        environ["HTTP_X_USER_ID"] = str(who.get("user_id") or who["project_id"])
        environ["HTTP_X_ROLES"] = ",".join(str(r) for r in roles)
        # Absent, oslo.context assumes an admin project; say plainly that this is not one.
        environ["HTTP_X_IS_ADMIN_PROJECT"] = "False"
        return self._app(environ, start_response)


def _unauthorized(environ: Mapping[str, Any], start_response: StartResponse) -> list[bytes]:
    body = json.dumps(
        {
            "error": {
                "code": 401,
                "title": "Unauthorized",
                "message": "The request you have made requires authentication.",
            }
        }
    ).encode()
    host = environ.get("HTTP_HOST", "localhost")
    start_response(
        "401 Unauthorized",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("WWW-Authenticate", f"Keystone uri='http://{host}/identity'"),
        ],
    )
    return [body]


def filter_factory(global_conf: Mapping[str, Any], **local_conf: Any) -> Callable[[WsgiApp], Any]:
    """Paste's entry point: ``tokens_file`` names the JSON file of tokens."""
    tokens = load_tokens(str(local_conf["tokens_file"]))

    def make(app: WsgiApp) -> TokenAuth:
        return TokenAuth(app, tokens)

    return make
