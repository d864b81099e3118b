"""Scenario 2: many small images KR1 -> KR2, the engine against what operators do today.

Today's practice is one image after another with the python-glanceclient CLI: ``glance
image-download --file F ID`` then ``glance image-create --file F ...``, configured as an
operator configures it (auth URL, project, user, password, the region per call; no endpoint
override).  glanceclient is the one of the clients' environment
(``~/.cache/image-transfer/interop/clients-venv``, ``interop/clients.py``, built on first use).
The other baseline (``--baseline curl``, and when
glanceclient cannot be installed or cannot run against the emulator, see ``glance_probe``) is
the same sequence done by a shell script with curl (download to a file, create, upload the
file), which is strictly faster than glanceclient: it skips glanceclient's Python start-up and
its authentication twice per image.  The result says which baseline ran and why.

The engine copies every image with ``transfers`` = 1, 4, 8 and 16 (a fresh job each run); the
headline is the job default, 4.  Every copy is checked after the run (status and checksum) and
deleted before the next run.
"""

from __future__ import annotations

import re
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    BenchError,
    Cloud,
    EmulatorProcess,
    JobSpec,
    MiB,
    SeedImage,
    delete_images,
    measure,
    metric,
    owned_ids,
    result,
    row,
    run_async,
    run_engine,
    seed_state,
    settle,
    with_client,
    workspace,
    write_config,
)
from interop.clients import VENV_NAME, ClientsInstall, ensure_clients
from interop.environment import DEFAULT_ROOT, BuildFailed, IndexUnreachable
from transfer.cloud.client import ImageClient
from transfer.journal.sqlite import SqliteJournal
from transfer.models import Image

SCENARIO = "small_images"
GOAL = 5.0
DEFAULT_TRANSFERS = 4


@dataclass(frozen=True)
class Params:
    count: int
    size: int
    repeats: int
    transfers: tuple[int, ...] = (1, 4, 8, 16)


FULL = Params(count=200, size=8 * MiB, repeats=5)
QUICK = Params(count=8, size=1 * MiB, repeats=3)

# One image after another, as an operator's script would.  The create's answer is parsed by
# bash itself (no extra process), like glanceclient reads the id from the response.
CURL_SCRIPT = r"""
set -euo pipefail
auth="X-Auth-Token: $BENCH_TOKEN"
while read -r id name; do
  curl -sS -f -o "$BENCH_TMP/image" -H "$auth" "$BENCH_SRC/v2/images/$id/file"
  body="{\"name\": \"$name\", \"disk_format\": \"qcow2\", \"container_format\": \"bare\","
  body="$body \"os_type\": \"linux\"}"
  created=$(curl -sS -f -H "$auth" -H "Content-Type: application/json" -d "$body" \
    "$BENCH_DST/v2/images")
  [[ $created =~ \"id\":\ *\"([0-9a-f-]+)\" ]] || { echo "no id in: $created" >&2; exit 1; }
  curl -sS -f -T "$BENCH_TMP/image" -H "$auth" -H "Content-Type: application/octet-stream" \
    "$BENCH_DST/v2/images/${BASH_REMATCH[1]}/file"
  rm -f "$BENCH_TMP/image"
done < "$BENCH_LIST"
"""

# The operator's credentials are in OS_* (as an openrc sets them); the region is chosen per call.
GLANCE_SCRIPT = r"""
set -euo pipefail
while read -r id name; do
  "$BENCH_GLANCE" --os-region-name KR1 image-download --file "$BENCH_TMP/image" "$id"
  "$BENCH_GLANCE" --os-region-name KR2 image-create --file "$BENCH_TMP/image" \
    --name "$name" --disk-format qcow2 --container-format bare --property os_type=linux \
    > /dev/null
  rm -f "$BENCH_TMP/image"
done < "$BENCH_LIST"
"""


