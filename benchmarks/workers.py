"""Scenario 6: scale-out: 1, 2 and 4 ``image-transfer run`` workers on one PostgreSQL journal,
and the journal's work-queue calls with 100,000 items in it.

**Workers.**  A throwaway PostgreSQL cluster (``initdb``/``pg_ctl`` from the machine, as the
``postgres`` user when run as root, trust auth on a free loopback port, PostgreSQL's default
durability) holds the journal.  The emulator runs as its own process with a per-connection
``bandwidth`` cap, so the link, not the CPU, sets the pace, as it does between real regions.
For each worker count a fresh job (a new job name, so a new plan) is run by that many
``image-transfer run --worker-id wN --no-progress`` processes started at once; the time is
from the first start to the last exit, every worker must exit 0, the reports must add up to
one copy per source, and the target is listed afterwards: exactly one active copy per source,
found by its marker, with the source's checksum.  The copies are deleted before the next run.
The order of the worker counts rotates from one repeat to the next.  Scale-out efficiency is
``rate(N) / (N x rate(1))`` (medians); the issue asks for at least 0.8 until the emulator's own
limit is reached.  It is reported, not asserted.  The same ratio of the copy phase alone (from
the first step any worker journaled to the last step finished, by the journal's timestamps)
tells how well the workers share the work apart from what every run pays once: start-up,
planning, and the wait for the last items at the end.

**Queue calls.**  A journal of 100,000 entries of one job (bulk-inserted with SQL, with a
published plan whose order is their ``plan_rank``) times ``claim`` (limit 4) and ``renew`` (of
8 held items): with no other lease, and with a few thousand items leased to other workers at
the front of the plan (where claims look first).  Claimed items are then marked done with
plain SQL (not timed), as a worker that copied them would.  ``claim`` also runs from four
connections at once, for the rate one journal can hand out work at.

Every call of the work queue goes through ``_claim`` and ``_renew`` below, the only place that
knows its signatures.

``python -m benchmarks.workers [--quick] [--repeat N]`` runs this scenario alone; ``--images``,
``--bandwidth`` and ``--workers`` change its sizes (e.g. a longer job: ``--images 96
--bandwidth 512 --workers 1,4``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psycopg

from benchmarks.harness import (
    RESULTS_DIR,
    BenchError,
    Cloud,
    EmulatorProcess,
    JobSpec,
    MiB,
    SeedImage,
    config_text,
    delete_images,
    metric,
    result,
    row,
    run_async,
    seed_state,
    settle,
    transfer_cmd,
    workspace,
    write_result,
)
from tests.pgserver import ClusterError, ThrowawayCluster
from transfer.cloud.sessions import CloudSession
from transfer.journal.pg_queue import PgWorkQueue
from transfer.journal.postgres import PgJournal
from transfer.metadata import MARKER_SOURCE_ID
from transfer.models import Image

ItemKey = tuple[str, str]

# -- the work queue's calls: the only two places that know their signatures ------------------


async def _claim(
    queue: PgWorkQueue,
    job: str,
    worker: str,
    *,
    limit: int,
    lease_seconds: float,
    plan_id: int | None = None,
    epochs: dict[ItemKey, int] | None = None,
) -> list[ItemKey]:
    """``claim``: the keys leased to ``worker``; each one's epoch (its fencing token, which
    ``renew`` needs) goes into ``epochs``."""
    claims = await queue.claim(
        job, worker, limit=limit, lease_seconds=lease_seconds, plan_id=plan_id
    )
    if epochs is not None:
        epochs.update({c.key: c.epoch for c in claims})
    return [c.key for c in claims]


async def _renew(
    queue: PgWorkQueue,
    held: Mapping[ItemKey, int],
    *,
    job: str,
    worker: str,
    lease_seconds: float,
) -> set[ItemKey]:
    """``renew`` of the items ``worker`` holds (``held``: key -> the epoch ``_claim`` gave);
    the keys still held."""
    return set(await queue.renew(job, worker, dict(held), lease_seconds))


# -- parameters --------------------------------------------------------------------------------

SCENARIO = "workers"
GOAL_EFFICIENCY = 0.8
TARGET = ("src", "KR2")
TARGET_KEY = f"{TARGET[0]}/{TARGET[1]}"
QUEUE_JOB = "bench-queue"
#: Leases of the queue measurements: long enough that none runs out while they run.
QUEUE_LEASE = 600.0
CONCURRENT_CLAIMERS = 4


@dataclass(frozen=True)
class Params:
    images: int
    size: int
    bandwidth: int  # bytes/s per connection (the emulator's fault), both directions
    transfers: int  # per worker
    repeats: int
    queue_items: int
    queue_calls: int  # timed calls per measurement
    queue_leased: int  # items leased to other workers in the "leased" measurements
    workers: tuple[int, ...] = (1, 2, 4)


FULL = Params(
    # Long enough (about a minute on one worker) that a run's fixed costs, start-up and the
    # last worker's wait, do not hide how the copying itself scales.
    images=64,
    size=2 * MiB,
    bandwidth=MiB // 2,
    transfers=4,
    repeats=3,
    queue_items=100_000,
    queue_calls=200,
    queue_leased=3_000,
)
QUICK = Params(
    images=24,
    size=1 * MiB,
    bandwidth=1 * MiB,
    transfers=4,
    repeats=1,
    queue_items=20_000,
    queue_calls=50,
    queue_leased=1_000,
)


# -- a throwaway PostgreSQL cluster ----------------------------------------------------------


@contextlib.contextmanager
def pg_cluster() -> Iterator[str]:
    """A new PostgreSQL cluster on loopback for the time of the block (``tests.pgserver``,
    PostgreSQL's default durability); the URL of its maintenance database.  Stopped and removed
    at the end, whatever happens."""
    try:
        cluster = ThrowawayCluster(name="image-transfer-bench-pg-")
    except ClusterError as exc:
        raise BenchError(str(exc)) from None
    try:
        try:
            cluster.start()
        except ClusterError as exc:
            raise BenchError(str(exc)) from None
        yield cluster.url()
    finally:
        with contextlib.suppress(ClusterError):
            cluster.remove()


def create_database(admin_url: str, name: str) -> str:
    """A new database on the cluster of ``admin_url``; its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


# -- the workers -----------------------------------------------------------------------------


def _set_faults(cloud: Cloud, **changes: Any) -> None:
    """Change the emulator's live faults through its admin endpoint."""
    request = urllib.request.Request(
        cloud.admin_url + "/faults",
        data=json.dumps(changes).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def _cpu_times() -> tuple[int, int]:
    """The machine's (busy, total) CPU ticks since boot (``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


@dataclass(frozen=True)
class Trial:
    """One job run by ``workers`` processes at once."""

    workers: int
    seconds: float  # first start to last exit
    copied: tuple[int, ...]  # per worker, from its report
    worker_cpu_seconds: float  # user + system of every worker
    machine_busy: float  # the share of the machine's CPU time that was busy meanwhile
    startup: float  # first start to the first step any worker journaled
    copying: float  # the first step started to the last one finished (the journal's clock)
    tail: float  # the last step finished to the last exit
    commits: int  # transactions the journal's database committed meanwhile

    @property
    def images(self) -> int:
        return sum(self.copied)


def _commits(journal_url: str) -> int:
    """Transactions committed in the journal's database so far (its statistics; a backend
    flushes its own when it exits)."""
    with psycopg.connect(journal_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(found[0]) if found else 0


def _steps_window(journal_url: str, job: str) -> tuple[float, float]:
    """When the job's first step started and its last one finished (Unix time, from the
    journal; the server runs on this machine, so its clock is this one)."""
    with psycopg.connect(journal_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT min(started_at), max(finished_at) FROM steps WHERE job = %s", (job,)
        ).fetchone()
    if found is None or found[0] is None or found[1] is None:
        raise BenchError(f"job {job}: no steps in the journal")
    return found[0].timestamp(), found[1].timestamp()


def _start_workers(
    config: Path,
    job: str,
    workers: int,
    folder: Path,
    env: Mapping[str, str],
    logs: contextlib.ExitStack,
) -> list[subprocess.Popen[bytes]]:
    procs: list[subprocess.Popen[bytes]] = []
    for n in range(workers):
        cmd = transfer_cmd(
            "run",
            *("-c", str(config), "--job", job, "--worker-id", f"w{n}", "--no-progress"),
            *("--report", str(folder / f"{job}-w{n}.json")),
        )
        log = logs.enter_context((folder / f"{job}-w{n}.log").open("wb"))
        procs.append(
            subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=dict(env), cwd=folder
            )
        )
    return procs


def run_workers(
    cloud: Cloud,
    config: Path,
    journal_url: str,
    job: str,
    workers: int,
    *,
    timeout: float = 900.0,
) -> Trial:
    """Start ``workers`` workers of ``job`` at once and wait for every one of them."""
    folder = config.parent
    settle()
    commits = _commits(journal_url)
    busy0, total0 = _cpu_times()
    procs: list[subprocess.Popen[bytes]] = []
    codes: list[int] = []
    cpu = 0.0
    with contextlib.ExitStack() as logs:
        wall_started = time.time()
        started = time.perf_counter()
        try:
            procs = _start_workers(config, job, workers, folder, cloud.env(), logs)

            def kill_all() -> None:
                for proc in procs:
                    proc.kill()

            killer = threading.Timer(timeout, kill_all)
            killer.start()
            try:
                for proc in procs:
                    _, status, usage = os.wait4(proc.pid, 0)
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    codes.append(proc.returncode)
                    cpu += usage.ru_utime + usage.ru_stime
            finally:
                killer.cancel()
            seconds = time.perf_counter() - started
            wall_ended = time.time()
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    proc.wait()
    busy1, total1 = _cpu_times()
    commits = _commits(journal_url) - commits
    if any(codes):
        tails = []
        for n, code in enumerate(codes):
            if code:
                text = (folder / f"{job}-w{n}.log").read_text(errors="replace")
                tails.append(f"w{n} exited {code}: {text.strip()[-1500:]}")
        raise BenchError(f"job {job} with {workers} workers: " + "\n".join(tails))
    copied = []
    for n in range(workers):
        report = json.loads((folder / f"{job}-w{n}.json").read_text())
        if report["outcome"] != "ok":
            raise BenchError(f"job {job}: worker w{n} ended {report['outcome']}")
        copied.append(int(report["counts"].get("copied", 0)))
    first_step, last_step = _steps_window(journal_url, job)
    return Trial(
        workers=workers,
        seconds=seconds,
        copied=tuple(copied),
        worker_cpu_seconds=cpu,
        machine_busy=(busy1 - busy0) / max(1, total1 - total0),
        startup=first_step - wall_started,
        copying=last_step - first_step,
        tail=wall_ended - last_step,
        commits=commits,
    )


def _listing(cloud: Cloud) -> tuple[list[Image], list[Image]]:
    """Every image the source tenant owns in the source region and in the target region."""

    async def main() -> tuple[list[Image], list[Image]]:
        owner = cloud.src.tenant_id
        async with CloudSession(cloud.credentials(cloud.src)) as session:
            source = await session.image_client("KR1")
            target = await session.image_client(TARGET[1])
            return (
                [i async for i in source.list_images(owner=owner)],
                [i async for i in target.list_images(owner=owner)],
            )

    return run_async(main)


def check_and_clear_copies(cloud: Cloud, expected: int) -> None:
    """Exactly one active copy per source, with the source's checksum; then delete them."""
    sources, targets = _listing(cloud)
    if len(sources) != expected:
        raise BenchError(f"the source holds {len(sources)} images, expected {expected}")
    copies: dict[str, list[Image]] = {}
    for image in targets:
        copies.setdefault(str(image.raw.get(MARKER_SOURCE_ID)), []).append(image)
    problems = []
    for source in sources:
        found = copies.pop(source.id, [])
        if len(found) != 1:
            problems.append(f"{source.id}: {len(found)} copies")
        elif found[0].status != "active" or found[0].checksum != source.checksum:
            problems.append(f"{source.id}: copy {found[0].status}, checksum {found[0].checksum}")
    problems += [
        f"{len(images)} image(s) marked {key}, no such source" for key, images in copies.items()
    ]
    if problems:
        raise BenchError("the target is not one copy per source: " + "; ".join(problems[:10]))
    delete_images(cloud, cloud.src, TARGET[1], [i.id for i in targets])


