"""Keystone v2.0 as NHN serves it, plus the tenant calls OpenStack clients make.

``POST /v2.0/tokens`` takes a tenant (id or name) with that tenant's user and API password, or
a live token to re-scope; ``GET /v2.0/tokens/{id}`` validates a token; ``GET /v2.0/tenants``
lists the caller's tenants and ``GET /v2.0/tenants/{id}`` (or ``?name=``) shows any tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from transfer.emulator.identity.catalog import v2_catalog, version_entry
from transfer.emulator.identity.common import (
    Caller,
    bad,
    not_found,
    read_json,
    unauthorized,
)
from transfer.emulator.identity.directory import Directory, TenantSpec, User
from transfer.emulator.identity.tokens import Token, TokenBook
from transfer.emulator.middleware import RouteTable
from transfer.emulator.responses import format_time, json_response

Catalog = Callable[[], tuple[str, Mapping[str, str]]]


def tenant_doc(tenant: TenantSpec) -> dict[str, Any]:
    return {
        "id": tenant.tenant_id,
        "name": tenant.name,
        "enabled": True,
        "description": f"Emulated tenant {tenant.name}",
    }


class V2Api:
    """The ``/v2.0`` routes."""

    def __init__(
        self,
        directory: Directory,
        tokens: TokenBook,
        catalog: Catalog,
        served: tuple[str, ...],
    ) -> None:
        self._directory = directory
        self._tokens = tokens
        self._catalog = catalog
        self._served = served

    def add_routes(self, table: RouteTable) -> None:
        table.add("POST", "/v2.0/tokens", self.issue_token, "token")
        for method in ("GET", "HEAD"):
            table.add(method, "/v2.0/tokens/{token_id}", self.validate_token, "identity")
        table.add("GET", "/v2.0/tenants", self.list_tenants, "identity")
        table.add("GET", "/v2.0/tenants/{tenant_id}", self.show_tenant, "identity")
        table.app.router.add_get("/v2.0", self.version, allow_head=False)
        table.app.router.add_get("/v2.0/", self.version, allow_head=False)

    @property
    def _root(self) -> str:
        return self._catalog()[0]

    async def version(self, request: web.Request) -> web.StreamResponse:
        return json_response({"version": version_entry(self._root, "v2.0", self._served)})

    async def issue_token(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        auth = body.get("auth")
        if not isinstance(auth, dict):
            raise bad("Expecting to find auth in request body.")
        tenant = self._requested_tenant(auth)
        if "token" in auth:
            user, how = self._user_of_token(auth["token"]), "token"
        else:
            user, how = self._user_of_password(auth, tenant), "password"
        if tenant is None or user is None or not self._directory.may_use(user, tenant):
            raise unauthorized(self._root)
        token_id, token = self._tokens.issue(tenant.tenant_id, username=user.name, methods=(how,))
        return json_response({"access": self._access(token_id, token, user)})

    def _requested_tenant(self, auth: dict[str, Any]) -> TenantSpec | None:
        tenant_id = auth.get("tenantId")
        tenant_name = auth.get("tenantName")
        if tenant_id is None and tenant_name is None:
            raise bad("Expecting tenantId or tenantName in auth.")
        if not isinstance(tenant_id, str | None) or not isinstance(tenant_name, str | None):
            raise bad("tenantId and tenantName must be strings.")
        if tenant_id is not None:
            tenant = self._directory.tenant(tenant_id)
            if tenant is not None and tenant_name is not None and tenant.name != tenant_name:
                return None
            return tenant
        assert tenant_name is not None
        return self._directory.tenant_named(tenant_name)

    def _user_of_password(self, auth: dict[str, Any], tenant: TenantSpec | None) -> User | None:
        creds = auth.get("passwordCredentials")
        if not isinstance(creds, dict):
            raise bad("Expecting to find passwordCredentials or token in auth.")
        username, user_id = creds.get("username"), creds.get("userId")
        password = creds.get("password")
        name_or_id = username if username is not None else user_id
        if not isinstance(name_or_id, str) or not isinstance(password, str):
            raise bad("Expecting username (or userId) and password strings in passwordCredentials.")
        if username is not None:
            user = self._directory.user_named(name_or_id)
        else:
            user = self._directory.user(name_or_id)
        if (
            user is None
            or tenant is None
            or not self._directory.password_ok(user, password, tenant)
        ):
            return None
        return user

    def _user_of_token(self, given: Any) -> User | None:
        token_id = given.get("id") if isinstance(given, dict) else None
        if not isinstance(token_id, str):
            raise bad("Expecting to find id in auth/token: a string.")
        token = self._tokens.get(token_id)
        if token is None or token.app_cred_id is not None:
            return None  # an application credential's token stays in its own project
        return self._directory.user_of(token.username, token.tenant_id)

    async def validate_token(self, request: web.Request) -> web.StreamResponse:
        Caller.of(request, self._tokens, self._directory, self._root)
        subject_id = request.match_info["token_id"]
        subject = self._tokens.get(subject_id)
        user = self._directory.user_of(subject.username, subject.tenant_id) if subject else None
        if subject is None or user is None:
            raise not_found("token", "the token is unknown, expired or revoked")
        belongs_to = request.query.get("belongsTo")
        if belongs_to is not None and belongs_to != subject.tenant_id:
            raise unauthorized(self._root)
        return json_response({"access": self._access(subject_id, subject, user)})

    async def list_tenants(self, request: web.Request) -> web.StreamResponse:
        caller = Caller.of(request, self._tokens, self._directory, self._root)
        name = request.query.get("name")
        if name is not None:
            tenant = self._directory.tenant_named(name)
            if tenant is None:
                raise not_found("tenant", name)
            return json_response({"tenant": tenant_doc(tenant)})
        docs = [tenant_doc(t) for t in caller.user.tenants]
        return json_response({"tenants": docs, "tenants_links": []})

    async def show_tenant(self, request: web.Request) -> web.StreamResponse:
        Caller.of(request, self._tokens, self._directory, self._root)
        tenant_id = request.match_info["tenant_id"]
        tenant = self._directory.tenant(tenant_id)
        if tenant is None:
            raise not_found("tenant", tenant_id)
        return json_response({"tenant": tenant_doc(tenant)})

    def _access(self, token_id: str, token: Token, user: User) -> dict[str, Any]:
        root, regions = self._catalog()
        tenant = self._directory.tenant(token.tenant_id) if token.tenant_id else None
        token_doc: dict[str, Any] = {
            "id": token_id,
            "issued_at": format_time(token.issued_at),
            "expires": format_time(token.expires_at),
            "audit_ids": [token.audit_id],
        }
        if tenant is not None:
            token_doc["tenant"] = tenant_doc(tenant)
        return {
            "token": token_doc,
            "serviceCatalog": v2_catalog(root, regions) if tenant is not None else [],
            "user": {
                "id": user.id,
                "username": user.name,
                "name": user.name,
                "roles": [{"name": "Member"}] if tenant is not None else [],
                "roles_links": [],
            },
            "metadata": {"is_admin": 0, "roles": ["Member"] if tenant is not None else []},
        }
