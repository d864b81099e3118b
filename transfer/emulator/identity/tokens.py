"""Issued tokens (Keystone v2.0 and v3 alike) and their lifetimes: the ``TokenBook`` the image
regions ask which tenant a token belongs to.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Token:
    """One issued token: its scope (``tenant_id`` None = unscoped), user and how it was got."""

    tenant_id: str | None
    issued_at: float
    expires_at: float
    username: str | None = None  # None: issued in-process for a tenant, the tenant's user
    methods: tuple[str, ...] = ("password",)
    app_cred_id: str | None = None
    audit_id: str = ""


class TokenBook:
    """Issued tokens and their lifetimes (kept in memory only: a restart forgets them)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self._clock = clock
        self._tokens: dict[str, Token] = {}

    def issue(
        self,
        tenant_id: str | None,
        *,
        username: str | None = None,
        methods: tuple[str, ...] = ("password",),
        app_cred_id: str | None = None,
        not_after: float | None = None,
    ) -> tuple[str, Token]:
        """A new token; ``not_after`` caps its expiry (an application credential's own)."""
        now = self._clock()
        self._forget_expired(now)
        token_id = secrets.token_hex(16)
        expires = now + self.ttl if not_after is None else min(now + self.ttl, not_after)
        token = Token(
            tenant_id,
            now,
            expires,
            username=username,
            methods=methods,
            app_cred_id=app_cred_id,
            audit_id=secrets.token_urlsafe(16),
        )
        self._tokens[token_id] = token
        return token_id, token

    def get(self, token_id: str) -> Token | None:
        """The live token of this id, or None (unknown, expired or revoked)."""
        token = self._tokens.get(token_id)
        if token is None:
            return None
        if token.expires_at <= self._clock():
            del self._tokens[token_id]
            return None
        return token

    def tenant_of(self, token_id: str) -> str | None:
        """The tenant a live, scoped token belongs to, or None (unknown, expired, revoked or
        unscoped: an unscoped token opens no image region)."""
        token = self.get(token_id)
        return None if token is None else token.tenant_id

    def revoke(self, token_id: str) -> bool:
        return self._tokens.pop(token_id, None) is not None

    def revoke_where(self, condition: Callable[[Token], bool]) -> None:
        for token_id in [t for t, tok in self._tokens.items() if condition(tok)]:
            del self._tokens[token_id]

    def expire_all(self) -> None:
        self._tokens.clear()

    def _forget_expired(self, now: float) -> None:
        if len(self._tokens) < 1024:
            return
        self.revoke_where(lambda tok: tok.expires_at <= now)