def _config(cloud: Cloud, path: Path, jobs: Sequence[JobSpec], journal_url: str) -> Path:
    """An ordinary config of the emulator's tenants whose journal is the PostgreSQL one."""
    placeholder = str(path.with_suffix(".db"))
    text = config_text(
        cloud.identity_url,
        jobs,
        src_id=cloud.src.tenant_id,
        dst_id=cloud.dst.tenant_id,
        journal=placeholder,
    )
    text = text.replace(f"path = {json.dumps(placeholder)}", f"url = {json.dumps(journal_url)}")
    path.write_text(text)
    return path


def scale_out(params: Params, repeats: int, work: Path, journal_url: str) -> list[Trial]:
    """Every (repeat, worker count) trial, the order of the counts rotating per repeat."""
    state = work / "state"
    seeds = [
        SeedImage("KR1", f"bench-worker-{i:03d}", params.size, fill_seed=100 + i)
        for i in range(params.images)
    ]
    run_async(lambda: seed_state(state, seeds))
    counts = params.workers
    plan = [(i, counts[(i + k) % len(counts)]) for i in range(repeats) for k in range(len(counts))]
    jobs = {
        (i, n): JobSpec(name=f"w{n}-r{i}", targets=(TARGET,), transfers=params.transfers)
        for i, n in plan
    }
    trials = []
    with EmulatorProcess(state) as cloud:
        _set_faults(cloud, bandwidth=params.bandwidth)
        config = _config(cloud, work / "bench.toml", list(jobs.values()), journal_url)
        for i, n in plan:
            job = jobs[(i, n)].name
            print(f"[{SCENARIO}] {job}: {n} worker(s)...", file=sys.stderr, flush=True)
            trial = run_workers(cloud, config, journal_url, job, n)
            if trial.images != params.images:
                raise BenchError(
                    f"job {job}: the workers copied {trial.copied} images, "
                    f"expected {params.images} in all"
                )
            check_and_clear_copies(cloud, params.images)
            trials.append(trial)
    return trials