@dataclass(frozen=True)
class Baseline:
    tool: str  # "glanceclient" or "curl"
    script: str
    why: str
    glance: Path | None = None  # the glance command, for the glanceclient baseline


def find_glance() -> tuple[Path | None, str]:
    """The clients' environment's ``glance`` (built on first use), or None and why not."""
    try:
        return ensure_clients().bin("glance"), ""
    except (IndexUnreachable, BuildFailed) as exc:
        return None, f"python-glanceclient could not be installed ({exc})".replace("\n", " ")


def built_glance() -> Path | None:
    """The clients' environment's ``glance`` if it is already there (nothing is built)."""
    glance = ClientsInstall(DEFAULT_ROOT / VENV_NAME).bin("glance")
    return glance if glance.exists() else None


def glance_calls(cloud: Cloud, work: Path, glance: Path | None) -> list[float]:
    """Wall times of ``glance image-list`` calls against the emulator: what every glance CLI
    call costs before it moves a byte (start-up and authentication).  Empty without glance."""
    if glance is None:
        return []
    env = _glance_env(cloud, "KR2")
    calls = [measure([str(glance), "image-list"], env=env, cwd=work) for _ in range(3)]
    return [c.seconds for c in calls if c.returncode == 0]


def journal_commits(work: Path, batches: int = 3, per_batch: int = 100) -> list[float]:
    """Milliseconds per durable journal write on this disk (``update_entry``, as the pipeline
    makes them), in a few batches."""

    async def measure_batches() -> list[float]:
        timings = []
        async with SqliteJournal(work / "commit-probe.db") as journal:
            await journal.ensure_entry(
                "probe",
                "source",
                "src/KR2",
                source_name="probe",
                source_checksum=None,
                source_size=0,
                target_id=None,
                generation=0,
            )
            for _ in range(batches):
                started = time.perf_counter()
                for n in range(per_batch):
                    await journal.update_entry("probe", "source", "src/KR2", bytes_done=n)
                timings.append((time.perf_counter() - started) * 1000 / per_batch)
        return timings

    return run_async(measure_batches)


def _glance_env(cloud: Cloud, region: str) -> dict[str, str]:
    """An operator's openrc for the source tenant: credentials only, no endpoint override."""
    env = {k: v for k, v in cloud.env().items() if not k.startswith(("OS_", "PYTHON"))}
    env.update(
        OS_AUTH_URL=cloud.identity_url,
        OS_PROJECT_ID=cloud.src.tenant_id,
        OS_USERNAME=cloud.src.username,
        OS_PASSWORD=cloud.src.password,
        OS_REGION_NAME=region,
    )
    return env


_REQUEST = re.compile(r'"(GET|POST|PUT|PATCH|DELETE|HEAD) (\S+) HTTP/1\.1" (\d{3})')


def glance_probe(cloud: Cloud, work: Path, glance: Path) -> tuple[bool, str]:
    """Whether ``glance image-create`` works on the emulator, and if not, exactly why (the
    request that failed, from glanceclient's own debug log)."""
    args = ["--name", "glance-probe", "--disk-format", "qcow2", "--container-format", "bare"]
    probe = measure(
        [str(glance), "--debug", "image-create", *args, "--property", "os_type=linux"],
        env=_glance_env(cloud, "KR2"),
        cwd=work,
    )
    if probe.returncode == 0:
        delete_images(cloud, cloud.src, "KR2", owned_ids(cloud, cloud.src, "KR2"))
        return True, "python-glanceclient runs against the emulator"
    failed = [m for m in _REQUEST.findall(probe.stderr) if int(m[2]) >= 400]
    said = (probe.stderr.strip().splitlines() or ["no output"])[-1]
    if not failed:
        return False, f"`glance image-create` fails against the emulator: {said}"
    method, path, status = failed[-1]
    why = f"`glance image-create` fails against the emulator: its request {method} {path} "
    why += f"gets {status}"
    return False, f"{why}; glance said: {said}"


