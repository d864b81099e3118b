"""Fixtures of the ecosystem tours: the clients' environment (``.interop/clients-venv``, built
on first use like Glance's, skipped without a package index unless
IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1), two emulated clouds as real ``image-transfer emulator``
processes, and every tour run at once on both (CLI start-up is slow; the tours of different
clients and clouds share nothing, so they run concurrently and each test reads its outcome).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

pytest.register_assert_rewrite("tests.ecosystem.tour")

from interop.clients import ClientsInstall, ensure_clients  # noqa: E402
from tests.ecosystem.clients import CLIENTS, WHO, Client, Sdk  # noqa: E402
from tests.ecosystem.cloud import NHN, PRIVATE, CloudKind, EmulatorCloud, start_clouds  # noqa: E402
from tests.ecosystem.tour import PAGE, tour  # noqa: E402
from tests.interop.conftest import install_or_skip  # noqa: E402

KINDS: dict[str, CloudKind] = {"nhn": NHN, "private": PRIVATE}


@dataclass
class TourResult:
    client: Client
    error: BaseException | None = None
    seconds: float = 0.0
    steps: list[str] = field(default_factory=list)

    def transcript(self) -> str:
        return "\n\n".join(str(o) for o in self.client.log)


@pytest.fixture(scope="session")
def clients_install() -> ClientsInstall:
    return install_or_skip(ensure_clients, what="the OpenStack clients")


@pytest.fixture(scope="package")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, EmulatorCloud]]:
    """The two clouds, each with an owner, a member and an outsider tenant per client."""
    tenants = tuple(f"{client}-{who}" for client in CLIENTS for who in WHO)
    logs = tmp_path_factory.mktemp("emulators")
    started = {
        name: EmulatorCloud(kind, tenants, PAGE, logs / f"{name}.log")
        for name, kind in KINDS.items()
    }
    try:
        asyncio.run(start_clouds(*started.values()))
        yield started
    finally:
        for cloud in started.values():
            cloud.stop()


async def _one(result: TourResult, session: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    try:
        if isinstance(result.client, Sdk):
            await result.client.start()
        try:
            await tour(result.client, session)
        finally:
            await result.client.close()
    except Exception as exc:  # reported by the test of this tour, with its transcript
        result.error = exc
        result.steps = traceback.format_exception(exc)
    result.seconds = time.monotonic() - started


async def _all(results: list[TourResult]) -> None:
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(_one(r, session) for r in results))


@pytest.fixture(scope="package")
def tours(
    clients_install: ClientsInstall,
    clouds: dict[str, EmulatorCloud],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[tuple[str, str], TourResult]:
    """Every client's tour of every cloud, run concurrently; keyed by (client, cloud)."""
    results: dict[tuple[str, str], TourResult] = {}
    for cloud_name, cloud in clouds.items():
        for client_name, kind in CLIENTS.items():
            work = tmp_path_factory.mktemp(f"{client_name}-{cloud_name}")
            results[client_name, cloud_name] = TourResult(
                kind(client_name, cloud, clients_install, Path(work))
            )
    asyncio.run(_all(list(results.values())))
    return results
