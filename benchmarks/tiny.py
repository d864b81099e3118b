"""Scenario 10: thousands of tiny images (64 KiB) KR1 -> KR2, no latency: the cost per image.

At this size the bytes cost nothing; requests, journal commits and Python work are what a run
pays per image.  Each repeat runs the engine (``image-transfer run``, ``transfers = 8``,
checkers at the default, a fresh job) and the lean curl script eight at a time (``xargs -P
8``), alternating the order.  Besides images/s: the CPU seconds per image of the engine
process and of the script (bash and curl), from ``wait4``'s rusage, and the engine's journal
commits and requests per image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import (
    EmulatorProcess,
    JobSpec,
    SeedImage,
    metric,
    result,
    row,
    run_async,
    seed_state,
    workspace,
    write_config,
)
from benchmarks.lean_script import (
    Timed,
    expected_copies,
    list_sources,
    region_total,
    run_job,
    run_script,
    size_label,
)

SCENARIO = "tiny"
GOAL = 3.0
TRANSFERS = 8
PARALLEL = 8
PREFIX = "bench-tiny-"
KiB = 1024


@dataclass(frozen=True)
class Params:
    count: int
    size: int
    repeats: int


FULL = Params(count=2000, size=64 * KiB, repeats=3)
QUICK = Params(count=40, size=64 * KiB, repeats=3)


def run(mode: str, repeats: int | None = None) -> dict[str, Any]:
    params = QUICK if mode == "quick" else FULL
    repeats = repeats or params.repeats
    started = time.monotonic()
    engine: list[Timed] = []
    script: list[Timed] = []
    with workspace(SCENARIO) as work:
        state = work / "state"
        seeds = [
            SeedImage("KR1", f"{PREFIX}{n:05d}", params.size, fill_seed=7000 + n)
            for n in range(params.count)
        ]
        run_async(lambda: seed_state(state, seeds))
        with EmulatorProcess(state) as cloud:
            sources = list_sources(cloud, PREFIX)
            expected = expected_copies(sources)
            jobs = [
                JobSpec(name=f"tiny-{i}", names=[PREFIX + "*"], transfers=TRANSFERS)
                for i in range(repeats)
            ]
            config = write_config(work / "bench.toml", cloud, jobs)
            for i in range(repeats):
                for kind in ("engine", "script") if i % 2 == 0 else ("script", "engine"):
                    if kind == "engine":
                        engine.append(run_job(cloud, config, f"tiny-{i}", expected, params.size))
                    else:
                        script.append(run_script(cloud, work, sources, PARALLEL, expected))
    return summary(mode, started, params, repeats, engine, script)


def build_rows(
    size: str,
    engine: dict[str, Any],
    script: dict[str, Any],
    cpu: dict[str, Any],
    script_cpu: dict[str, Any],
    commits: dict[str, Any],
    target: dict[str, Any],
    source: dict[str, Any],
) -> list[dict[str, Any]]:
    label = f"10 tiny {size}"
    ratio = engine["median"] / script["median"]
    return [
        row(
            f"{label} transfers={TRANSFERS}",
            f"{engine['median']:.1f} img/s",
            f"{script['median']:.1f} img/s script x{PARALLEL}",
            f"{ratio:.2f}x",
            f">= {GOAL:g}x",
            ratio >= GOAL,
        ),
        row(
            f"{label} CPU per image",
            f"{cpu['median']:.1f} ms",
            f"{script_cpu['median']:.1f} ms script (bash, curl)",
            f"{cpu['median'] / script_cpu['median']:.2f}x",
            "-",
            None,
        ),
        row(
            f"{label} journal commits, requests KR2/KR1 per image",
            f"{commits['median']:.2f}; {target['median']:.2f}/{source['median']:.2f}",
            "-",
            "-",
            "-",
            None,
        ),
    ]


def summary(
    mode: str,
    started: float,
    params: Params,
    repeats: int,
    engine_runs: list[Timed],
    script_runs: list[Timed],
) -> dict[str, Any]:
    count = params.count
    engine = metric([count / t.seconds for t in engine_runs], "images/s")
    script = metric([count / t.seconds for t in script_runs], "images/s")
    cpu = metric([t.cpu_seconds / count * 1000 for t in engine_runs], "ms/image")
    script_cpu = metric([t.cpu_seconds / count * 1000 for t in script_runs], "ms/image")
    commits = metric([t.journal_commits / count for t in engine_runs], "commits/image")
    target = metric(
        [region_total(t.requests, "KR2") / count for t in engine_runs], "requests/image"
    )
    source = metric(
        [region_total(t.requests, "KR1") / count for t in engine_runs], "requests/image"
    )
    ratio = engine["median"] / script["median"]
    rows = build_rows(
        size_label(count, params.size), engine, script, cpu, script_cpu, commits, target, source
    )
    return result(
        scenario=SCENARIO,
        title=f"{size_label(count, params.size)} KR1 -> KR2, no latency",
        mode=mode,
        started=started,
        params={
            "count": count,
            "size_bytes": params.size,
            "repeats": repeats,
            "transfers": TRANSFERS,
            "script_parallel": PARALLEL,
        },
        metrics={
            "engine": engine,
            "script_x8": script,
            "ratio": {
                **metric(
                    [s.seconds / e.seconds for e, s in zip(engine_runs, script_runs, strict=True)],
                    "x",
                ),
                "median_of_medians": ratio,
            },
            "engine_cpu_per_image": cpu,
            "script_cpu_per_image": script_cpu,
            "journal_commits_per_image": commits,
            "engine_requests_target": target,
            "engine_requests_source": source,
        },
        rows=rows,
        notes=[
            "images/s: images over the wall time of the whole command (engine start-up "
            f"included); engine: `image-transfer run`, transfers = {TRANSFERS}, a fresh job "
            f"per repeat; script: benchmarks/lean_script.py, `xargs -P {PARALLEL}`",
            "CPU per image: user + system seconds of the command from wait4's rusage (the "
            "engine process; for the script xargs with every bash and curl it waited for), "
            "over the images; the emulator's CPU is not counted",
            "journal commits per image: the run report's journal_commits / images copied; "
            "requests per image: the emulator's counters (reset before each run)",
        ],
    )