def choose_baseline(cloud: Cloud, work: Path, wanted: str) -> Baseline:
    if wanted == "curl":
        return Baseline("curl", CURL_SCRIPT, "chosen on the command line")
    glance, why = find_glance()
    if glance is not None:
        usable, why = glance_probe(cloud, work, glance)
        if usable:
            return Baseline("glanceclient", GLANCE_SCRIPT, why, glance)
    if wanted == "glance":
        raise BenchError(why)
    return Baseline("curl", CURL_SCRIPT, why)


def run_baseline(
    cloud: Cloud, baseline: Baseline, work: Path, sources: list[Image], expected: dict[str, str]
) -> float:
    """One sequential copy of every source; seconds.  Checks and deletes the copies."""
    listing = work / "baseline-list.txt"
    listing.write_text("".join(f"{s.id} {s.name}\n" for s in sources))
    scratch = work / "baseline-tmp"
    scratch.mkdir(exist_ok=True)
    env = _glance_env(cloud, "KR2") if baseline.glance is not None else cloud.env()
    env.update(
        BENCH_TOKEN=cloud.token(cloud.src),
        BENCH_SRC=cloud.regions["KR1"],
        BENCH_DST=cloud.regions["KR2"],
        BENCH_LIST=str(listing),
        BENCH_TMP=str(scratch),
        BENCH_GLANCE=str(baseline.glance or ""),
    )
    settle()
    done = measure(["bash", "-c", baseline.script], env=env, cwd=work)
    done.check(f"the {baseline.tool} baseline")
    check_copies(cloud, expected)
    shutil.rmtree(scratch, ignore_errors=True)
    return done.seconds


def check_copies(cloud: Cloud, expected: dict[str, str]) -> None:
    """Every name in ``expected`` is on KR2, active, with its checksum; then delete them all."""

    async def listing(client: ImageClient) -> list[Image]:
        return [i async for i in client.list_images(owner=cloud.src.tenant_id)]

    copies = with_client(cloud, cloud.src, "KR2", listing)
    found = {c.name: c for c in copies if c.status == "active"}
    wrong = [
        n for n, checksum in expected.items() if getattr(found.get(n), "checksum", None) != checksum
    ]
    delete_images(cloud, cloud.src, "KR2", [c.id for c in copies])
    if wrong or len(copies) != len(expected):
        raise BenchError(
            f"{len(copies)} images on KR2 after a copy of {len(expected)}; "
            f"{len(wrong)} missing or wrong (first: {wrong[:1]})"
        )


def glance_bound(
    glance_call: float,
    chosen: Baseline,
    metrics: dict[str, dict[str, Any]],
    label: str,
    rows: list[dict[str, Any]],
    notes: list[str],
) -> None:
    """The note on one glance call's cost; against curl, also the row of what a glance
    baseline could at best have been (two calls per image)."""
    bound = 1 / (2 * glance_call)
    notes.append(
        f"one `glance image-list` call takes {glance_call:.2f} s here (Python start-up, "
        "authentication); a glance copy needs two calls per image (download, create), so a "
        f"glance baseline could not exceed {bound:.2f} images/s"
    )
    if chosen.tool == "glanceclient":
        return
    default = metrics[f"engine_transfers_{DEFAULT_TRANSFERS}"]["median"]
    rows.append(
        row(
            f"2 small images {label} vs glance CLI (bound)",
            f"{default:.1f} img/s",
            f"<= {bound:.2f} img/s glance",
            f">= {default / bound:.1f}x",
            f">= {GOAL:g}x",
            default / bound >= GOAL,
        )
    )


