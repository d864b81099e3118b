"""Scenario 5: fan-out: one large image KR1 -> KR2 and KR1 -> JP1 at once, against copying it
to KR2 alone.

Both are ``image-transfer run`` (a fresh job per repeat, so every repeat copies and verifies),
alternating which goes first; the emulator (regions KR1, KR2, JP1) counts the body bytes KR1
serves, so each run's source read is measured, not assumed.  Fan-out should read the source
once whatever the number of targets, and take about as long as the slowest target alone: on
two cores the emulator hashes both uploads, so some slowdown is expected.  The copies are
deleted after each run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import (
    MB,
    BenchError,
    Cloud,
    EmulatorProcess,
    GiB,
    JobSpec,
    MiB,
    SeedImage,
    clear_region,
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

SCENARIO = "fanout"
REGIONS = ("KR1", "KR2", "JP1")
#: Fan-out may take this much longer than the one-region copy (the receiving side's CPU).
GOAL_TIME_RATIO = 1.6


@dataclass(frozen=True)
class Params:
    size: int
    repeats: int


FULL = Params(size=1 * GiB, repeats=5)
QUICK = Params(size=48 * MiB, repeats=3)


def _source_bytes(cloud: Cloud) -> int:
    return int(cloud.admin("/counters")["regions"]["KR1"]["bytes_served"])


def _copy(cloud: Cloud, config_path: Any, job: str, size: int, targets: int) -> tuple[float, int]:
    """One run; (seconds of the whole command, bytes the source served)."""
    cloud.admin("/counters/reset", method="POST")
    settle()
    done = run_engine(cloud, config_path, job, expect_copies=targets, expect_bytes=targets * size)
    read = _source_bytes(cloud)
    for region in REGIONS[1 : 1 + targets]:
        clear_region(cloud, cloud.src, region)
    return done.seconds, read


def run(mode: str, repeats: int | None = None) -> dict[str, Any]:
    params = QUICK if mode == "quick" else FULL
    repeats = repeats or params.repeats
    started = time.monotonic()
    with workspace(SCENARIO) as work:
        state = work / "state"
        seeds = [SeedImage("KR1", "bench-fanout", params.size, fill_seed=11)]
        run_async(lambda: seed_state(state, seeds, regions=REGIONS))
        with EmulatorProcess(state, regions=REGIONS) as cloud:
            jobs = []
            for i in range(repeats):
                jobs.append(JobSpec(name=f"one-{i}", names=["bench-fanout"]))
                jobs.append(
                    JobSpec(
                        name=f"fan-{i}",
                        names=["bench-fanout"],
                        targets=(("src", "KR2"), ("src", "JP1")),
                    )
                )
            config = write_config(work / "bench.toml", cloud, jobs)
            one_s: list[float] = []
            fan_s: list[float] = []
            one_read: list[int] = []
            fan_read: list[int] = []
            for i in range(repeats):
                order = ("one", "fan") if i % 2 == 0 else ("fan", "one")
                for kind in order:
                    targets = 1 if kind == "one" else 2
                    seconds, read = _copy(cloud, config, f"{kind}-{i}", params.size, targets)
                    (one_s if kind == "one" else fan_s).append(seconds)
                    (one_read if kind == "one" else fan_read).append(read)
    if any(read != params.size for read in one_read + fan_read):
        raise BenchError(
            f"the source served {one_read} (one region) and {fan_read} (fan-out) bytes; "
            f"expected {params.size} every time"
        )
    megabytes = params.size / MB
    one = metric([megabytes / s for s in one_s], "MB/s")
    # Fan-out throughput counts the image once: how fast the source image reached both.
    fan = metric([megabytes / s for s in fan_s], "MB/s")
    ratios = [f / o for f, o in zip(fan_s, one_s, strict=True)]
    ratio = one["median"] / fan["median"]
    size = f"{params.size / GiB:g} GiB" if params.size >= GiB else f"{params.size // MiB} MiB"
    return result(
        scenario=SCENARIO,
        title=f"one {size} image to KR2 and JP1 at once vs to KR2 alone",
        mode=mode,
        started=started,
        params={"size_bytes": params.size, "repeats": repeats, "regions": list(REGIONS)},
        metrics={
            "one_region": one,
            "fan_out_two_regions": fan,
            "source_bytes_one_region": metric([float(r) for r in one_read], "bytes"),
            "source_bytes_fan_out": metric([float(r) for r in fan_read], "bytes"),
            "time_ratio": {**metric(ratios, "x"), "median_of_medians": ratio},
        },
        rows=[
            row(
                f"5 fan-out {size} to 2 regions",
                f"{fan['median']:.0f} MB/s, source read 1x",
                f"{one['median']:.0f} MB/s to 1 region",
                f"{ratio:.2f}x time",
                f"<= {GOAL_TIME_RATIO:.1f}x time, 1 read",
                ratio <= GOAL_TIME_RATIO,
            )
        ],
        notes=[
            "both: `image-transfer run` wall time, start-up and verification included",
            "source bytes: what KR1 served during the run (emulator counters); the scenario "
            "fails unless every run read the image exactly once",
            "time ratio: fan-out seconds / one-region seconds (median of each)",
        ],
    )