# -- the work queue's calls at scale ----------------------------------------------------------


async def _fill(conn: psycopg.AsyncConnection[Any], items: int) -> int:
    """``items`` pending entries of one job in one published plan, ranked in order; the plan's
    id."""
    cursor = await conn.execute(
        "INSERT INTO plans (job, planner, started_at, ready_at, lease_seconds, lease_expires, "
        "items) VALUES (%s, 'bench-planner', now(), now(), 30, now(), %s) RETURNING id",
        (QUEUE_JOB, items),
    )
    found = await cursor.fetchone()
    assert found is not None
    plan_id = int(found[0])
    await conn.execute(
        """INSERT INTO entries (job, source_id, target_key, source_name, source_checksum,
               source_size, state, updated_at, plan_id, plan_rank)
           SELECT %s, gen_random_uuid()::text, %s, 'image-' || g, md5(g::text),
               1073741824, 'pending', now(), %s, g
           FROM generate_series(1, %s) AS g""",
        (QUEUE_JOB, TARGET_KEY, plan_id, items),
    )
    await conn.execute("ANALYZE entries")
    await conn.execute("ANALYZE plans")
    return plan_id


async def _done(conn: psycopg.AsyncConnection[Any], keys: Sequence[ItemKey]) -> None:
    """Mark claimed items done and unleased, as the worker that copied them would."""
    if not keys:
        return
    await conn.execute(
        """UPDATE entries e SET state = 'done', lease_owner = NULL, lease_expires = NULL,
               updated_at = now()
           FROM unnest(%s::text[], %s::text[]) AS i(source_id, target_key)
           WHERE e.job = %s AND e.source_id = i.source_id AND e.target_key = i.target_key""",
        ([k[0] for k in keys], [k[1] for k in keys], QUEUE_JOB),
    )