def run(mode: str, repeats: int | None = None, baseline: str = "auto") -> dict[str, Any]:
    params = QUICK if mode == "quick" else FULL
    repeats = repeats or params.repeats
    started = time.monotonic()
    with workspace(SCENARIO) as work:
        state = work / "state"
        seeds = [
            SeedImage("KR1", f"bench-small-{n:04d}", params.size, fill_seed=1000 + n)
            for n in range(params.count)
        ]
        run_async(lambda: seed_state(state, seeds))
        with EmulatorProcess(state) as cloud:

            async def listing(client: ImageClient) -> list[Image]:
                return [i async for i in client.list_images(owner=cloud.src.tenant_id)]

            sources = sorted(
                with_client(cloud, cloud.src, "KR1", listing), key=lambda i: i.name or ""
            )
            expected = {s.name or s.id: s.checksum or "" for s in sources}
            chosen = choose_baseline(cloud, work, baseline)
            glance_calls_s = glance_calls(cloud, work, chosen.glance or built_glance())
            jobs = [
                JobSpec(name=f"small-t{t}-{i}", names=["bench-small-*"], transfers=t)
                for t in params.transfers
                for i in range(repeats)
            ]
            config = write_config(work / "bench.toml", cloud, jobs)
            total = params.count * params.size
            baseline_s: list[float] = []
            engine_s: dict[int, list[float]] = {t: [] for t in params.transfers}
            for i in range(repeats):
                # Rotate the order so no setting always runs first after the baseline.
                order: list[int | None] = [None, *params.transfers]
                shift = i % len(order)
                for transfers in order[shift:] + order[:shift]:
                    if transfers is None:
                        baseline_s.append(run_baseline(cloud, chosen, work, sources, expected))
                        continue
                    settle()
                    done = run_engine(
                        cloud,
                        config,
                        f"small-t{transfers}-{i}",
                        expect_copies=params.count,
                        expect_bytes=total,
                    )
                    check_copies(cloud, expected)
                    engine_s[transfers].append(done.seconds)
        # Measured with the emulator stopped: the disk as the journal alone meets it.
        commits_ms = journal_commits(work)
    commits = metric(commits_ms, "ms")
    glance_call = statistics.median(glance_calls_s) if glance_calls_s else None
    count = params.count
    base = metric([count / s for s in baseline_s], "images/s", tool=chosen.tool)
    metrics: dict[str, dict[str, Any]] = {"baseline": base, "journal_commit": commits}
    label = f"{count}x{params.size // MiB} MiB"
    rows = []
    for transfers in params.transfers:
        engine = metric([count / s for s in engine_s[transfers]], "images/s")
        metrics[f"engine_transfers_{transfers}"] = engine
        ratio = engine["median"] / base["median"]
        engine["ratio"] = ratio
        headline = transfers == DEFAULT_TRANSFERS
        rows.append(
            row(
                f"2 small images {label} transfers={transfers}"
                + (" (default)" if headline else ""),
                f"{engine['median']:.1f} img/s",
                f"{base['median']:.2f} img/s {chosen.tool}",
                f"{ratio:.1f}x",
                f">= {GOAL:g}x" if headline else "-",
                ratio >= GOAL if headline else None,
            )
        )
    notes = [
        f"baseline: {chosen.tool}, one image after another"
        + (f" ({chosen.why})" if chosen.why else ""),
        "images/s: images over the wall time of the whole command (engine start-up included)",
        "journal_commit: one durable journal write (update_entry) on this disk, in ms; each "
        "image takes a few tens of them, one after another (see benchmarks/README.md)",
    ]
    if glance_call is not None:
        metrics["glance_call"] = metric(glance_calls_s, "s")
        glance_bound(glance_call, chosen, metrics, label, rows, notes)
    return result(
        scenario=SCENARIO,
        title=f"many small images ({label}) KR1 -> KR2",
        mode=mode,
        started=started,
        params={
            "count": count,
            "size_bytes": params.size,
            "repeats": repeats,
            "transfers": list(params.transfers),
            "baseline": chosen.tool,
            "baseline_why": chosen.why,
            "glance_call_seconds": glance_call,
        },
        metrics=metrics,
        rows=rows,
        notes=notes,
    )
