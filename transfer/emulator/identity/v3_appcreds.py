"""``/v3/users/{user_id}/application_credentials``: a user creates, lists, shows and deletes
its own application credentials, with a project-scoped token got otherwise than through a
restricted application credential (Keystone's rule).  Deleting one revokes its tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from transfer.emulator.identity.appcreds import AppCred, AppCredBook, parse_expiry
from transfer.emulator.identity.common import (
    Caller,
    bad,
    forbidden,
    format_time_us,
    member,
    not_found,
    read_json,
)
from transfer.emulator.identity.directory import Directory
from transfer.emulator.identity.tokens import TokenBook
from transfer.emulator.identity.v3 import ROLES
from transfer.emulator.middleware import RouteTable
from transfer.emulator.responses import HttpError, json_response

Catalog = Callable[[], tuple[str, Mapping[str, str]]]
_FIELDS = {"name", "secret", "description", "expires_at", "unrestricted", "roles", "access_rules"}


class V3AppCreds:
    def __init__(
        self, directory: Directory, tokens: TokenBook, appcreds: AppCredBook, catalog: Catalog
    ) -> None:
        self._directory = directory
        self._tokens = tokens
        self._appcreds = appcreds
        self._catalog = catalog

    @property
    def _root(self) -> str:
        return self._catalog()[0]

    def add_routes(self, table: RouteTable) -> None:
        base = "/v3/users/{user_id}/application_credentials"
        table.add("POST", base, self.create, "identity")
        table.add("GET", base, self.list, "identity")
        table.add("GET", base + "/{cred_id}", self.show, "identity")
        table.add("DELETE", base + "/{cred_id}", self.delete, "identity")

    def _owner(self, request: web.Request, action: str, *, manage: bool = False) -> Caller:
        caller = Caller.of(request, self._tokens, self._directory, self._root)
        if request.match_info["user_id"] != caller.user.id:
            raise forbidden(f"identity:{action}")
        cred_id = caller.token.app_cred_id if manage else None
        cred = self._appcreds.get(cred_id) if cred_id else None
        if cred is not None and not cred.unrestricted:
            raise HttpError(
                403,
                "Using method 'application_credential' is not allowed for managing "
                "additional application credentials.",
                keystone=True,
            )
        return caller

    def _own(self, request: web.Request, caller: Caller) -> AppCred:
        cred_id = request.match_info["cred_id"]
        cred = self._appcreds.get(cred_id)
        if cred is None or cred.user_id != caller.user.id:
            raise not_found("application credential", cred_id)
        return cred

    def doc(self, cred: AppCred) -> dict[str, Any]:
        expires = cred.expires_at
        return {
            "id": cred.id,
            "name": cred.name,
            "description": cred.description,
            "expires_at": None if expires is None else format_time_us(expires),
            "project_id": cred.project_id,
            "user_id": cred.user_id,
            "roles": [{**role, "domain_id": None} for role in ROLES],
            "unrestricted": cred.unrestricted,
            "access_rules": [],
            "links": {
                "self": f"{self._root}/v3/users/{cred.user_id}/application_credentials/{cred.id}"
            },
        }

    async def create(self, request: web.Request) -> web.StreamResponse:
        caller = self._owner(request, "create_application_credential", manage=True)
        given = member(await read_json(request), "application_credential", "the request body")
        if caller.token.tenant_id is None:
            raise HttpError(
                403,
                "An application credential is created with a project-scoped token; "
                "this token is unscoped.",
                keystone=True,
            )
        extra = sorted(set(given) - _FIELDS)
        if extra:
            raise bad(f"Invalid input for field 'application_credential': unexpected {extra}.")
        name, secret, description = (given.get(k) for k in ("name", "secret", "description"))
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise bad(
                "Invalid input for field 'application_credential/name': "
                "expected a string of 1 to 255 characters."
            )
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise bad(
                "Invalid input for field 'application_credential/secret': "
                "expected a non-empty string."
            )
        if description is not None and not isinstance(description, str):
            raise bad(
                "Invalid input for field 'application_credential/description': expected a string."
            )
        unrestricted = given.get("unrestricted", False)
        if not isinstance(unrestricted, bool):
            raise bad(
                "Invalid input for field 'application_credential/unrestricted': "
                "expected true or false."
            )
        try:
            cred, shown = self._appcreds.create(
                caller.user.id,
                caller.token.tenant_id,
                name,
                secret=secret,
                description=description,
                expires_at=_expiry(given.get("expires_at")),
                unrestricted=unrestricted,
            )
        except ValueError:
            raise HttpError(
                409,
                f"Conflict occurred attempting to store application_credential - "
                f"Duplicate entry found with name {name}.",
                keystone=True,
            ) from None
        return json_response({"application_credential": {**self.doc(cred), "secret": shown}}, 201)

    async def list(self, request: web.Request) -> web.StreamResponse:
        caller = self._owner(request, "list_application_credentials")
        name = request.query.get("name")
        creds = [
            c for c in self._appcreds.of_user(caller.user.id) if name is None or c.name == name
        ]
        links = {"self": self._root + request.path_qs, "previous": None, "next": None}
        return json_response(
            {"application_credentials": [self.doc(c) for c in creds], "links": links}
        )

    async def show(self, request: web.Request) -> web.StreamResponse:
        caller = self._owner(request, "get_application_credential")
        return json_response({"application_credential": self.doc(self._own(request, caller))})

    async def delete(self, request: web.Request) -> web.StreamResponse:
        caller = self._owner(request, "delete_application_credential", manage=True)
        cred = self._own(request, caller)
        self._appcreds.delete(cred.id)
        self._tokens.revoke_where(lambda token: token.app_cred_id == cred.id)
        return web.Response(status=204)


def _expiry(value: Any) -> float | None:
    if value is None:
        return None
    where = "Invalid input for field 'application_credential/expires_at'"
    if not isinstance(value, str):
        raise bad(f"{where}: expected an ISO 8601 time such as 2026-12-31T00:00:00Z.")
    try:
        expires = parse_expiry(value)
    except ValueError:
        raise bad(f"{where}: {value!r} is not an ISO 8601 time.") from None
    if expires <= time.time():
        raise bad(f"{where}: the time {value} has already passed.")
    return expires
