"""Authentication: Keystone v2.0 tokens per tenant, and the service catalog that comes with them.

Each tenant's ``CloudSession`` (``transfer.cloud.sessions``) holds one of two token sources:

- password: ``POST {identity_url}/tokens``; the token is re-issued ahead of its expiry (margin:
  the smaller of 300 s and a tenth of its lifetime) and after a 401 from the Image API; callers
  that need a token at the same moment share one request;
- token: a pre-issued token and explicit endpoints; nothing is asked of the identity service, and
  a 401 means the token was refused for good.

The password goes only to the identity service, and the token only to the image endpoints the
catalog (or ``credentials.endpoints``) names for it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yarl

from transfer.cloud.transport import HttpTransport, Retry
from transfer.config.settings import Credentials
from transfer.errors import (
    ApiError,
    AuthError,
    ConfigError,
    ProtocolError,
    Unauthorized,
)

REFRESH_MARGIN = 300.0


@dataclass(frozen=True)
class IssuedToken:
    """A token and what came with it.  ``value`` never shows in a repr."""

    value: str = field(repr=False)
    expires: datetime
    tenant_id: str
    catalog: Mapping[str, str]  # upper-case region -> image endpoint
    refresh_at: float  # time.monotonic() after which it is re-issued

    def fresh(self) -> bool:
        return time.monotonic() < self.refresh_at


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _image_catalog(access: Mapping[str, Any]) -> dict[str, str]:
    catalog: dict[str, str] = {}
    services = access.get("serviceCatalog")
    if not isinstance(services, list):
        return catalog
    for service in services:
        if not isinstance(service, Mapping) or service.get("type") != "image":
            continue
        endpoints = service.get("endpoints")
        for endpoint in endpoints if isinstance(endpoints, list) else []:
            if not isinstance(endpoint, Mapping):
                continue
            region, url = endpoint.get("region"), endpoint.get("publicURL")
            if isinstance(region, str) and isinstance(url, str) and url:
                catalog[region.upper()] = strip_version(url)
    return catalog


def strip_version(url: str) -> str:
    # NHN's catalog has no /v2 suffix; some OpenStack catalogs do, and the client adds its own.
    url = url.rstrip("/")
    return url[: -len("/v2")] if url.endswith("/v2") else url


class PasswordAuth:
    """Keystone v2.0 password authentication for one tenant (a ``TokenSource``)."""

    def __init__(self, credentials: Credentials, transport: HttpTransport) -> None:
        if credentials.password is None or not credentials.username:
            raise ConfigError(
                f"cloud '{credentials.name}': password auth needs a username and a password"
            )
        if not (credentials.tenant_id or credentials.tenant_name):
            raise ConfigError(
                f"cloud '{credentials.name}': password auth needs a tenant id or name"
            )
        self._credentials = credentials
        self._transport = transport
        self._url = yarl.URL(credentials.identity_url.rstrip("/") + "/tokens")
        if self._url.scheme not in ("http", "https") or not self._url.host:
            raise ConfigError(
                f"cloud '{credentials.name}': identity_url must be an http(s) URL, "
                f"got {credentials.identity_url!r}"
            )
        self._lock = asyncio.Lock()
        self._current: IssuedToken | None = None
        transport.register_secret(credentials.password.reveal())

    async def issued(self) -> IssuedToken:
        """The current token, issued first if there is none or it is about to expire."""
        current = self._current
        if current is not None and current.fresh():
            return current
        async with self._lock:
            # Whoever held the lock before us may have issued one already.
            current = self._current
            if current is None or not current.fresh():
                current = await self._issue()
            return current

    async def token(self) -> str:
        return (await self.issued()).value

    async def reissue(self, failed: str, error: Unauthorized) -> None:
        async with self._lock:
            current = self._current
            if current is not None and current.value != failed and current.fresh():
                return  # someone else already replaced the refused token
            await self._issue()

    async def _issue(self) -> IssuedToken:
        creds = self._credentials
        assert creds.password is not None and creds.username is not None
        scope: dict[str, Any] = (
            {"tenantId": creds.tenant_id} if creds.tenant_id else {"tenantName": creds.tenant_name}
        )
        scope["passwordCredentials"] = {
            "username": creds.username,
            "password": creds.password.reveal(),
        }
        body = _json_bytes({"auth": scope})
        host = self._url.host
        started = time.monotonic()
        try:
            reply = await self._transport.call(
                "POST",
                self._url,
                auth=None,
                ok=(200, 201, 203),
                mode=Retry.SAFE,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                body=body,
            )
        except Unauthorized as exc:
            raise AuthError(
                f"the credentials for cloud '{creds.name}' were refused by {host}"
            ) from exc
        except ApiError as exc:
            if exc.retryable:
                raise
            raise AuthError(f"the identity service {host} refused to issue a token: {exc}") from exc
        except ProtocolError as exc:
            raise AuthError(f"the identity service {host} answered oddly: {exc}") from exc
        where = f"the token answer from {host}"
        try:
            data = self._transport.parse_json(reply, f"POST {self._url.path}")
        except Exception as exc:
            raise AuthError(f"{where} is not JSON") from exc
        access = data.get("access") if isinstance(data, Mapping) else None
        token = access.get("token") if isinstance(access, Mapping) else None
        if not isinstance(access, Mapping) or not isinstance(token, Mapping):
            raise AuthError(f"{where} has no 'access.token'")
        value = token.get("id")
        if not isinstance(value, str) or not value:
            raise AuthError(f"{where} has no token 'id'")
        expires = _parse_time(token.get("expires"))
        if expires is None:
            raise AuthError(f"{where} has no readable 'expires' ({token.get('expires')!r})")
        tenant = token.get("tenant")
        tenant_id = tenant.get("id") if isinstance(tenant, Mapping) else None
        if not isinstance(tenant_id, str) or not tenant_id:
            tenant_id = creds.tenant_id
        if not tenant_id:
            raise AuthError(f"{where} is not scoped to a tenant")
        # Measure the lifetime on the server's clock (issued_at, else its Date header) so that
        # a skewed local clock cannot make a fresh token look expired or an old one fresh.
        server_now = _parse_time(token.get("issued_at")) or _http_date(reply.headers.get("Date"))
        lifetime = (expires - (server_now or datetime.now(UTC))).total_seconds()
        if lifetime <= 0:
            raise AuthError(f"{where} carries a token that has already expired ({expires})")
        margin = min(REFRESH_MARGIN, 0.1 * lifetime)
        self._transport.register_secret(value)
        if self._current is not None:
            self._transport.forget_secret(self._current.value)
        self._current = IssuedToken(
            value=value,
            expires=expires,
            tenant_id=tenant_id,
            catalog=_image_catalog(access),
            refresh_at=started + lifetime - margin,
        )
        return self._current


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload).encode()


class StaticTokenAuth:
    """A pre-issued token (a ``TokenSource`` that cannot renew itself)."""

    def __init__(self, credentials: Credentials, transport: HttpTransport) -> None:
        assert credentials.token is not None
        self._name = credentials.name
        self._value = credentials.token.reveal()
        transport.register_secret(self._value)

    async def token(self) -> str:
        return self._value

    async def reissue(self, failed: str, error: Unauthorized) -> None:
        raise Unauthorized(
            f"the pre-issued token for cloud '{self._name}' was refused; issue a new one",
            method=error.method,
            path=error.path,
        ) from error


def tls_context(credentials: Credentials) -> ssl.SSLContext | bool:
    if not credentials.verify_tls:
        return False
    if credentials.ca_bundle:
        try:
            return ssl.create_default_context(cafile=credentials.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(
                f"cloud '{credentials.name}': cannot load the CA bundle "
                f"{credentials.ca_bundle}: {reason}"
            ) from exc
    return True
