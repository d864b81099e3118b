"""Scenario 3: the engine's peak memory does not grow with image size.

Two sets of images sit on KR1: ``count`` big ones and ``count`` small ones (8 x 1 GiB and
8 x 128 MiB; quick: 4 x 32 MiB and 4 x 8 MiB).  The engine copies each set with
``transfers = count`` (every image in flight at once), alternating big and small runs; the
peak RSS of the ``image-transfer run`` process is read from the kernel when it exits
(``wait4``'s ``ru_maxrss``, that process alone).  The small run is the baseline: what the
engine needs whatever it copies (Python, aiohttp, the journal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import (
    MB,
    EmulatorProcess,
    GiB,
    JobSpec,
    MiB,
    SeedImage,
    delete_images,
    metric,
    result,
    row,
    run_async,
    run_engine,
    seed_state,
    settle,
    workspace,
    write_config,
)

SCENARIO = "memory"
GOAL_PEAK_MIB = 150.0
GOAL_RATIO = 1.1


@dataclass(frozen=True)
class Params:
    count: int
    big: int
    small: int
    repeats: int


FULL = Params(count=8, big=1 * GiB, small=128 * MiB, repeats=3)
QUICK = Params(count=4, big=32 * MiB, small=8 * MiB, repeats=3)


def _size(n: int) -> str:
    return f"{n // GiB} GiB" if n >= GiB else f"{n // MiB} MiB"


def run(mode: str, repeats: int | None = None) -> dict[str, Any]:
    params = QUICK if mode == "quick" else FULL
    repeats = repeats or params.repeats
    started = time.monotonic()
    sets = {"big": params.big, "small": params.small}
    with workspace(SCENARIO) as work:
        state = work / "state"
        seeds = [
            SeedImage("KR1", f"bench-{kind}-{n:02d}", size, fill_seed=100 * (kind == "big") + n)
            for kind, size in sets.items()
            for n in range(params.count)
        ]
        run_async(lambda: seed_state(state, seeds))
        with EmulatorProcess(state) as cloud:
            jobs = [
                JobSpec(name=f"mem-{kind}-{i}", names=[f"bench-{kind}-*"], transfers=params.count)
                for kind in sets
                for i in range(repeats)
            ]
            config = write_config(work / "bench.toml", cloud, jobs)
            rss: dict[str, list[float]] = {kind: [] for kind in sets}
            rate: dict[str, list[float]] = {kind: [] for kind in sets}
            for i in range(repeats):
                kinds = list(sets) if i % 2 == 0 else list(reversed(sets))
                for kind in kinds:
                    total = params.count * sets[kind]
                    settle()
                    done = run_engine(
                        cloud,
                        config,
                        f"mem-{kind}-{i}",
                        expect_copies=params.count,
                        expect_bytes=total,
                    )
                    delete_images(cloud, cloud.src, "KR2", done.target_ids())
                    rss[kind].append(done.max_rss_bytes / MiB)
                    rate[kind].append(total / MB / done.seconds)
    big = metric(rss["big"], "MiB")
    small = metric(rss["small"], "MiB")
    ratio = big["median"] / small["median"]
    big_label = f"{params.count}x{_size(params.big)}"
    small_label = f"{params.count}x{_size(params.small)}"
    met = big["max"] <= GOAL_PEAK_MIB and ratio <= GOAL_RATIO
    return result(
        scenario=SCENARIO,
        title=f"peak RSS copying {big_label} vs {small_label}, transfers={params.count}",
        mode=mode,
        started=started,
        params={
            "count": params.count,
            "big_bytes": params.big,
            "small_bytes": params.small,
            "transfers": params.count,
            "repeats": repeats,
        },
        metrics={
            "engine_peak_rss_big": big,
            "engine_peak_rss_small": small,
            "ratio": {
                **metric([b / s for b, s in zip(rss["big"], rss["small"], strict=True)], "x"),
                "median_of_medians": ratio,
            },
            "throughput_big": metric(rate["big"], "MB/s"),
            "throughput_small": metric(rate["small"], "MB/s"),
        },
        rows=[
            row(
                f"3 peak RSS {big_label} (transfers={params.count})",
                f"{big['median']:.0f} MiB (max {big['max']:.0f})",
                f"{small['median']:.0f} MiB for {small_label}",
                f"{ratio:.2f}x",
                f"<= {GOAL_PEAK_MIB:.0f} MiB, <= {GOAL_RATIO:.1f}x",
                met,
            )
        ],
        notes=[
            "peak RSS of the `image-transfer run` process (ru_maxrss from wait4); the goal "
            "holds the largest peak of any repeat to the limit and the medians to the ratio",
        ],
    )
