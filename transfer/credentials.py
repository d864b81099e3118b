"""Credentials for one tenant, and the Secret wrapper that keeps them out of logs.

Loading them (from a config file, flags, ``OS_*`` variables) is the config module's job; using
them (issuing tokens, resolving endpoints) is the auth module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

NHN_IDENTITY_URL = "https://api-identity-infrastructure.nhncloudservice.com/v2.0"


class Secret:
    """A string that never shows itself: ``str``, ``repr`` and f-strings give ``'***'``.

    Call ``reveal()`` at the one place that must send it (an HTTP header or body).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """How to reach one tenant's Image API.

    Password mode: ``identity_url`` + ``tenant_id`` + ``username`` + ``password``; the image
    endpoint of a region comes from the token's service catalog unless ``endpoints`` names it.
    Token mode (no identity service): ``token`` + ``endpoints`` (region name -> image URL).
    """

    name: str = "default"  # the config's name for this cloud, used in messages
    identity_url: str = NHN_IDENTITY_URL
    tenant_id: str | None = None
    tenant_name: str | None = None
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    ca_bundle: str | None = None  # path to a CA bundle; None = the system's
    verify_tls: bool = True

    @property
    def uses_token(self) -> bool:
        return self.token is not None
