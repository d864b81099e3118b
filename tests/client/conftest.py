"""Fixtures for the client tests: an emulator of their own, and credentials for its tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from transfer.config.settings import Credentials, HttpSettings, Secret
from transfer.emulator import Emulator, TenantSpec

#: Retries fast enough for tests, still several attempts deep.
FAST = HttpSettings(attempts=5, backoff_base=0.01, backoff_cap=0.2, retry_total=10.0)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(regions=("KR1", "KR2"), seed=0) as emulator:
        yield emulator


def credentials_for(
    emu: Emulator, tenant: TenantSpec, *, password: str | None = None
) -> Credentials:
    return Credentials(
        name=tenant.name,
        identity_url=emu.identity_url,
        tenant_id=tenant.tenant_id,
        username=tenant.username,
        password=Secret(password if password is not None else tenant.password),
    )
