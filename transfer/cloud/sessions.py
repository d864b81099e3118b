"""Sessions: ``CloudSession`` (one tenant's transport, token and image clients) and ``Clouds``
(one session per cloud name of a config, opened on first use, closed together).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Self

from transfer.cloud.auth import KeystoneAuth, StaticTokenAuth, strip_version, tls_context
from transfer.cloud.transport import HttpTransport
from transfer.config.settings import Config, Credentials, HttpSettings
from transfer.errors import CatalogError, ConfigError

if TYPE_CHECKING:
    from transfer.cloud.client import ImageClient


class CloudSession:
    """One tenant's session: its transport, its token, and an ImageClient per region.

    The token comes from the identity service (``KeystoneAuth``: a password or an application
    credential, Keystone v2.0 or v3 as ``identity_url`` says) or is pre-issued
    (``StaticTokenAuth``, with explicit endpoints).

    Use as ``async with CloudSession(credentials) as cloud: client = await
    cloud.image_client("KR1")``.
    """

    def __init__(self, credentials: Credentials, *, settings: HttpSettings | None = None) -> None:
        if (
            credentials.token is None
            and credentials.password is None
            and credentials.application_credential_secret is None
        ):
            raise ConfigError(
                f"cloud '{credentials.name}': neither a password, an application credential "
                "nor a token is set"
            )
        if credentials.token is not None and not credentials.endpoints:
            raise ConfigError(
                f"cloud '{credentials.name}': a pre-issued token needs explicit image endpoints"
            )
        self.credentials = credentials
        self._transport = HttpTransport(
            settings or HttpSettings(),
            ssl_context=tls_context(credentials),
            cloud=credentials.name,
        )
        self._auth: KeystoneAuth | StaticTokenAuth
        if credentials.token is not None:
            self._auth = StaticTokenAuth(credentials, self._transport)
        else:
            self._auth = KeystoneAuth(credentials, self._transport)
        self._explicit = {k.upper(): strip_version(v) for k, v in credentials.endpoints.items()}
        self._clients: dict[str, ImageClient] = {}

    def __repr__(self) -> str:
        return f"CloudSession(cloud={self.credentials.name!r})"

    async def __aenter__(self) -> Self:
        await self._transport.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if isinstance(self._auth, KeystoneAuth):
            self._auth.close()
        await self._transport.close()

    def prefetch_token(self) -> None:
        """Send the token request now (identity auth; nothing for a pre-issued token), so that
        it is in flight while the caller imports or opens what it needs next."""
        if isinstance(self._auth, KeystoneAuth):
            self._auth.prefetch()

    @property
    def identity_version(self) -> str | None:
        """The Keystone version the token comes from (None: a pre-issued token, or an identity
        root not asked yet)."""
        if isinstance(self._auth, KeystoneAuth):
            version = self._auth.version
            return str(version) if version is not None else None
        return None

    async def tenant_id(self) -> str:
        """The tenant the token is scoped to (token mode: ``credentials.tenant_id``)."""
        if isinstance(self._auth, KeystoneAuth):
            return (await self._auth.issued()).tenant_id
        if not self.credentials.tenant_id:
            raise ConfigError(
                f"cloud '{self.credentials.name}': with a pre-issued token, set the tenant id too"
            )
        return self.credentials.tenant_id

    async def _catalog(self) -> Mapping[str, str]:
        if isinstance(self._auth, KeystoneAuth):
            return (await self._auth.issued()).catalog
        return {}

    async def regions(self) -> list[str]:
        """Regions with an image endpoint (catalog and explicit ones), upper case, sorted."""
        return sorted(set(await self._catalog()) | set(self._explicit))

    async def image_client(self, region: str) -> ImageClient:
        key = region.upper()
        client = self._clients.get(key)
        if client is not None:
            return client
        endpoint = self._explicit.get(key)
        if endpoint is None:
            catalog = await self._catalog()
            endpoint = catalog.get(key)
            if endpoint is None:
                known = sorted(set(catalog) | set(self._explicit))
                source = "the catalog" if isinstance(self._auth, KeystoneAuth) else "the endpoints"
                raise CatalogError(
                    f"cloud '{self.credentials.name}': no image endpoint for region {region!r}; "
                    f"{source} lists {', '.join(known) if known else 'none'}"
                )
        tenant = self.credentials.tenant_id
        if isinstance(self._auth, KeystoneAuth):
            tenant = (await self._auth.issued()).tenant_id
        # Imported at the first image client, not with the sessions: a ``run`` sends its token
        # requests first and imports the rest while they are in flight.
        from transfer.cloud.client import ImageClient

        client = ImageClient(
            self._transport, self._auth, region=key, endpoint=endpoint, tenant_id=tenant
        )
        self._clients[key] = client
        return client


class Clouds:
    """One authenticated session per cloud name, opened on first use, closed together."""

    def __init__(self, config: Config, stack: AsyncExitStack, settings: HttpSettings) -> None:
        self._config = config
        self._stack = stack
        self._settings = settings
        self._sessions: dict[str, CloudSession] = {}
        # asyncio's: an anyio primitive would load anyio's event-loop backend before a run's
        # token requests go out (``transfer.cli.inflight``)
        self._lock = asyncio.Lock()

    async def session(self, name: str) -> CloudSession:
        async with self._lock:
            if name not in self._sessions:
                session = CloudSession(self._config.clouds[name], settings=self._settings)
                self._sessions[name] = await self._stack.enter_async_context(session)
            return self._sessions[name]

    async def client(self, name: str, region: str) -> ImageClient:
        return await (await self.session(name)).image_client(region)

    async def prefetch_tokens(self, names: Iterable[str]) -> None:
        """Start the token requests of these clouds' sessions (see ``prefetch_token``)."""
        for name in dict.fromkeys(names):
            (await self.session(name)).prefetch_token()


@asynccontextmanager
async def open_clouds(
    config: Config, settings: HttpSettings | None = None
) -> AsyncIterator[Clouds]:
    async with AsyncExitStack() as stack:
        yield Clouds(config, stack, settings or HttpSettings())
