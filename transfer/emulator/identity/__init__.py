"""The emulated identity service: Keystone v2.0 as NHN runs it and, when asked for, Keystone
v3; tenants, tokens, application credentials and the service catalog.

Modules: ``directory`` (tenants, users, the one domain), ``tokens`` (the
``TokenBook`` every issued token goes in), ``catalog`` (catalogs and version
documents), ``common`` (errors, the caller, timestamps), ``v2`` (the
``/v2.0`` routes), ``v3`` and ``v3_auth`` (v3 tokens), ``v3_lookup``
(projects, domains, users), ``appcreds`` and ``v3_appcreds`` (application
credentials).  ``GET /`` is Keystone's version discovery over the versions served; the
versions not served answer 404.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from transfer.emulator.identity.appcreds import AppCredBook
from transfer.emulator.identity.catalog import discovery
from transfer.emulator.identity.directory import (
    DEFAULT_TENANTS,
    Directory,
    TenantSpec,
    derive_tenant_id,
    tenant_from_name,
)
from transfer.emulator.identity.tokens import Token, TokenBook
from transfer.emulator.identity.v2 import V2Api
from transfer.emulator.identity.v3 import V3Tokens
from transfer.emulator.identity.v3_appcreds import V3AppCreds
from transfer.emulator.identity.v3_lookup import V3Lookups
from transfer.emulator.middleware import RouteTable
from transfer.emulator.responses import json_response

__all__ = [
    "DEFAULT_TENANTS",
    "IdentityService",
    "TenantSpec",
    "Token",
    "TokenBook",
    "derive_tenant_id",
    "tenant_from_name",
]


class IdentityService:
    """Handlers of the identity API, for one set of tenants and regions."""

    def __init__(
        self,
        tenants: Sequence[TenantSpec],
        tokens: TokenBook,
        catalog: Callable[[], tuple[str, Mapping[str, str]]],
        *,
        versions: Sequence[str] = ("v2.0",),
    ) -> None:
        unknown = set(versions) - {"v2.0", "v3"}
        if not versions or unknown:
            raise ValueError(f"identity versions: expected v2.0 and/or v3, got {list(versions)}")
        self.api_versions = tuple(versions)
        self._directory = Directory(tenants)
        self._tokens = tokens
        self._appcreds = AppCredBook()
        self._catalog = catalog  # () -> (identity root URL, {region: image URL})

    def add_routes(self, table: RouteTable) -> None:
        """The identity API's routes (the admin routes are added beside them)."""
        table.app.router.add_get("/", self.discovery, allow_head=False)
        served = self.api_versions
        if "v2.0" in served:
            V2Api(self._directory, self._tokens, self._catalog, served).add_routes(table)
        if "v3" in served:
            V3Tokens(
                self._directory, self._tokens, self._appcreds, self._catalog, served
            ).add_routes(table)
            V3Lookups(self._directory, self._tokens, self._catalog).add_routes(table)
            V3AppCreds(self._directory, self._tokens, self._appcreds, self._catalog).add_routes(
                table
            )

    async def discovery(self, request: web.Request) -> web.StreamResponse:
        """Keystone's answer at its root: 300 Multiple Choices listing the served versions."""
        return json_response(discovery(self._catalog()[0], self.api_versions), 300)

    def create_application_credential(self, tenant_id: str, name: str) -> tuple[str, str]:
        """A new application credential of the tenant's user for that tenant: (id, secret).

        ValueError for an unknown tenant or a name the user already uses."""
        tenant = self._directory.tenant(tenant_id)
        if tenant is None:
            raise ValueError(f"unknown tenant id {tenant_id!r}")
        user = self._directory.user_named(tenant.username)
        assert user is not None
        cred, secret = self._appcreds.create(user.id, tenant.tenant_id, name)
        return cred.id, secret
