"""What the latency, scaling and tiny scenarios share: the lean curl script (the baseline an
operator could write in ten minutes), its runner, the emulator's request counters, the engine
run of one job and the cost of one image's bytes.

The lean script copies one image per bash invocation: ``curl`` GET of the source's metadata,
``curl`` POST of the create on the target (name, formats and ``os_type`` from that metadata,
the id read by bash from the answer), then ``curl GET .../file | curl -T - PUT .../file``.
``xargs -P N`` runs N of them at a time.  Every run's copies are checked (active, the
source's checksum) and deleted before the next run.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import (
    BenchError,
    Cloud,
    EngineRun,
    MiB,
    SeedImage,
    measure,
    run_async,
    run_engine,
    seed_state,
    settle,
    with_client,
)
from benchmarks.large_image import curl_pipe
from benchmarks.small_images import check_copies
from transfer.cloud.client import ImageClient
from transfer.models import Image

#: One image; its source id is ``$1``.  Fields are read by bash regexes (no jq, no python).
LEAN_ONE = r"""
set -euo pipefail
auth="X-Auth-Token: $BENCH_TOKEN"
meta=$(curl -sS -f -H "$auth" "$BENCH_SRC/v2/images/$1")
field() {
  local re="\"$1\": *\"([^\"]*)\""
  [[ $meta =~ $re ]] || { echo "no $1 in: $meta" >&2; exit 1; }
  value=${BASH_REMATCH[1]}
}
field name; name=$value
field disk_format; disk=$value
field container_format; container=$value
field os_type; os=$value
body="{\"name\": \"$name\", \"disk_format\": \"$disk\", \"container_format\": \"$container\","
body="$body \"os_type\": \"$os\"}"
created=$(curl -sS -f -H "$auth" -H "Content-Type: application/json" -d "$body" \
  "$BENCH_DST/v2/images")
re='"id": *"([0-9a-f-]+)"'
[[ $created =~ $re ]] || { echo "no id in: $created" >&2; exit 1; }
curl -sS -f -H "$auth" "$BENCH_SRC/v2/images/$1/file" |
  curl -sS -f -T - -H "$auth" -H "Content-Type: application/octet-stream" \
    "$BENCH_DST/v2/images/${BASH_REMATCH[1]}/file" > /dev/null
"""

#: The regions' request counters: region (or "identity") -> route -> requests.
Requests = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Timed:
    """One timed run of the engine or the script over a set of images."""

    seconds: float
    cpu_seconds: float  # user + system of the command (and the children it waited for)
    requests: Requests
    journal_commits: int = 0  # the engine's report; 0 for the script


#: The larger image whose ``curl | curl`` pipe gives the time of one image's bytes.
PROBE_NAME = "bytes-probe"


def seed_with_probe(
    state: Path, prefix: str, *, count: int, size: int, probe_size: int, fill_base: int
) -> None:
    """``count`` images of ``size`` named ``prefix0000``..., and the bytes probe, in KR1."""
    seeds = [
        SeedImage("KR1", f"{prefix}{n:04d}", size, fill_seed=fill_base + 1 + n)
        for n in range(count)
    ]
    seeds.append(SeedImage("KR1", PROBE_NAME, probe_size, fill_seed=fill_base))
    run_async(lambda: seed_state(state, seeds))


def reset_counters(cloud: Cloud) -> None:
    cloud.admin("/counters/reset", method="POST")


def read_counters(cloud: Cloud) -> Requests:
    data = cloud.admin("/counters")
    counts = {name: dict(c["requests"]) for name, c in data["regions"].items()}
    counts["identity"] = dict(data["identity"]["requests"])
    return counts


def list_sources(cloud: Cloud, prefix: str) -> list[Image]:
    """The source tenant's images on KR1 whose name starts with ``prefix``, by name."""

    async def listing(client: ImageClient) -> list[Image]:
        return [i async for i in client.list_images(owner=cloud.src.tenant_id)]

    found = with_client(cloud, cloud.src, "KR1", listing)
    return sorted(
        (i for i in found if (i.name or "").startswith(prefix)), key=lambda i: i.name or ""
    )