async def _lease_front(conn: psycopg.AsyncConnection[Any], count: int) -> int:
    """Lease the first ``count`` open items of the plan to 16 other workers; how many."""
    cursor = await conn.execute(
        """UPDATE entries SET lease_owner = 'other-' || (plan_rank %% 16),
               lease_expires = now() + interval '1 hour', state = 'running'
           WHERE job = %s AND (job, source_id, target_key) IN (
               SELECT job, source_id, target_key FROM entries
               WHERE job = %s AND state IN ('pending', 'running') AND lease_owner IS NULL
               ORDER BY plan_rank LIMIT %s)""",
        (QUEUE_JOB, QUEUE_JOB, count),
    )
    await conn.execute("ANALYZE entries")
    return cursor.rowcount


async def _time_claims(
    queue: PgWorkQueue, conn: psycopg.AsyncConnection[Any], worker: str, plan_id: int, calls: int
) -> list[float]:
    """Milliseconds of ``calls`` claims of 4 items; each claimed batch is then marked done."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        keys = await _claim(
            queue, QUEUE_JOB, worker, limit=4, lease_seconds=QUEUE_LEASE, plan_id=plan_id
        )
        times.append((time.perf_counter() - started) * 1000)
        if len(keys) != 4:
            raise BenchError(f"a claim of 4 items got {len(keys)}")
        await _done(conn, keys)
    return times


async def _time_renewals(
    queue: PgWorkQueue, conn: psycopg.AsyncConnection[Any], plan_id: int, calls: int
) -> list[float]:
    """Milliseconds of ``calls`` renewals of the same 8 held items."""
    worker = "renewer"
    held: dict[ItemKey, int] = {}
    for _ in range(2):
        await _claim(
            queue,
            QUEUE_JOB,
            worker,
            limit=4,
            lease_seconds=QUEUE_LEASE,
            plan_id=plan_id,
            epochs=held,
        )
    if len(held) != 8:
        raise BenchError(f"holding {len(held)} items, expected 8")
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        kept = await _renew(queue, held, job=QUEUE_JOB, worker=worker, lease_seconds=QUEUE_LEASE)
        times.append((time.perf_counter() - started) * 1000)
        if kept != set(held):
            raise BenchError(f"a renewal kept {len(kept)} of 8 leases")
    await _done(conn, list(held))
    return times


async def _concurrent_claims(url: str, plan_id: int, calls: int) -> tuple[list[float], float]:
    """``CONCURRENT_CLAIMERS`` journals (connections) claiming at once: every call's
    milliseconds, and the claims per second they made together."""
    times: list[float] = []
    conns: list[psycopg.AsyncConnection[Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        journals = [
            await stack.enter_async_context(PgJournal(url)) for _ in range(CONCURRENT_CLAIMERS)
        ]
        for _ in journals:
            conns.append(
                await stack.enter_async_context(
                    await psycopg.AsyncConnection.connect(url, autocommit=True)
                )
            )

        async def claimer(n: int) -> None:
            queue = journals[n].work_queue
            times.extend(await _time_claims(queue, conns[n], f"claimer-{n}", plan_id, calls))

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(CONCURRENT_CLAIMERS):
                tg.start_soon(claimer, n)
        elapsed = time.perf_counter() - started
    # The rate counts the untimed "done" updates too: a worker makes them as well.
    return times, CONCURRENT_CLAIMERS * calls / elapsed


async def queue_latencies(url: str, params: Params, calls: int) -> dict[str, Any]:
    """The work queue's calls on a journal of ``params.queue_items`` entries (see the module
    docstring); milliseconds per call by measurement, and the concurrent claim rate."""
    out: dict[str, Any] = {}
    async with (
        PgJournal(url) as journal,  # creates the schema
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
    ):
        queue = journal.work_queue
        plan_id = await _fill(conn, params.queue_items)
        out["claim_free"] = await _time_claims(queue, conn, "bench", plan_id, calls)
        out["renew_free"] = await _time_renewals(queue, conn, plan_id, calls)
        out["leased"] = await _lease_front(conn, params.queue_leased)
        out["claim_leased"] = await _time_claims(queue, conn, "bench", plan_id, calls)
        out["renew_leased"] = await _time_renewals(queue, conn, plan_id, calls)
        times, rate = await _concurrent_claims(url, plan_id, max(1, calls // 2))
        out["claim_concurrent"] = times
        out["claims_per_second"] = rate
        cursor = await conn.execute(
            "SELECT count(*) FROM entries WHERE job = %s AND state = 'done'", (QUEUE_JOB,)
        )
        done = await cursor.fetchone()
        out["done_at_end"] = int(done[0]) if done else 0
    return out


# -- the scenario ------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) of ``values``, interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(fraction * 100) - 1]


def _latency(values: Sequence[float]) -> dict[str, Any]:
    return metric(
        [round(v, 4) for v in values],
        "ms",
        p50=percentile(values, 0.5),
        p95=percentile(values, 0.95),
        calls=len(values),
    )


def _scale_out_results(
    params: Params, trials: Sequence[Trial]
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Metrics and table rows of the worker trials: the whole run's rate, and the copy
    phase's (first step to last step, without start-up and the wait at the end)."""
    base_count = params.workers[0]
    label = f"6 scale-out {params.images}x{params.size // MiB} MiB"
    metrics: dict[str, dict[str, Any]] = {}
    rates: dict[tuple[str, int], list[float]] = {}
    for n in params.workers:
        mine = [t for t in trials if t.workers == n]
        rates["wall", n] = [t.images / t.seconds for t in mine]
        rates["copying", n] = [t.images / t.copying for t in mine]
        metrics[f"rate_workers_{n}"] = metric(
            rates["wall", n],
            "images/s",
            seconds=[round(t.seconds, 3) for t in mine],
            startup_seconds=[round(t.startup, 3) for t in mine],
            copying_seconds=[round(t.copying, 3) for t in mine],
            tail_seconds=[round(t.tail, 3) for t in mine],
            copied_per_worker=[list(t.copied) for t in mine],
            worker_cpu_seconds=[round(t.worker_cpu_seconds, 2) for t in mine],
            machine_cpu_busy=[round(t.machine_busy, 3) for t in mine],
            journal_commits_per_image=[round(t.commits / t.images, 1) for t in mine],
        )
        metrics[f"copy_rate_workers_{n}"] = metric(rates["copying", n], "images/s")
    rows = []
    for kind, suffix in (("wall", ""), ("copying", ", copy phase")):
        base = statistics.median(rates[kind, base_count])
        rows.append(
            row(
                f"{label}, {base_count} worker{suffix}",
                f"{base:.2f} img/s",
                f"{params.bandwidth // 1024} KiB/s per connection",
                "-",
                "-",
                None,
            )
        )
        for n in params.workers[1:]:
            median = statistics.median(rates[kind, n])
            efficiency = median / (n * base)
            per_repeat = [
                r / (n * b) for r, b in zip(rates[kind, n], rates[kind, base_count], strict=True)
            ]
            name = "efficiency" if kind == "wall" else "copy_efficiency"
            metrics[f"{name}_workers_{n}"] = metric(per_repeat, "x", median_of_medians=efficiency)
            rows.append(
                row(
                    f"{label}, {n} workers{suffix}",
                    f"{median:.2f} img/s",
                    f"{n} x {base:.2f} img/s",
                    f"{efficiency:.2f}x",
                    f">= {GOAL_EFFICIENCY:.2f}x",
                    efficiency >= GOAL_EFFICIENCY,
                )
            )
    return metrics, rows


