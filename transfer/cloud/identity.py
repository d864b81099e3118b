"""What Keystone v2.0 and v3 share: one cloud's calls to its identity service (with the
messages a user sees when they fail), the answer a token request yields, and the readers of
times and image endpoint URLs.  The versions themselves are in ``keystone_v2`` and
``keystone_v3``; ``auth`` turns their answers into tokens that renew themselves.

A message names the cloud, the identity host, the tenant and the user, never a secret: the
transport scrubs the registered password, application credential secret and tokens from
whatever a server sends.  Until the identity service has answered once, a connection that
cannot be opened is tried ``FIRST_CONNECT_ATTEMPTS`` times only: a wrong URL or a service that
is down is said in a second or two, while a restart in the middle of a run (a token renewal)
gets the transport's whole budget.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yarl

from transfer.cloud.retry import RetryPolicy
from transfer.cloud.transport import HttpTransport, Reply, Retry
from transfer.config.settings import Credentials
from transfer.errors import ApiError, AuthError, ProtocolError, TransportError, Unauthorized

FIRST_CONNECT_ATTEMPTS = 3
#: Keystone's answer to any refused credentials (it does not say what was wrong).
GENERIC_REFUSAL = "The request you have made requires authentication."


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
        self.answered = False  # whether the service has answered once (then: full retries)

    @property
    def cloud(self) -> str:
        return self.credentials.name

    def who(self) -> str:
        """The tenant and the user the credentials name (never the secret)."""
        creds = self.credentials
        if creds.uses_application_credential:
            ident = creds.application_credential_id or creds.application_credential_name
            owner = f" of user '{creds.username}'" if creds.username else ""
            return f"application credential '{ident}'{owner}"
        tenant = f"tenant '{creds.tenant_id or creds.tenant_name}'"
        return f"user '{creds.username}' for {tenant}"

    def refusal(self, host: str | None, exc: Unauthorized) -> str:
        """Why the credentials were refused, as precisely as the service says."""
        head = f"the credentials for cloud '{self.cloud}' were refused by {host}: {self.who()}"
        said = exc.server_message.strip()
        if not said or said == GENERIC_REFUSAL:
            what = (
                "the credential id or its secret is wrong, or it expired"
                if self.credentials.uses_application_credential
                else "the user name, the password or the tenant is wrong"
            )
            return f"{head}: {what} (the identity service does not say which)"
        if "has no access to project" in said:
            # Keystone v3 says so when the password was right but the project is not the user's.
            return (
                f"{head}: the password is right, but the user has no access to that tenant ({said})"
            )
        return f"{head}: {said}"

    def _policy(self) -> RetryPolicy | None:
        if self.answered:
            return None
        return dataclasses.replace(
            self.transport.retry_policy, connect_attempts=FIRST_CONNECT_ATTEMPTS
        )

    def _address(self, url: yarl.URL) -> str:
        return str(url.with_user(None).with_query(None).with_fragment(None))

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
            reply = await self.transport.call(
                method,
                url,
                auth=None,
                ok=ok,
                mode=Retry.SAFE,
                headers=headers,
                body=body,
                policy=self._policy(),
            )
        except Unauthorized as exc:
            self.answered = True
            raise AuthError(self.refusal(host, exc)) from exc
        except ApiError as exc:
            self.answered = True
            if exc.retryable:
                raise
            raise AuthError(
                f"the identity service {host} refused to {purpose} for cloud '{self.cloud}' "
                f"({self.who()}): {exc}"
            ) from exc
        except TransportError as exc:
            # Same class (a dropped connection stays retryable), the cloud and URL in its text.
            detail = str(exc).removeprefix(f"cloud '{self.cloud}': ")
            where = f"{method} {url.path}: "
            if detail.startswith(where):  # the whole URL where the request names only its path
                detail = f"{method} {self._address(url)}: " + detail.removeprefix(where)
            raise type(exc)(
                f"cloud '{self.cloud}': the identity service {host} cannot be reached: {detail}"
            ) from exc
        except ProtocolError as exc:
            raise AuthError(
                f"the identity service {host} answered oddly for cloud '{self.cloud}': {exc}"
            ) from exc
        self.answered = True
        return reply

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
