"""Three ``image-transfer run`` workers share one job through one PostgreSQL journal while a
fault strikes mid-run: a worker paused past its lease, a worker killed, the database crashed.
Afterwards the target cloud, listed through plain HTTP, must hold exactly one active copy of
every source, with the source's size and checksum, and nothing half-made; and the journal must
record every item ``done``.

Every fault lands while the chosen worker (or some worker) is inside an ``upload`` step, as the
journal's ``steps`` table shows it; the victim and the moment come from the test's seed.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from tests.hosts.cluster import (
    DST,
    LEASE_SECONDS,
    MARKER,
    TARGET_REGION,
    WORKERS,
    Cluster,
    Worker,
    get_token,
    source_bytes,
    strike_when_uploading,
)


def others(workers: list[Worker], victim: Worker) -> list[str]:
    return [w.name for w in workers if w is not victim]


async def test_control_three_workers_without_a_fault(cluster: Cluster) -> None:
    """No fault: proves the harness (this one must pass whatever the engine's leases do)."""
    began = time.monotonic()
    workers = await cluster.start_workers(WORKERS)
    outcomes = await cluster.wait_workers(workers)
    took = time.monotonic() - began
    verdict = await cluster.verdict(outcomes, must_succeed=WORKERS, notes=[f"run: {took:.1f}s"])
    print(verdict.report())
    assert verdict.failures() == [], verdict.report()


async def test_a_worker_paused_past_its_lease_inside_an_upload(
    cluster: Cluster, fault_seed: int
) -> None:
    """SIGSTOP inside an upload, for three leases; then SIGCONT.  The others take its images
    over; when it wakes it must not add a second copy (it may exit 0 or not)."""
    rng = random.Random(f"pause-{fault_seed}")
    workers = await cluster.start_workers(WORKERS)
    victim = rng.choice(workers)
    struck = await strike_when_uploading(cluster, rng, victim.name)
    victim.send(signal.SIGSTOP)
    paused = 3 * LEASE_SECONDS
    await asyncio.sleep(paused)
    victim.send(signal.SIGCONT)
    outcomes = await cluster.wait_workers(workers)
    note = f"{victim.name} stopped inside an upload for {paused:g}s, then continued"
    verdict = await cluster.verdict(
        outcomes, must_succeed=others(workers, victim), notes=[note], watch=struck
    )
    print(verdict.report())
    assert verdict.failures() == [], verdict.report()


async def test_a_worker_killed_inside_an_upload(cluster: Cluster, fault_seed: int) -> None:
    """SIGKILL inside an upload: the others finish its images, with no second copy and no
    target left ``queued``."""
    rng = random.Random(f"kill-{fault_seed}")
    workers = await cluster.start_workers(WORKERS)
    victim = rng.choice(workers)
    struck = await strike_when_uploading(cluster, rng, victim.name)
    victim.send(signal.SIGKILL)
    outcomes = await cluster.wait_workers(workers)
    note = f"{victim.name} killed (SIGKILL) inside an upload"
    verdict = await cluster.verdict(
        outcomes, must_succeed=others(workers, victim), notes=[note], watch=struck
    )
    print(verdict.report())
    assert verdict.failures() == [], verdict.report()


async def test_the_database_crashes_while_uploads_are_in_flight(
    cluster: Cluster, fault_seed: int
) -> None:
    """``pg_ctl -m immediate`` while uploads run, back after a second or two: every worker
    rides it out and exits 0."""
    rng = random.Random(f"pg-{fault_seed}")
    workers = await cluster.start_workers(WORKERS)
    struck = await strike_when_uploading(cluster, rng, None)
    down = rng.uniform(1.0, 2.0)
    await cluster.pg.restart_immediate(down)
    outcomes = await cluster.wait_workers(workers)
    note = f"PostgreSQL crashed (immediate) inside an upload, down {down:.1f}s"
    verdict = await cluster.verdict(outcomes, must_succeed=WORKERS, notes=[note], watch=struck)
    print(verdict.report())
    assert verdict.failures() == [], verdict.report()


async def test_the_proof_sees_missing_duplicate_half_made_and_stray_targets(
    pg_available: None, tmp_path: Path
) -> None:
    """The check itself, on targets made by hand: it finds every kind of wrong copy, and
    nothing where the copy is right."""
    async with Cluster(tmp_path, seed=0, images=7) as cluster:
        http, cloud = cluster.http, cluster.cloud
        assert cluster.emulator is not None
        await cluster.emulator.set_faults(http, bandwidth=None)
        token = await get_token(http, cloud.identity_url, DST)
        base = cloud.regions[TARGET_REGION]
        headers = {"X-Auth-Token": token}

        async def target(named: str | None, data: bytes | None, **fields: Any) -> None:
            body: dict[str, Any] = {"name": "copy", "disk_format": "qcow2", "os_type": "linux"}
            body.update(container_format="bare", **fields)
            if named is not None:
                body[MARKER] = named
            async with http.post(base + "/v2/images", json=body, headers=headers) as resp:
                assert resp.status == 201, await resp.text()
                image_id = (await resp.json())["id"]
            if data is not None:
                sent = {**headers, "Content-Type": "application/octet-stream"}
                url = f"{base}/v2/images/{image_id}/file"
                async with http.put(url, data=data, headers=sent) as resp:
                    assert resp.status == 204, await resp.text()

        src = cluster.sources

        def data(index: int) -> bytes:
            return source_bytes(0, index, src[index].size)

        await target(src[0].id, data(0))  # right
        # src[1]: no copy at all
        await target(src[2].id, data(2))
        await target(src[2].id, data(2))  # a duplicate, active and faithful
        await target(src[3].id, None)  # left queued
        await target(src[4].id, data(4)[:-1] + b"x")  # wrong bytes
        await target(src[5].id, data(5))
        await target(src[5].id, data(5), os_hidden=True)  # a hidden duplicate
        await target(src[6].id, data(6))  # right
        await target(None, data(6))  # names no source
        await target(str(uuid.uuid4()), data(6))  # names a source that does not exist

        problems = await cluster.cloud_problems()
        print("\n".join(problems))

        def about(index: int) -> list[str]:
            return [p for p in problems if f"source {src[index].name} " in p]

        assert about(0) == [] and about(6) == [], problems
        assert len(about(1)) == 1 and "0 target images" in about(1)[0], problems
        assert len(about(2)) == 1 and "2 target images" in about(2)[0], problems
        assert len(about(3)) == 1 and "queued" in about(3)[0], problems
        assert len(about(4)) == 1 and "differs" in about(4)[0], problems
        assert len(about(5)) == 1 and "2 target images" in about(5)[0], problems
        assert len([p for p in problems if "names no source" in p]) == 1, problems
        assert len([p for p in problems if "names unknown source" in p]) == 1, problems
        assert len(problems) == 7, problems
        assert await cluster.journal_states() == {}  # no worker ever ran
