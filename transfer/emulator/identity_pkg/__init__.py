"""The emulated identity service (Keystone v2.0 as NHN runs it): tenants, tokens and the
service catalog.

``POST /v2.0/tokens`` takes a tenant (id or name) and that tenant's user and API password and
answers a token scoped to the tenant, with the catalog listing every emulated region's image
endpoint.  ``TokenBook`` remembers issued tokens for the image regions to check.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from transfer.emulator.middleware import RouteTable
from transfer.emulator.responses import HttpError, format_time, json_response

_TENANT_NAMESPACE = uuid.UUID("6f1c3c52-5c1e-4bb0-9d0e-7a3f2e6b4c11")


@dataclass(frozen=True)
class TenantSpec:
    """One tenant (project) of the emulated cloud and its single API user."""

    name: str
    tenant_id: str
    username: str
    password: str = field(repr=False)


DEFAULT_TENANTS: tuple[TenantSpec, ...] = (
    TenantSpec(
        "demo-src",
        "a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "demo-src@example.com",
        "demo-src-password",
    ),
    TenantSpec(
        "demo-dst",
        "0f9e8d7c6b5a49382716a5b4c3d2e1f0",
        "demo-dst@example.com",
        "demo-dst-password",
    ),
)


def derive_tenant_id(name: str) -> str:
    """A tenant id (32 hex characters, like NHN's) that depends only on the tenant's name."""
    return uuid.uuid5(_TENANT_NAMESPACE, name).hex


def tenant_from_name(name: str, username: str, password: str) -> TenantSpec:
    return TenantSpec(name, derive_tenant_id(name), username, password)


@dataclass(frozen=True)
class Token:
    tenant_id: str
    issued_at: float
    expires_at: float


class TokenBook:
    """Issued tokens and their lifetimes (kept in memory only: a restart forgets them)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self._clock = clock
        self._tokens: dict[str, Token] = {}

    def issue(self, tenant_id: str) -> tuple[str, Token]:
        now = self._clock()
        self._forget_expired(now)
        token_id = secrets.token_hex(16)
        token = Token(tenant_id, now, now + self.ttl)
        self._tokens[token_id] = token
        return token_id, token

    def tenant_of(self, token_id: str) -> str | None:
        """The tenant a live token belongs to, or None (unknown, expired or revoked)."""
        token = self._tokens.get(token_id)
        if token is None:
            return None
        if token.expires_at <= self._clock():
            del self._tokens[token_id]
            return None
        return token.tenant_id

    def expire_all(self) -> None:
        self._tokens.clear()

    def _forget_expired(self, now: float) -> None:
        if len(self._tokens) < 1024:
            return
        for token_id in [t for t, tok in self._tokens.items() if tok.expires_at <= now]:
            del self._tokens[token_id]


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
        self._by_id = {t.tenant_id: t for t in tenants}
        self._by_name = {t.name: t for t in tenants}
        self._tokens = tokens
        self._catalog = catalog  # () -> (identity root URL, {region: image URL})

    def add_routes(self, table: RouteTable) -> None:
        """The identity API's routes (the admin routes are added beside them)."""
        table.add("POST", "/v2.0/tokens", self.issue_token, "token")
        table.app.router.add_get("/v2.0", self.versions, allow_head=False)
        table.app.router.add_get("/v2.0/", self.versions, allow_head=False)

    async def versions(self, request: web.Request) -> web.StreamResponse:
        identity_url = self._catalog()[0] + "/v2.0"
        return json_response(
            {
                "version": {
                    "id": "v2.0",
                    "status": "stable",
                    "updated": "2014-04-17T00:00:00Z",
                    "links": [{"rel": "self", "href": identity_url + "/"}],
                    "media-types": [
                        {
                            "base": "application/json",
                            "type": "application/vnd.openstack.identity-v2.0+json",
                        }
                    ],
                }
            }
        )

    async def issue_token(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            raise _bad("The request body is not valid JSON.") from None
        tenant = self._authenticate(body)
        token_id, token = self._tokens.issue(tenant.tenant_id)
        return json_response({"access": self._access(tenant, token_id, token)})

    def _authenticate(self, body: Any) -> TenantSpec:
        auth = body.get("auth") if isinstance(body, dict) else None
        if not isinstance(auth, dict):
            raise _bad("Expecting to find auth in request body.")
        creds = auth.get("passwordCredentials")
        if not isinstance(creds, dict):
            raise _bad("Expecting to find passwordCredentials in auth.")
        username = creds.get("username")
        password = creds.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise _bad("Expecting username and password strings in passwordCredentials.")
        tenant_id = auth.get("tenantId")
        tenant_name = auth.get("tenantName")
        if tenant_id is None and tenant_name is None:
            raise _bad("Expecting tenantId or tenantName in auth.")
        if not isinstance(tenant_id, str | None) or not isinstance(tenant_name, str | None):
            raise _bad("tenantId and tenantName must be strings.")
        tenant = self._by_id.get(tenant_id) if tenant_id is not None else None
        if tenant_id is None and tenant_name is not None:
            tenant = self._by_name.get(tenant_name)
        if tenant is not None and tenant_name is not None and tenant.name != tenant_name:
            tenant = None
        if (
            tenant is None
            or not secrets.compare_digest(tenant.username, username)
            or not secrets.compare_digest(tenant.password.encode(), password.encode())
        ):
            raise HttpError(
                401, "The request you have made requires authentication.", keystone=True
            )
        return tenant

    def _access(self, tenant: TenantSpec, token_id: str, token: Token) -> dict[str, Any]:
        root, regions = self._catalog()
        identity_url = root + "/v2.0"
        first_region = next(iter(regions), "")
        image_endpoints = [
            {
                "region": region,
                "publicURL": url,
                "internalURL": url,
                "adminURL": url,
                "id": uuid.uuid5(_TENANT_NAMESPACE, f"image:{region}").hex,
            }
            for region, url in regions.items()
        ]
        user_id = uuid.uuid5(_TENANT_NAMESPACE, f"user:{tenant.username}").hex
        return {
            "token": {
                "id": token_id,
                "issued_at": format_time(token.issued_at),
                "expires": format_time(token.expires_at),
                "tenant": {
                    "id": tenant.tenant_id,
                    "name": tenant.name,
                    "enabled": True,
                    "description": f"Emulated tenant {tenant.name}",
                },
                "audit_ids": [secrets.token_urlsafe(16)],
            },
            "serviceCatalog": [
                {
                    "type": "image",
                    "name": "glance",
                    "endpoints": image_endpoints,
                    "endpoints_links": [],
                },
                {
                    "type": "identity",
                    "name": "keystone",
                    "endpoints": [
                        {
                            "region": first_region,
                            "publicURL": identity_url,
                            "internalURL": identity_url,
                            "adminURL": identity_url,
                        }
                    ],
                    "endpoints_links": [],
                },
            ],
            "user": {
                "id": user_id,
                "username": tenant.username,
                "name": tenant.username,
                "roles": [{"name": "Member"}],
                "roles_links": [],
            },
            "metadata": {"is_admin": 0, "roles": ["Member"]},
        }


def _bad(message: str) -> HttpError:
    return HttpError(400, message, keystone=True)
