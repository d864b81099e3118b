"""Scenario 1: one large image KR1 -> KR2, the engine against a ``curl | curl`` pipe.

The engine runs as ``image-transfer run`` (a fresh job per repeat, so every repeat really copies
and verifies); the baseline streams the same bytes between the same two servers with two curls
into an empty image created beforehand.  Each repeat runs both, alternating which goes first,
then deletes both copies.  Throughput is the image size over the whole command's wall time
(start-up, token, listing, planning and verification included for the engine).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
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
    create_images,
    delete_images,
    get_image,
    measure,
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
from transfer.models import Image

SCENARIO = "large_image"
GOAL = 0.90


@dataclass(frozen=True)
class Params:
    size: int
    repeats: int


FULL = Params(size=2 * GiB, repeats=5)
QUICK = Params(size=256 * MiB, repeats=3)

# pipefail: a failed download must fail the measurement, not upload a short body.
CURL_PIPE = (
    "set -o pipefail; "
    'curl -sS -f -H "X-Auth-Token: $BENCH_TOKEN" "$1" | '
    'curl -sS -f -T - -H "X-Auth-Token: $BENCH_TOKEN" '
    '-H "Content-Type: application/octet-stream" "$2"'
)


def curl_pipe(cloud: Cloud, source: Image, name: str) -> float:
    """Copy ``source`` KR1 -> KR2 with two curls; seconds of the pipe alone."""
    [target_id] = create_images(
        cloud,
        cloud.src,
        "KR2",
        [
            {
                "name": name,
                "disk_format": source.disk_format,
                "container_format": source.container_format,
                "os_type": "linux",
            }
        ],
    )
    env = cloud.env()
    env["BENCH_TOKEN"] = cloud.token(cloud.src)
    src_url = f"{cloud.regions['KR1']}/v2/images/{source.id}/file"
    dst_url = f"{cloud.regions['KR2']}/v2/images/{target_id}/file"
    settle()
    done = measure(["bash", "-c", CURL_PIPE, "curl-pipe", src_url, dst_url], env=env)
    done.check("the curl pipe")
    copy = get_image(cloud, cloud.src, "KR2", target_id)
    delete_images(cloud, cloud.src, "KR2", [target_id])
    if copy.status != "active" or copy.checksum != source.checksum:
        raise BenchError(f"the curl pipe left a {copy.status} copy with checksum {copy.checksum}")
    return done.seconds


def engine_copy(cloud: Cloud, config: Path, job: str, source: Image) -> tuple[float, float]:
    """Copy with the engine; (whole command seconds, the run's own seconds)."""
    settle()
    run = run_engine(cloud, config, job, expect_copies=1, expect_bytes=source.size or 0)
    ids = run.target_ids()
    copy = get_image(cloud, cloud.src, "KR2", ids[0])
    delete_images(cloud, cloud.src, "KR2", ids)
    if copy.checksum != source.checksum:
        raise BenchError(f"job {job}: the copy's checksum {copy.checksum} is not the source's")
    return run.seconds, run.engine_seconds


def run(mode: str, repeats: int | None = None) -> dict[str, Any]:
    params = QUICK if mode == "quick" else FULL
    repeats = repeats or params.repeats
    started = time.monotonic()
    with workspace(SCENARIO) as work:
        state = work / "state"
        seeds = [SeedImage("KR1", "bench-large", params.size, fill_seed=7)]
        [source_id] = run_async(lambda: seed_state(state, seeds))
        with EmulatorProcess(state) as cloud:
            source = get_image(cloud, cloud.src, "KR1", source_id)
            jobs = [JobSpec(name=f"large-{i}", names=["bench-large"]) for i in range(repeats)]
            config = write_config(work / "bench.toml", cloud, jobs)
            engine_s: list[float] = []
            engine_run_s: list[float] = []
            curl_s: list[float] = []
            for i in range(repeats):
                # Alternate the order so a slow drift (page cache, writeback) hits both alike.
                if i % 2 == 0:
                    whole, own = engine_copy(cloud, config, f"large-{i}", source)
                    curl_s.append(curl_pipe(cloud, source, f"curl-copy-{i}"))
                else:
                    curl_s.append(curl_pipe(cloud, source, f"curl-copy-{i}"))
                    whole, own = engine_copy(cloud, config, f"large-{i}", source)
                engine_s.append(whole)
                engine_run_s.append(own)
    megabytes = params.size / MB
    engine = metric([megabytes / s for s in engine_s], "MB/s")
    engine_run = metric([megabytes / s for s in engine_run_s], "MB/s")
    curl = metric([megabytes / s for s in curl_s], "MB/s")
    ratio = engine["median"] / curl["median"]
    pair_ratios = [c / e for e, c in zip(engine_s, curl_s, strict=True)]
    size = f"{params.size / GiB:g} GiB" if params.size >= GiB else f"{params.size // MiB} MiB"
    return result(
        scenario=SCENARIO,
        title=f"one large image ({size}) KR1 -> KR2",
        mode=mode,
        started=started,
        params={"size_bytes": params.size, "repeats": repeats, "verify": "auto"},
        metrics={
            "engine": engine,
            "engine_run_only": engine_run,
            "baseline_curl_pipe": curl,
            "ratio": {**metric(pair_ratios, "x"), "median_of_medians": ratio},
        },
        rows=[
            row(
                f"1 large image {size}",
                f"{engine['median']:.0f} MB/s",
                f"{curl['median']:.0f} MB/s curl|curl",
                f"{ratio:.2f}x",
                f">= {GOAL:.2f}x",
                ratio >= GOAL,
            )
        ],
        notes=[
            "engine: `image-transfer run` wall time, start-up and verification included; "
            "engine_run_only: the run's own seconds from its JSON report",
            "ratio: median engine MB/s / median curl MB/s; metrics.ratio.runs: per repeat",
        ],
    )
