"""Fixtures of the emulator's own tests: the Image API of region KR1 as each default tenant."""

from __future__ import annotations

import aiohttp
import pytest

from tests.emulator.helpers import Api, api_for
from transfer.emulator import Emulator


@pytest.fixture
async def src(emulator: Emulator, http: aiohttp.ClientSession) -> Api:
    """KR1 as tenant demo-src."""
    return await api_for(emulator, http, "demo-src")


@pytest.fixture
async def dst(emulator: Emulator, http: aiohttp.ClientSession) -> Api:
    """KR1 as tenant demo-dst."""
    return await api_for(emulator, http, "demo-dst")
