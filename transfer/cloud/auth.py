"""Authentication: Keystone tokens per tenant (v2.0 or v3), and the service catalog that comes
with them.

Each tenant's ``CloudSession`` (``transfer.cloud.sessions``) holds one of two token sources:

- ``KeystoneAuth``: a password (v2.0 or v3) or an application credential (v3) buys a token
  (``keystone_v2``, ``keystone_v3``; an identity URL without a version is asked which it
  speaks first); the token is re-issued ahead of its expiry (margin: the smaller of 300 s and a
  tenth of its lifetime) and after a 401 from the Image API; callers that need a token at the
  same moment share one request;
- ``StaticTokenAuth``: a pre-issued token and explicit endpoints; nothing is asked of the
  identity service, and a 401 means the token was refused for good.

The password and the application credential secret go only to the identity service, and the
token only to the image endpoints the catalog (or ``credentials.endpoints``) names for it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import yarl

from transfer.cloud.identity import Identity, TokenAnswer, strip_version
from transfer.cloud.keystone_v2 import KeystoneV2
from transfer.cloud.keystone_v3 import KeystoneV3, discover
from transfer.cloud.transport import HttpTransport
from transfer.config.settings import Credentials, IdentityVersion, identity_version
from transfer.errors import (
    AuthError,
    ConfigError,
    Unauthorized,
)

__all__ = ["IssuedToken", "KeystoneAuth", "StaticTokenAuth", "strip_version", "tls_context"]

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


class KeystoneVersion(Protocol):
    """One Keystone API's way to a token (``KeystoneV2``, ``KeystoneV3``)."""

    version: IdentityVersion

    async def request(self, identity: Identity) -> TokenAnswer: ...


def _keystone(version: IdentityVersion, base: str) -> KeystoneVersion:
    return KeystoneV3(base) if version is IdentityVersion.V3 else KeystoneV2(base)


class KeystoneAuth:
    """Tokens for one tenant from its identity service (a ``TokenSource``)."""

    def __init__(self, credentials: Credentials, transport: HttpTransport) -> None:
        name = credentials.name
        secret = credentials.password or credentials.application_credential_secret
        if secret is None:
            raise ConfigError(
                f"cloud '{name}': identity auth needs a password or an application credential"
            )
        if credentials.password is not None and not credentials.username:
            raise ConfigError(f"cloud '{name}': password auth needs a username and a password")
        if credentials.password is not None and not (
            credentials.tenant_id or credentials.tenant_name
        ):
            raise ConfigError(f"cloud '{name}': password auth needs a tenant id or name")
        url = yarl.URL(credentials.identity_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"cloud '{name}': identity_url must be an http(s) URL, "
                f"got {credentials.identity_url!r}"
            )
        try:
            version = identity_version(credentials.identity_url)
        except ValueError as exc:
            raise ConfigError(f"cloud '{name}': identity_url: {exc}") from None
        self._credentials = credentials
        self._identity = Identity(credentials, transport)
        self._transport = transport
        self._keystone = _keystone(version, credentials.identity_url) if version else None
        self._lock = asyncio.Lock()
        self._current: IssuedToken | None = None
        self._early: asyncio.Task[IssuedToken] | None = None
        transport.register_secret(secret.reveal())

    @property
    def version(self) -> IdentityVersion | None:
        """The Keystone version in use (None until an identity root has been asked)."""
        return self._keystone.version if self._keystone is not None else None

    def prefetch(self) -> None:
        """Ask for the token now, ahead of its first use: the request goes out while the caller
        does other work, and the first ``issued()`` takes its outcome, the token or the error
        (one request either way)."""
        if self._early is None and self._current is None:
            self._early = asyncio.get_running_loop().create_task(self._issued())

    def close(self) -> None:
        """Cancel a prefetch nobody took (its outcome is dropped with it)."""
        early, self._early = self._early, None
        if early is not None and not early.done():
            early.cancel()
        elif early is not None and not early.cancelled():
            early.exception()  # retrieved: an unused failure is no "never retrieved" warning

    async def issued(self) -> IssuedToken:
        """The current token, issued first if there is none or it is about to expire."""
        early, self._early = self._early, None
        if early is not None:
            return await early
        return await self._issued()

    async def _issued(self) -> IssuedToken:
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
        if self._keystone is None:
            # The version's own address below the root, never a "self" link of the answer:
            # the password goes to no host but the one configured.
            root = self._credentials.identity_url.rstrip("/")
            version = await discover(self._identity, root)
            self._keystone = _keystone(version, f"{root}/{version}")
        started = time.monotonic()
        answer = await self._keystone.request(self._identity)
        where = f"the token answer from {yarl.URL(self._credentials.identity_url).host}"
        # Measure the lifetime on the server's clock (issued_at, else its Date header) so that
        # a skewed local clock cannot make a fresh token look expired or an old one fresh.
        lifetime = (answer.expires - (answer.server_now or datetime.now(UTC))).total_seconds()
        if lifetime <= 0:
            raise AuthError(f"{where} carries a token that has already expired ({answer.expires})")
        margin = min(REFRESH_MARGIN, 0.1 * lifetime)
        self._transport.register_secret(answer.value)
        if self._current is not None and self._current.value != answer.value:
            self._transport.forget_secret(self._current.value)
        self._current = IssuedToken(
            value=answer.value,
            expires=answer.expires,
            tenant_id=answer.tenant_id,
            catalog=answer.catalog,
            refresh_at=started + lifetime - margin,
        )
        return self._current


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
