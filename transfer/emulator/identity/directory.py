"""Who the emulated identity service knows: tenants (projects), their users, the one domain.

Every tenant is in the domain ``default`` (``Default``).  A ``TenantSpec`` names a tenant and
its API user; specs sharing a username are one user with access to each of their tenants.
That user's password is the one of the spec of the tenant being scoped to (an unscoped
request may give any of them).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

_TENANT_NAMESPACE = uuid.UUID("6f1c3c52-5c1e-4bb0-9d0e-7a3f2e6b4c11")

DOMAIN_ID = "default"
DOMAIN_NAME = "Default"


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


def stable_id(kind: str, name: str) -> str:
    """An id (32 hex characters) for a user, endpoint or role that depends only on its name."""
    return uuid.uuid5(_TENANT_NAMESPACE, f"{kind}:{name}").hex


@dataclass(frozen=True)
class User:
    id: str
    name: str
    tenants: tuple[TenantSpec, ...]


class Directory:
    """Lookups of tenants and users by id or name, and the password check."""

    def __init__(self, tenants: Sequence[TenantSpec]) -> None:
        self._by_id = {t.tenant_id: t for t in tenants}
        self._by_name = {t.name: t for t in tenants}
        grouped: dict[str, list[TenantSpec]] = {}
        for spec in tenants:
            grouped.setdefault(spec.username, []).append(spec)
        self._users = {
            name: User(stable_id("user", name), name, tuple(specs))
            for name, specs in grouped.items()
        }
        self._users_by_id = {u.id: u for u in self._users.values()}

    @property
    def tenants(self) -> tuple[TenantSpec, ...]:
        return tuple(self._by_id.values())

    def tenant(self, tenant_id: str) -> TenantSpec | None:
        return self._by_id.get(tenant_id)

    def tenant_named(self, name: str) -> TenantSpec | None:
        return self._by_name.get(name)

    def user(self, user_id: str) -> User | None:
        return self._users_by_id.get(user_id)

    def user_named(self, name: str) -> User | None:
        return self._users.get(name)

    def user_of(self, username: str | None, tenant_id: str | None) -> User | None:
        """A token's user: its own username, else (issued in-process) its tenant's user."""
        if username is None and tenant_id is not None:
            spec = self._by_id.get(tenant_id)
            username = spec.username if spec is not None else None
        return self._users.get(username) if username is not None else None

    @staticmethod
    def may_use(user: User, tenant: TenantSpec) -> bool:
        return any(spec.tenant_id == tenant.tenant_id for spec in user.tenants)

    @staticmethod
    def password_ok(user: User, password: str, tenant: TenantSpec | None) -> bool:
        """The password of the spec of ``tenant`` (any of the user's specs when unscoped)."""
        candidates = [
            spec for spec in user.tenants if tenant is None or spec.tenant_id == tenant.tenant_id
        ]
        given = password.encode()
        # Compare with every candidate so the time taken does not tell which one matched.
        matches = [secrets.compare_digest(spec.password.encode(), given) for spec in candidates]
        return any(matches)
