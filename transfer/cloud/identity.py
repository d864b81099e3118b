"""What Keystone v2.0 and v3 share: one cloud's calls to its identity service (with the
messages a user sees when they fail), the answer a token request yields, and the readers of
times and image endpoint URLs.  The versions themselves are in ``keystone_v2`` and
``keystone_v3``; ``auth`` turns their answers into tokens that renew themselves.

A message names the cloud and the identity host, never a secret: the transport scrubs the
registered password, application credential secret and tokens from whatever a server sends.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yarl

from transfer.cloud.transport import HttpTransport, Reply, Retry
from transfer.config.settings import Credentials
from transfer.errors import ApiError, AuthError, ProtocolError, TransportError, Unauthorized


@dataclass(frozen=True)
class TokenAnswer:
    """What one token request yielded.  ``value`` never shows in a repr."""

    value: str = field(repr=False)
    expires: datetime
    server_now: datetime | None  # the server's clock when it issued the token, if it said
    tenant_id: str
    catalog: Mapping[str, str]  # upper-case region -> image endpoint


class Identity:
    """One cloud's identity service: its calls and the messages of their failures."""

    def __init__(self, credentials: Credentials, transport: HttpTransport) -> None:
        self.credentials = credentials
        self.transport = transport

    @property
    def cloud(self) -> str:
        return self.credentials.name

    async def send(
        self,
        method: str,
        url: yarl.URL,
        *,
        ok: Collection[int],
        payload: Any = None,
        purpose: str = "issue a token",
    ) -> Reply:
        """A request to the identity service; an ``AuthError`` naming the cloud when refused."""
        host = url.host
        headers = {"Accept": "application/json"}
        body = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(payload).encode()
        try:
            return await self.transport.call(
                method, url, auth=None, ok=ok, mode=Retry.SAFE, headers=headers, body=body
            )
        except Unauthorized as exc:
            raise AuthError(
                f"the credentials for cloud '{self.cloud}' were refused by {host}"
            ) from exc
        except ApiError as exc:
            if exc.retryable:
                raise
            raise AuthError(
                f"the identity service {host} refused to {purpose} for cloud '{self.cloud}': {exc}"
            ) from exc
        except TransportError as exc:
            # Same class (a dropped connection stays retryable), the cloud named in its text.
            raise type(exc)(
                f"cloud '{self.cloud}': the identity service {host} cannot be reached: {exc}"
            ) from exc
        except ProtocolError as exc:
            raise AuthError(
                f"the identity service {host} answered oddly for cloud '{self.cloud}': {exc}"
            ) from exc

    def json(self, reply: Reply, url: yarl.URL, where: str) -> Any:
        try:
            return self.transport.parse_json(reply, f"{reply.status} from {url.path}")
        except Exception as exc:
            raise AuthError(f"{where} is not JSON") from exc

    def where(self, url: yarl.URL) -> str:
        return f"the token answer from {url.host}"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def strip_version(url: str) -> str:
    # NHN's catalog has no /v2 suffix; some OpenStack catalogs do, and the client adds its own.
    url = url.rstrip("/")
    return url[: -len("/v2")] if url.endswith("/v2") else url


def mappings(value: Any) -> list[Mapping[str, Any]]:
    """The mappings of a JSON list (anything else: none)."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]
