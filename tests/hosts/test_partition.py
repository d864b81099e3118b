"""Three ``image-transfer run`` workers, each on a host of its own (a network namespace),
share one job through a PostgreSQL journal in a hub namespace, beside the emulated cloud.  One
worker's cable is pulled while it is inside an upload: it can reach neither the journal nor the
cloud.  The other two must finish the job, with exactly one verified copy of every source in the
target cloud and every journal item ``done``; the cut-off worker must give up, with a non-zero
exit, within a bounded time.  Its link comes back only after the others are done.
"""

from __future__ import annotations

import asyncio
import random
import time

from tests.hosts.cluster import (
    LEASE_SECONDS,
    WORKER_TIMEOUT,
    WORKERS,
    Cluster,
    strike_when_uploading,
)
from tests.hosts.netns import Topology

#: How long after the cut the cut-off worker has to exit.
GIVE_UP_WITHIN = LEASE_SECONDS + 30.0


async def test_a_partitioned_worker_gives_up_and_the_others_finish(
    net_cluster: Cluster, topology: Topology, fault_seed: int
) -> None:
    rng = random.Random(f"partition-{fault_seed}")
    hosts = list(topology.hosts.values())
    workers = await net_cluster.start_workers(WORKERS, hosts)
    index = rng.randrange(len(workers))
    victim, host = workers[index], hosts[index]
    survivors = [w for w in workers if w is not victim]

    struck = await strike_when_uploading(net_cluster, rng, victim.name)
    topology.cut(host)
    cut_at = time.monotonic()
    try:
        outcomes = await net_cluster.wait_workers(survivors, WORKER_TIMEOUT)
        victim_outcome = await victim.wait(cut_at + GIVE_UP_WITHIN - time.monotonic())
        gave_up_after = time.monotonic() - cut_at
    finally:
        topology.restore(host)
    await asyncio.sleep(1.0)  # whatever the restored link still carries lands before the check

    print(f"--- the cut-off worker {victim.name} ({host.label}), stderr:\n{victim_outcome.stderr}")
    notes = [f"{victim.name} on {host.label} cut off inside an upload"]
    verdict = await net_cluster.verdict(
        [*outcomes, victim_outcome],
        must_succeed=[w.name for w in survivors],
        notes=notes,
        watch=struck,
    )
    if victim_outcome.timed_out:
        verdict.exit_failures.append(
            f"cut-off worker {victim.name}: still running {GIVE_UP_WITHIN:g}s after the cut "
            "(killed by the harness)"
        )
    elif victim_outcome.code != 3:
        verdict.exit_failures.append(
            f"cut-off worker {victim.name}: exit {victim_outcome.code} {gave_up_after:.1f}s "
            "after the cut, expected 3 (fatal: the journal is out of reach)"
        )
    else:
        last = victim_outcome.stderr.strip().splitlines()[-1]
        if "Traceback" in victim_outcome.stderr or not (
            last.startswith("image-transfer: error: journal ")
            and "the journal has not answered for" in last
            and "the others take over its images" in last
        ):
            verdict.exit_failures.append(
                f"cut-off worker {victim.name}: unclear last words: {last!r}"
            )
    print(verdict.report())
    assert verdict.failures() == [], verdict.report()
