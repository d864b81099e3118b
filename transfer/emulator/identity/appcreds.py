"""Application credentials: a user's named secret bound to one project (Keystone v3).

Only a hash of each secret is kept; the secret itself is shown once, in the create answer.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class AppCred:
    id: str
    name: str
    user_id: str
    project_id: str
    secret_hash: bytes = field(repr=False)
    description: str | None = None
    expires_at: float | None = None
    unrestricted: bool = False

    def secret_ok(self, secret: str) -> bool:
        return secrets.compare_digest(self.secret_hash, _hash(secret))

    def live(self, now: float | None = None) -> bool:
        return self.expires_at is None or self.expires_at > (time.time() if now is None else now)


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_expiry(value: str) -> float:
    """An ISO 8601 time (``2026-12-31T00:00:00``, optional fraction and ``Z``/offset; UTC when
    no zone is given) as epoch seconds; ValueError if it is not one."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class AppCredBook:
    """Every user's application credentials."""

    def __init__(self) -> None:
        self._creds: dict[str, AppCred] = {}

    def create(
        self,
        user_id: str,
        project_id: str,
        name: str,
        *,
        secret: str | None = None,
        description: str | None = None,
        expires_at: float | None = None,
        unrestricted: bool = False,
    ) -> tuple[AppCred, str]:
        """A new credential and its secret (generated when None); ValueError on a name the
        user already has."""
        if self.named(user_id, name) is not None:
            raise ValueError(f"an application credential named {name!r} already exists")
        shown = secret if secret is not None else secrets.token_urlsafe(64)
        cred = AppCred(
            uuid.uuid4().hex,
            name,
            user_id,
            project_id,
            _hash(shown),
            description,
            expires_at,
            unrestricted,
        )
        self._creds[cred.id] = cred
        return cred, shown

    def get(self, cred_id: str) -> AppCred | None:
        return self._creds.get(cred_id)

    def named(self, user_id: str, name: str) -> AppCred | None:
        for cred in self._creds.values():
            if cred.user_id == user_id and cred.name == name:
                return cred
        return None

    def of_user(self, user_id: str) -> list[AppCred]:
        return [c for c in self._creds.values() if c.user_id == user_id]

    def delete(self, cred_id: str) -> bool:
        return self._creds.pop(cred_id, None) is not None
