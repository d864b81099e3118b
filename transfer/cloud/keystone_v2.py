"""Keystone v2.0 (NHN Cloud's identity API): ``POST {identity_url}/tokens`` with a password and
a tenant; the token and its service catalog come back in ``access``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yarl

from transfer.cloud.identity import (
    Identity,
    TokenAnswer,
    http_date,
    mappings,
    parse_time,
    strip_version,
)
from transfer.config.settings import Credentials, IdentityVersion
from transfer.errors import AuthError


def image_catalog(access: Mapping[str, Any]) -> dict[str, str]:
    """Upper-case region -> image endpoint, from a v2.0 ``access.serviceCatalog``."""
    catalog: dict[str, str] = {}
    for service in mappings(access.get("serviceCatalog")):
        if service.get("type") != "image":
            continue
        for endpoint in mappings(service.get("endpoints")):
            region, url = endpoint.get("region"), endpoint.get("publicURL")
            if isinstance(region, str) and isinstance(url, str) and url:
                catalog[region.upper()] = strip_version(url)
    return catalog


class KeystoneV2:
    """Password tokens from a Keystone v2.0 identity service."""

    version = IdentityVersion.V2

    def __init__(self, base: str) -> None:
        self.url = yarl.URL(base.rstrip("/") + "/tokens")

    @staticmethod
    def payload(creds: Credentials) -> dict[str, Any]:
        assert creds.password is not None and creds.username is not None
        scope: dict[str, Any] = (
            {"tenantId": creds.tenant_id} if creds.tenant_id else {"tenantName": creds.tenant_name}
        )
        scope["passwordCredentials"] = {
            "username": creds.username,
            "password": creds.password.reveal(),
        }
        return {"auth": scope}

    async def request(self, identity: Identity) -> TokenAnswer:
        creds = identity.credentials
        if creds.password is None or not creds.username:
            raise AuthError(
                f"cloud '{creds.name}': Keystone v2.0 ({self.url.host}) takes a user name and a "
                "password only"
            )
        reply = await identity.send(
            "POST", self.url, ok=(200, 201, 203), payload=self.payload(creds)
        )
        where = identity.where(self.url)
        data = identity.json(reply, self.url, where)
        access = data.get("access") if isinstance(data, Mapping) else None
        token = access.get("token") if isinstance(access, Mapping) else None
        if not isinstance(access, Mapping) or not isinstance(token, Mapping):
            raise AuthError(f"{where} has no 'access.token'")
        value = token.get("id")
        if not isinstance(value, str) or not value:
            raise AuthError(f"{where} has no token 'id'")
        expires = parse_time(token.get("expires"))
        if expires is None:
            raise AuthError(f"{where} has no readable 'expires' ({token.get('expires')!r})")
        tenant = token.get("tenant")
        tenant_id = tenant.get("id") if isinstance(tenant, Mapping) else None
        if not isinstance(tenant_id, str) or not tenant_id:
            tenant_id = creds.tenant_id
        if not tenant_id:
            raise AuthError(f"{where} is not scoped to a tenant")
        return TokenAnswer(
            value=value,
            expires=expires,
            server_now=parse_time(token.get("issued_at")) or http_date(reply.headers.get("Date")),
            tenant_id=tenant_id,
            catalog=image_catalog(access),
        )
