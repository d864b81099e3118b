"""Fixtures shared by every test: a started emulator, an HTTP session, and tokens obtained
through the emulator's identity API (over a real socket, as a client would)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import structlog

from transfer.emulator import Emulator, TenantSpec


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Commands run in-process configure structlog for themselves: undo it after each test,
    so a test capturing logs never inherits another test's level or renderer."""
    yield
    structlog.reset_defaults()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An emulator with the defaults: regions KR1 and KR2, tenants demo-src and demo-dst."""
    async with Emulator() as emu:
        yield emu


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def token(
    emulator: Emulator,
    tenant: TenantSpec | str = "demo-src",
    session: aiohttp.ClientSession | None = None,
) -> str:
    """A token for a tenant (a TenantSpec or a tenant name) via ``POST /v2.0/tokens``."""
    spec = emulator.tenant(tenant) if isinstance(tenant, str) else tenant
    body = {
        "auth": {
            "tenantId": spec.tenant_id,
            "passwordCredentials": {"username": spec.username, "password": spec.password},
        }
    }
    own_session = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        async with client.post(emulator.identity_url + "/tokens", json=body) as resp:
            assert resp.status == 200, await resp.text()
            data = await resp.json()
    finally:
        if own_session:
            await client.close()
    token_id = data["access"]["token"]["id"]
    assert isinstance(token_id, str)
    return token_id
