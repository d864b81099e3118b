"""Fixtures of the multi-worker fault scenarios.

``cluster``: PostgreSQL, the emulator and the seeded sources on loopback, for one test.
``topology`` and ``net_cluster``: the same inside network namespaces (a hub and three hosts).

Each scenario runs once per seed in ``fault_seed``: one by default (so that ``make test`` keeps
to its time), or the comma-separated list in ``IMAGE_TRANSFER_FAULT_SEEDS``
(``IMAGE_TRANSFER_FAULT_SEEDS=1-8`` in ``make soak-workers``; ``1,2,7`` lists work too).  What
cannot run here (no PostgreSQL binaries, not root, no ``ip``, namespaces refused) skips with the
reason, unless ``IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1`` (as CI sets it): then it fails.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.hosts import netns
from tests.hosts.cluster import Cluster, pg_unavailable_reason
from tests.pg.conftest import _unavailable

DEFAULT_SEEDS = (1,)


def fault_seeds() -> list[int]:
    raw = os.environ.get("IMAGE_TRANSFER_FAULT_SEEDS", "").strip()
    if not raw:
        return list(DEFAULT_SEEDS)
    seeds: list[int] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            if dash and low:
                seeds.extend(range(int(low), int(high) + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise pytest.UsageError(
                f"IMAGE_TRANSFER_FAULT_SEEDS: expected integers like 1,2,7-9, got {part!r}"
            ) from None
    return seeds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fault_seed" in metafunc.fixturenames:
        seeds = fault_seeds()
        metafunc.parametrize("fault_seed", seeds, ids=[f"seed{s}" for s in seeds])


@pytest.fixture(scope="session")
def pg_available() -> None:
    reason = pg_unavailable_reason()
    if reason is not None:
        _unavailable(reason)


@pytest.fixture(scope="session")
def netns_available() -> None:
    reason = netns.unavailable_reason()
    if reason is not None:
        _unavailable(reason)
    netns.sweep_leftovers()  # of an earlier session that could not clean up


@pytest.fixture
async def cluster(pg_available: None, tmp_path: Path, fault_seed: int) -> AsyncIterator[Cluster]:
    """A fresh PostgreSQL server and emulator on loopback, with the seed's sources."""
    async with Cluster(tmp_path, fault_seed) as started:
        yield started


@pytest.fixture
def topology(netns_available: None) -> Iterator[netns.Topology]:
    """A hub namespace (bridge) and hosts h1, h2, h3 on it, removed afterwards."""
    with netns.topology(("h1", "h2", "h3")) as net:
        yield net


@pytest.fixture
async def net_cluster(
    pg_available: None, topology: netns.Topology, tmp_path: Path, fault_seed: int
) -> AsyncIterator[Cluster]:
    """PostgreSQL and the emulator in the hub namespace, with the seed's sources."""
    async with Cluster(tmp_path, fault_seed, topology=topology) as started:
        yield started