def run(mode: str, repeats: int | None = None, **changes: Any) -> dict[str, Any]:
    """The scenario; ``changes`` replace fields of its ``Params`` (``images=96``, ...)."""
    params = dataclasses.replace(QUICK if mode == "quick" else FULL, **changes)
    repeats = repeats or params.repeats
    started = time.monotonic()
    with workspace(SCENARIO) as work, pg_cluster() as admin_url:
        trials = scale_out(params, repeats, work, create_database(admin_url, "bench_workers"))
        print(f"[{SCENARIO}] work-queue calls...", file=sys.stderr, flush=True)
        queue_url = create_database(admin_url, "bench_queue")
        calls = params.queue_calls
        queue = anyio.run(queue_latencies, queue_url, params, calls)

    metrics, rows = _scale_out_results(params, trials)
    items = params.queue_items
    for name, label in (
        ("claim_free", "claim 4"),
        ("renew_free", "renew 8"),
        ("claim_leased", f"claim 4, {queue['leased']:,} leased"),
        ("renew_leased", f"renew 8, {queue['leased']:,} leased"),
        ("claim_concurrent", f"claim 4, {CONCURRENT_CLAIMERS} at once"),
    ):
        latency = metrics[f"{name}_ms"] = _latency(queue[name])
        rows.append(
            row(
                f"6 queue {items:,} items: {label}",
                f"p50 {latency['p50']:.2f} ms, p95 {latency['p95']:.2f} ms",
                "-",
                "-",
                "-",
                None,
            )
        )
    metrics["claims_per_second_concurrent"] = metric([queue["claims_per_second"]], "claims/s")
    rows[-1]["baseline"] = f"{queue['claims_per_second']:.0f} claims/s together"
    return result(
        scenario=SCENARIO,
        title=(
            "workers on one PostgreSQL journal: images/s at "
            f"{', '.join(str(n) for n in params.workers)} workers; work-queue calls"
        ),
        mode=mode,
        started=started,
        params={
            "images": params.images,
            "size_bytes": params.size,
            "bandwidth_per_connection": params.bandwidth,
            "transfers_per_worker": params.transfers,
            "workers": list(params.workers),
            "repeats": repeats,
            "lease_seconds": 30,
            "queue_items": items,
            "queue_calls": calls,
            "queue_leased": queue["leased"],
            "queue_done_at_end": queue["done_at_end"],
            "concurrent_claimers": CONCURRENT_CLAIMERS,
            "postgresql": "throwaway cluster on loopback, default durability (fsync on)",
        },
        metrics=metrics,
        rows=rows,
        notes=[
            "rate: images / seconds from the first worker's start to the last one's exit "
            "(start-up, planning, claiming and the idle wait at the end included)",
            "copy phase: images / seconds from the first step any worker journaled to the last "
            "step finished (the journal's timestamps): without start-up and the end; "
            "startup_seconds and tail_seconds of each trial are in rate_workers_N",
            "efficiency: rate(N) / (N x rate(1)), medians; per-repeat ratios in its runs",
            "every trial: each worker exits 0, the reports add up to one copy per source, and "
            "the target holds exactly one active copy per source with its checksum",
            "queue: milliseconds per call as the caller sees it (loopback, one connection per "
            "journal); claimed items are marked done afterwards, untimed",
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.__main__ import machine_line, table
    from transfer.cli.logs import configure_logging
    from transfer.config.settings import LogFormat, LogLevel

    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeat", type=int, metavar="N", help="repeats per measurement")
    parser.add_argument("--images", type=int, metavar="N", help="images to copy (48; quick: 24)")
    parser.add_argument(
        "--bandwidth", type=int, metavar="KIB", help="cap per connection in KiB/s (1024)"
    )
    parser.add_argument(
        "--workers",
        metavar="1,N,...",
        help="the worker counts, the baseline 1 first (default 1,2,4)",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, metavar="DIR", help="where results go"
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    changes: dict[str, Any] = {}
    if args.images is not None:
        if args.images < 1:
            parser.error("--images must be at least 1")
        changes["images"] = args.images
    if args.bandwidth is not None:
        if args.bandwidth < 1:
            parser.error("--bandwidth must be at least 1 KiB/s")
        changes["bandwidth"] = args.bandwidth * 1024
    if args.workers is not None:
        try:
            counts = tuple(int(part) for part in args.workers.split(","))
        except ValueError:
            parser.error(f"--workers: expected counts like 1,2,4, got {args.workers!r}")
        if counts[0] != 1 or len(set(counts)) != len(counts) or min(counts) < 1:
            parser.error("--workers: distinct counts, starting with the baseline 1")
        changes["workers"] = counts
    mode = "quick" if args.quick else "full"
    configure_logging(LogLevel.WARNING, LogFormat.CONSOLE)
    try:
        res = run(mode, args.repeat, **changes)
    except BenchError as exc:
        print(f"[{SCENARIO}] failed: {exc}", file=sys.stderr)
        return 1
    path = write_result(args.results, res)
    print(f"[{SCENARIO}] done in {res['scenario_seconds']:.0f}s -> {path}", file=sys.stderr)
    print(f"{mode} results, {machine_line(res['machine'])}")
    print(table([res]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