def expected_copies(sources: Sequence[Image]) -> dict[str, str]:
    """name -> checksum, what ``check_copies`` must find on KR2."""
    return {s.name or s.id: s.checksum or "" for s in sources}


def run_script(
    cloud: Cloud, work: Path, sources: Sequence[Image], parallel: int, expected: Mapping[str, str]
) -> Timed:
    """The lean script over ``sources``, ``parallel`` images at a time (``xargs -P``); checks
    and deletes the copies of ``expected`` afterwards."""
    listing = work / f"lean-list-{parallel}.txt"
    listing.write_text("".join(f"{s.id}\n" for s in sources))
    env = cloud.env()
    env.update(
        BENCH_TOKEN=cloud.token(cloud.src),
        BENCH_SRC=cloud.regions["KR1"],
        BENCH_DST=cloud.regions["KR2"],
    )
    cmd = ["xargs", "-P", str(parallel), "-n", "1", "-a", str(listing)]
    cmd += ["bash", "-c", LEAN_ONE, "lean-copy"]
    reset_counters(cloud)
    settle()
    done = measure(cmd, env=env, cwd=work)
    done.check(f"the lean script ({parallel} at a time)")
    requests = read_counters(cloud)
    check_copies(cloud, dict(expected))
    return Timed(done.seconds, done.cpu_seconds, requests)


def run_job(cloud: Cloud, config: Path, job: str, expected: Mapping[str, str], size: int) -> Timed:
    """``image-transfer run`` of one fresh job copying every image of ``expected``
    (``size`` bytes each); checks and deletes the copies afterwards."""
    reset_counters(cloud)
    settle()
    done: EngineRun = run_engine(
        cloud, config, job, expect_copies=len(expected), expect_bytes=len(expected) * size
    )
    requests = read_counters(cloud)
    check_copies(cloud, dict(expected))
    commits = int(done.report.get("journal_commits", 0))
    return Timed(done.seconds, done.cpu_seconds, requests, commits)


def bytes_seconds(cloud: Cloud, probe: Image, image_size: int, latency: float, n: int) -> float:
    """Seconds one image of ``image_size`` bytes takes to move through one ``curl | curl``
    pipe on this machine: the pipe's time for the (much larger) ``probe`` image, less the one
    latency its two requests pay side by side, scaled to ``image_size``."""
    size = probe.size or 0
    if size < 4 * image_size:
        raise BenchError(f"the bytes probe ({size} bytes) should be much larger than an image")
    seconds = curl_pipe(cloud, probe, f"bytes-probe-copy-{n}")
    return max(seconds - latency, 1e-6) * image_size / size


def bound(transfers: int, latency: float, t_bytes: float) -> float:
    """``transfers / (3 x latency + t_bytes)`` images/s: three requests' round trips (create,
    upload, verify) and the bytes, per transfer slot."""
    return transfers / (3 * latency + t_bytes)


def per_image(requests: Sequence[Requests], images: int) -> dict[str, dict[str, float]]:
    """Median requests per image, per region and route, over several runs."""
    out: dict[str, dict[str, float]] = {}
    for region in sorted({r for run in requests for r in run}):
        routes = sorted({route for run in requests for route in run.get(region, {})})
        by_route = {
            route: statistics.median([run.get(region, {}).get(route, 0) for run in requests])
            / images
            for route in routes
        }
        if by_route:
            out[region] = by_route
    return out


def region_total(requests: Requests, region: str) -> int:
    return sum(requests.get(region, {}).values())


def describe(per: Mapping[str, Mapping[str, float]], region: str) -> str:
    """``"3.0 (create 1, show 1, upload 1)"`` for one region's requests per image."""
    routes = per.get(region, {})
    parts = ", ".join(f"{route} {count:g}" for route, count in routes.items())
    return f"{sum(routes.values()):.2f} ({parts})" if routes else "0"


def size_label(count: int, size: int) -> str:
    unit = f"{size // MiB} MiB" if size >= MiB else f"{size // 1024} KiB"
    return f"{count:,}x{unit}"
