"""Keystone v3 tokens: ``POST /v3/auth/tokens`` (201, the id in ``X-Subject-Token``), their
validation (``GET``/``HEAD`` with ``X-Subject-Token``), revocation (``DELETE``), the
caller's catalog (``GET /v3/auth/catalog``) and the ``/v3`` version document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from transfer.emulator.identity.appcreds import AppCredBook
from transfer.emulator.identity.catalog import v3_catalog, version_entry
from transfer.emulator.identity.common import (
    Caller,
    bad,
    flag,
    format_time_us,
    not_found,
    read_json,
)
from transfer.emulator.identity.directory import (
    DOMAIN_ID,
    DOMAIN_NAME,
    Directory,
    User,
    stable_id,
)
from transfer.emulator.identity.tokens import Token, TokenBook
from transfer.emulator.identity.v3_auth import V3Authenticator
from transfer.emulator.middleware import RouteTable
from transfer.emulator.responses import HttpError, json_response

Catalog = Callable[[], tuple[str, Mapping[str, str]]]
DOMAIN_REF = {"id": DOMAIN_ID, "name": DOMAIN_NAME}
ROLES = [{"id": stable_id("role", name), "name": name} for name in ("member", "reader")]


class V3Tokens:
    """The ``/v3/auth/tokens`` routes and the token document."""

    def __init__(
        self,
        directory: Directory,
        tokens: TokenBook,
        appcreds: AppCredBook,
        catalog: Catalog,
        served: tuple[str, ...],
    ) -> None:
        self._directory = directory
        self._tokens = tokens
        self._appcreds = appcreds
        self._catalog = catalog
        self._served = served
        self._auth = V3Authenticator(directory, tokens, appcreds, lambda: self._root)

    @property
    def _root(self) -> str:
        return self._catalog()[0]

    def add_routes(self, table: RouteTable) -> None:
        table.add("POST", "/v3/auth/tokens", self.issue, "token")
        for method in ("GET", "HEAD"):
            table.add(method, "/v3/auth/tokens", self.validate, "identity")
        table.add("DELETE", "/v3/auth/tokens", self.revoke, "identity")
        table.add("GET", "/v3/auth/catalog", self.catalog, "identity")
        table.app.router.add_get("/v3", self.version, allow_head=False)
        table.app.router.add_get("/v3/", self.version, allow_head=False)

    async def version(self, request: web.Request) -> web.StreamResponse:
        return json_response({"version": version_entry(self._root, "v3", self._served)})

    async def issue(self, request: web.Request) -> web.StreamResponse:
        grant = self._auth.authenticate(await read_json(request))
        token_id, token = self._tokens.issue(
            grant.tenant.tenant_id if grant.tenant is not None else None,
            username=grant.user.name,
            methods=(grant.method,),
            app_cred_id=grant.app_cred.id if grant.app_cred is not None else None,
            not_after=grant.not_after,
        )
        body = self.token_doc(token, grant.user, catalog=not flag(request, "nocatalog"))
        return json_response({"token": body}, 201, {"X-Subject-Token": token_id})

    def _subject(self, request: web.Request) -> tuple[str, Token, User]:
        Caller.of(request, self._tokens, self._directory, self._root)
        subject_id = request.headers.get("X-Subject-Token")
        if not subject_id:
            raise bad("Expecting an X-Subject-Token header naming the token to check.")
        subject = self._tokens.get(subject_id)
        user = self._directory.user_of(subject.username, subject.tenant_id) if subject else None
        if subject is None or user is None:
            raise not_found("token", "the token is unknown, expired or revoked")
        return subject_id, subject, user

    async def validate(self, request: web.Request) -> web.StreamResponse:
        subject_id, subject, user = self._subject(request)
        body = self.token_doc(subject, user, catalog=not flag(request, "nocatalog"))
        return json_response({"token": body}, headers={"X-Subject-Token": subject_id})

    async def revoke(self, request: web.Request) -> web.StreamResponse:
        subject_id, _, _ = self._subject(request)
        self._tokens.revoke(subject_id)
        return web.Response(status=204)

    async def catalog(self, request: web.Request) -> web.StreamResponse:
        caller = Caller.of(request, self._tokens, self._directory, self._root)
        if caller.token.tenant_id is None:
            raise HttpError(
                403,
                "A project-scoped token is required to produce a service catalog.",
                keystone=True,
            )
        root, regions = self._catalog()
        links = {"self": root + "/v3/auth/catalog", "previous": None, "next": None}
        return json_response({"catalog": v3_catalog(root, regions), "links": links})

    def token_doc(self, token: Token, user: User, *, catalog: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "methods": list(token.methods),
            "user": {
                "id": user.id,
                "name": user.name,
                "domain": dict(DOMAIN_REF),
                "password_expires_at": None,
            },
            "audit_ids": [token.audit_id],
            "expires_at": format_time_us(token.expires_at, exact=False),
            "issued_at": format_time_us(token.issued_at),
        }
        tenant = self._directory.tenant(token.tenant_id) if token.tenant_id else None
        if tenant is None:
            return doc
        doc["project"] = {"id": tenant.tenant_id, "name": tenant.name, "domain": dict(DOMAIN_REF)}
        doc["is_domain"] = False
        doc["roles"] = [dict(role) for role in ROLES]
        if catalog:
            root, regions = self._catalog()
            doc["catalog"] = v3_catalog(root, regions)
        cred = self._appcreds.get(token.app_cred_id) if token.app_cred_id else None
        if cred is not None:
            doc["application_credential"] = {
                "id": cred.id,
                "name": cred.name,
                "restricted": not cred.unrestricted,
            }
        return doc
