"""Keystone v3 (most private OpenStack clouds): ``POST {identity_url}/auth/tokens`` with a
password (user and project named by id, or by name within a domain) or an application
credential; the token comes back in the ``X-Subject-Token`` header, its expiry, project and
service catalog in the body.  Also the version discovery of an identity URL without a version.
"""

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


def image_catalog(token: Mapping[str, Any]) -> dict[str, str]:
    """Upper-case region -> public image endpoint, from a v3 ``token.catalog``."""
    catalog: dict[str, str] = {}
    for service in mappings(token.get("catalog")):
        if service.get("type") != "image":
            continue
        for endpoint in mappings(service.get("endpoints")):
            if endpoint.get("interface") != "public":
                continue
            region = endpoint.get("region_id") or endpoint.get("region")
            url = endpoint.get("url")
            if isinstance(region, str) and region and isinstance(url, str) and url:
                catalog[region.upper()] = strip_version(url)
    return catalog


def _domain(domain_id: str | None, domain_name: str | None) -> dict[str, str] | None:
    if domain_id:
        return {"id": domain_id}
    if domain_name:
        return {"name": domain_name}
    return None


def missing_v3_parts(creds: Credentials) -> str | None:
    """What these credentials lack for Keystone v3 (None: nothing)."""
    user_domain = _domain(creds.user_domain_id, creds.user_domain_name)
    if creds.uses_application_credential:
        if creds.application_credential_id:
            return None
        if not creds.application_credential_name or not creds.username:
            return "application_credential_id (or application_credential_name with username)"
        return None if user_domain else "user_domain_name or user_domain_id"
    if user_domain is None:
        return "user_domain_name or user_domain_id (a v3 user name belongs to a domain)"
    if not creds.tenant_id and not _domain(creds.project_domain_id, creds.project_domain_name):
        return "project_domain_name or project_domain_id (or project_id)"
    return None


def payload(creds: Credentials) -> dict[str, Any]:
    """The body of ``POST /v3/auth/tokens`` (the caller checked ``missing_v3_parts``)."""
    user_domain = _domain(creds.user_domain_id, creds.user_domain_name)
    if creds.application_credential_secret is not None:
        secret = creds.application_credential_secret.reveal()
        credential: dict[str, Any] = {"secret": secret}
        if creds.application_credential_id:
            credential["id"] = creds.application_credential_id
        else:
            credential["name"] = creds.application_credential_name
            credential["user"] = {"name": creds.username, "domain": user_domain}
        # An application credential is bound to its project: a request for a scope is refused.
        identity = {"methods": ["application_credential"], "application_credential": credential}
        return {"auth": {"identity": identity}}
    assert creds.password is not None
    user = {"name": creds.username, "domain": user_domain, "password": creds.password.reveal()}
    project: dict[str, Any] = (
        {"id": creds.tenant_id}
        if creds.tenant_id
        else {
            "name": creds.tenant_name,
            "domain": _domain(creds.project_domain_id, creds.project_domain_name),
        }
    )
    return {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": project},
        }
    }


class KeystoneV3:
    """Project-scoped tokens from a Keystone v3 identity service."""

    version = IdentityVersion.V3

    def __init__(self, base: str) -> None:
        self.url = yarl.URL(base.rstrip("/") + "/auth/tokens")

    async def request(self, identity: Identity) -> TokenAnswer:
        creds = identity.credentials
        missing = missing_v3_parts(creds)
        if missing is not None:
            raise AuthError(f"cloud '{creds.name}': Keystone v3 ({self.url.host}) needs {missing}")
        reply = await identity.send("POST", self.url, ok=(200, 201), payload=payload(creds))
        where = identity.where(self.url)
        value = reply.headers.get("X-Subject-Token")
        if not value:
            raise AuthError(f"{where} has no X-Subject-Token header")
        identity.transport.register_secret(value)
        data = identity.json(reply, self.url, where)
        token = data.get("token") if isinstance(data, Mapping) else None
        if not isinstance(token, Mapping):
            raise AuthError(f"{where} has no 'token'")
        expires = parse_time(token.get("expires_at"))
        if expires is None:
            raise AuthError(f"{where} has no readable 'expires_at' ({token.get('expires_at')!r})")
        project = token.get("project")
        project_id = project.get("id") if isinstance(project, Mapping) else None
        if not isinstance(project_id, str) or not project_id:
            raise AuthError(f"{where} is not scoped to a project")
        return TokenAnswer(
            value=value,
            expires=expires,
            server_now=parse_time(token.get("issued_at")) or http_date(reply.headers.get("Date")),
            tenant_id=project_id,
            catalog=image_catalog(token),
        )


def _offered(data: Any) -> set[IdentityVersion]:
    """The versions a Keystone version list offers (``versions.values`` or ``versions``)."""
    versions = data.get("versions") if isinstance(data, Mapping) else None
    if isinstance(versions, Mapping):
        versions = versions.get("values")
    found: set[IdentityVersion] = set()
    for entry in mappings(versions):
        ident = entry.get("id")
        if not isinstance(ident, str) or entry.get("status") == "experimental":
            continue
        if ident == "v3" or ident.startswith("v3."):
            found.add(IdentityVersion.V3)
        elif ident == "v2.0":
            found.add(IdentityVersion.V2)
    return found


async def discover(identity: Identity, root: str) -> IdentityVersion:
    """The version to use at an identity root: v3 when offered and the credentials can use it
    (they carry a domain or an application credential), else v2.0 when offered."""
    url = yarl.URL(root.rstrip("/") + "/")
    reply = await identity.send("GET", url, ok=(200, 300), purpose="list its versions")
    data = identity.json(reply, url, f"the version list of {url.host}")
    offered = _offered(data)
    creds = identity.credentials
    fits_v3 = missing_v3_parts(creds) is None
    if IdentityVersion.V3 in offered and (fits_v3 or IdentityVersion.V2 not in offered):
        return IdentityVersion.V3
    if IdentityVersion.V2 in offered and not creds.has_v3_parts:
        return IdentityVersion.V2
    names = ", ".join(sorted(offered)) or "none"
    raise AuthError(
        f"cloud '{creds.name}': the identity service {url.host} offers {names}, and the "
        "credentials need Keystone v3"
        if offered
        else f"cloud '{creds.name}': the identity service {url.host} lists no Keystone version "
        "(v3 or v2.0); set identity_url to its /v3 or /v2.0 address"
    )
