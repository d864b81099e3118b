"""Scenario 1: one large image KR1 -> KR2, the engine against a ``curl | curl`` pipe, at 1 GiB
and at 2 GiB (96 MiB in the quick mode).

The engine runs as ``image-transfer run`` (a fresh job per repeat, so every repeat really copies
and verifies); the baseline streams the same bytes between the same two servers with two curls
into an empty image created beforehand.  Each repeat runs both, alternating which goes first,
then deletes both copies.  Throughput is the image size over the whole command's wall time
(start-up, token, listing, planning and verification included for the engine).
"""

from __future__ import annotations

import shutil
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
GOAL = 1.0


@dataclass(frozen=True)
class Params:
    sizes: tuple[int, ...]  # the largest last: its metrics carry the plain names
    repeats: int


FULL = Params(sizes=(1 * GiB, 2 * GiB), repeats=5)
QUICK = Params(sizes=(96 * MiB,), repeats=3)

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


def size_text(size: int) -> str:
    return f"{size / GiB:g} GiB" if size >= GiB else f"{size // MiB} MiB"


def measure_size(work: Path, size: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of the engine (whole command, and the run alone) and of the curl pipe, for one
    image of ``size`` bytes, ``repeats`` pairs in alternating order."""
    state = work / f"state-{size}"
    seeds = [SeedImage("KR1", "bench-large", size, fill_seed=7)]
    [source_id] = run_async(lambda: seed_state(state, seeds))
    times: dict[str, list[float]] = {"engine": [], "engine_run_only": [], "curl": []}
    with EmulatorProcess(state) as cloud:
        source = get_image(cloud, cloud.src, "KR1", source_id)
        jobs = [JobSpec(name=f"large-{i}", names=["bench-large"]) for i in range(repeats)]
        config = write_config(work / f"bench-{size}.toml", cloud, jobs)
        for i in range(repeats):
            # Alternate the order so a slow drift (page cache, writeback) hits both alike.
            if i % 2 == 0:
                whole, own = engine_copy(cloud, config, f"large-{i}", source)
                times["curl"].append(curl_pipe(cloud, source, f"curl-copy-{i}"))
            else:
                times["curl"].append(curl_pipe(cloud, source, f"curl-copy-{i}"))
                whole, own = engine_copy(cloud, config, f"large-{i}", source)
            times["engine"].append(whole)
            times["engine_run_only"].append(own)
    shutil.rmtree(state, ignore_errors=True)
    return times


def run(mode: str, repeats: int | None = None) -> dict[str, Any]:
    params = QUICK if mode == "quick" else FULL
    repeats = repeats or params.repeats
    started = time.monotonic()
    metrics: dict[str, dict[str, Any]] = {}
    rows = []
    with workspace(SCENARIO) as work:
        for size in params.sizes:
            times = measure_size(work, size, repeats)
            megabytes = size / MB
            engine = metric([megabytes / s for s in times["engine"]], "MB/s")
            curl = metric([megabytes / s for s in times["curl"]], "MB/s")
            ratio = engine["median"] / curl["median"]
            pair_ratios = [c / e for e, c in zip(times["engine"], times["curl"], strict=True)]
            suffix = "" if size == params.sizes[-1] else f"_{size // MiB}mib"
            metrics[f"engine{suffix}"] = engine
            metrics[f"engine_run_only{suffix}"] = metric(
                [megabytes / s for s in times["engine_run_only"]], "MB/s"
            )
            metrics[f"baseline_curl_pipe{suffix}"] = curl
            metrics[f"ratio{suffix}"] = {**metric(pair_ratios, "x"), "median_of_medians": ratio}
            rows.append(
                row(
                    f"1 large image {size_text(size)}",
                    f"{engine['median']:.0f} MB/s",
                    f"{curl['median']:.0f} MB/s curl|curl",
                    f"{ratio:.2f}x",
                    f">= {GOAL:.2f}x",
                    ratio >= GOAL,
                )
            )
    sizes = " and ".join(size_text(size) for size in params.sizes)
    return result(
        scenario=SCENARIO,
        title=f"one large image ({sizes}) KR1 -> KR2",
        mode=mode,
        started=started,
        params={"sizes_bytes": list(params.sizes), "repeats": repeats, "verify": "auto"},
        metrics=metrics,
        rows=rows,
        notes=[
            "engine: `image-transfer run` wall time, start-up and verification included; "
            "engine_run_only: the run's own seconds from its JSON report",
            "ratio: median engine MB/s / median curl MB/s; metrics.ratio.runs: per repeat",
            f"the plain metric names are the {size_text(params.sizes[-1])} image's; the others "
            "carry their size in MiB",
        ],
    )
