"""Scenario 8: many 4 MiB images KR1 -> KR2 over a link that adds 30 ms to every request.

The emulator runs with ``--latency 0.03``.  In the same run, alternating the order between
repeats: the engine (``image-transfer run``, ``transfers = 4``, a fresh job per repeat), the
lean curl script (``benchmarks/lean_script.py``) one image at a time and four at a time
(``xargs -P 4``), glanceclient one image after another on a subset (it is slow), and one
``curl | curl`` pipe of a large image, which gives the time one image's bytes take here
(``t_bytes``) for the bound ``B = transfers / (3 x latency + t_bytes)``.  The emulator's
counters give the requests per image of the engine and of the script; the engine's report
gives its journal commits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    Cloud,
    EmulatorProcess,
    JobSpec,
    MiB,
    metric,
    result,
    row,
    workspace,
    write_config,
)
from benchmarks.lean_script import (
    PROBE_NAME,
    Timed,
    bound,
    bytes_seconds,
    describe,
    expected_copies,
    list_sources,
    per_image,
    region_total,
    run_job,
    run_script,
    seed_with_probe,
    size_label,
)
from benchmarks.small_images import (
    GLANCE_SCRIPT,
    Baseline,
    built_glance,
    find_glance,
    glance_probe,
    run_baseline,
)

SCENARIO = "latency"
LATENCY = 0.03
TRANSFERS = 4
GOAL_SCRIPT = 1.5
GOAL_BOUND = 0.8
GOAL_GLANCE = 10.0
PREFIX = "bench-lat-"


@dataclass(frozen=True)
class Params:
    count: int
    size: int
    repeats: int
    glance_images: int  # glanceclient copies this many (one after another) per repeat
    glance_repeats: int  # in this many of the repeats
    probe_size: int  # the image whose curl pipe gives t_bytes


FULL = Params(
    count=100, size=4 * MiB, repeats=3, glance_images=10, glance_repeats=3, probe_size=256 * MiB
)
QUICK = Params(
    count=6, size=1 * MiB, repeats=3, glance_images=1, glance_repeats=1, probe_size=8 * MiB
)


@dataclass
class Runs:
    engine: list[Timed] = field(default_factory=list)
    script_x1: list[Timed] = field(default_factory=list)
    script_x4: list[Timed] = field(default_factory=list)
    glance_s: list[float] = field(default_factory=list)  # seconds for the subset
    t_bytes: list[float] = field(default_factory=list)


def pick_glance(cloud: Cloud, work: Path, mode: str) -> tuple[Baseline | None, str]:
    """glanceclient if it can run against the emulator (a quick run builds nothing)."""
    if mode == "quick":
        glance = built_glance()
        why = "python-glanceclient is not built (a quick run builds nothing; `make clients`)"
    else:
        glance, why = find_glance()
    if glance is None:
        return None, why
    usable, why = glance_probe(cloud, work, glance)
    return (Baseline("glanceclient", GLANCE_SCRIPT, why, glance) if usable else None), why


def measure_all(
    cloud: Cloud,
    work: Path,
    params: Params,
    repeats: int,
    glance: Baseline | None,
) -> Runs:
    sources = list_sources(cloud, PREFIX)
    [probe] = list_sources(cloud, PROBE_NAME)
    expected = expected_copies(sources)
    subset = sources[: params.glance_images]
    jobs = [
        JobSpec(name=f"latency-{i}", names=[PREFIX + "*"], transfers=TRANSFERS)
        for i in range(repeats)
    ]
    config = write_config(work / "bench.toml", cloud, jobs)
    runs = Runs()
    kinds = ["engine", "script_x1", "script_x4", "bytes"] + (["glance"] if glance else [])
    for i in range(repeats):
        shift = i % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            if kind == "engine":
                runs.engine.append(run_job(cloud, config, f"latency-{i}", expected, params.size))
            elif kind == "script_x1":
                runs.script_x1.append(run_script(cloud, work, sources, 1, expected))
            elif kind == "script_x4":
                runs.script_x4.append(run_script(cloud, work, sources, 4, expected))
            elif kind == "bytes":
                runs.t_bytes.append(bytes_seconds(cloud, probe, params.size, LATENCY, i))
            elif glance is not None and i < params.glance_repeats:
                runs.glance_s.append(
                    run_baseline(cloud, glance, work, subset, expected_copies(subset))
                )
    return runs


def request_metrics(runs: Runs, count: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for who, timed in (("engine", runs.engine), ("script", runs.script_x4)):
        per = per_image([t.requests for t in timed], count)
        for side, region in (("target", "KR2"), ("source", "KR1")):
            out[f"{who}_requests_{side}"] = metric(
                [region_total(t.requests, region) / count for t in timed],
                "requests/image",
                routes=per.get(region, {}),
            )
        out[f"{who}_requests_identity"] = metric(
            [region_total(t.requests, "identity") / count for t in timed],
            "requests/image",
            routes=per.get("identity", {}),
        )
    return out


def glance_row(
    label: str, engine: float, glance_ips: list[float], params: Params, why: str
) -> dict[str, Any]:
    goal = f">= {GOAL_GLANCE:g}x"
    if not glance_ips:
        return row(
            f"{label} vs glanceclient",
            f"{engine:.1f} img/s",
            "glanceclient n/a: " + why[:60],
            "-",
            goal,
            None,
        )
    glance = metric(glance_ips, "images/s")["median"]
    ratio = engine / glance
    return row(
        f"{label} vs glanceclient",
        f"{engine:.1f} img/s",
        f"{glance:.2f} img/s glance ({params.glance_images} images)",
        f"{ratio:.1f}x",
        goal,
        ratio >= GOAL_GLANCE,
    )


def build_rows(
    label: str, metrics: dict[str, dict[str, Any]], runs: Runs, params: Params, why: str
) -> list[dict[str, Any]]:
    engine = metrics["engine"]["median"]
    x1, x4 = metrics["script_x1"]["median"], metrics["script_x4"]["median"]
    bnd, t_bytes = metrics["bound"]["median"], metrics["bytes_seconds"]["median"]
    req = {k: v["routes"] for k, v in metrics.items() if k.endswith(("_target", "_source"))}
    commits = metrics["journal_commits_per_image"]["median"]
    glance_ips = [params.glance_images / s for s in runs.glance_s]
    return [
        row(
            f"{label} vs script x4",
            f"{engine:.1f} img/s (transfers={TRANSFERS})",
            f"{x4:.1f} img/s script x4",
            f"{engine / x4:.2f}x",
            f">= {GOAL_SCRIPT:g}x",
            engine / x4 >= GOAL_SCRIPT,
        ),
        row(
            f"{label} vs bound",
            f"{engine:.1f} img/s",
            f"{bnd:.1f} img/s = {TRANSFERS}/(3x{LATENCY * 1000:g} ms + {t_bytes * 1000:.1f} ms)",
            f"{engine / bnd:.2f}x",
            f">= {GOAL_BOUND:g}x",
            engine / bnd >= GOAL_BOUND,
        ),
        # The script makes the same three round trips per image: how near this machine lets
        # even the leanest client come to the bound.
        row(
            f"{label} script x4 vs bound",
            f"{x4:.1f} img/s script x4",
            f"{bnd:.1f} img/s bound",
            f"{x4 / bnd:.2f}x",
            "-",
            None,
        ),
        glance_row(label, engine, glance_ips, params, why),
        row(
            f"{label} script x1",
            f"{engine:.1f} img/s",
            f"{x1:.1f} img/s script x1",
            f"{engine / x1:.1f}x",
            "-",
            None,
        ),
        row(
            f"{label} requests/image KR2, KR1",
            f"{sum(req['engine_requests_target'].values()):.2f}, "
            f"{sum(req['engine_requests_source'].values()):.2f}",
            f"{sum(req['script_requests_target'].values()):.2f}, "
            f"{sum(req['script_requests_source'].values()):.2f} script",
            "-",
            "-",
            None,
        ),
        row(f"{label} journal commits/image", f"{commits:.2f}", "-", "-", "-", None),
    ]


def run(mode: str, repeats: int | None = None) -> dict[str, Any]:
    params = QUICK if mode == "quick" else FULL
    repeats = repeats or params.repeats
    started = time.monotonic()
    with workspace(SCENARIO) as work:
        state = work / "state"
        seed_with_probe(
            state,
            PREFIX,
            count=params.count,
            size=params.size,
            probe_size=params.probe_size,
            fill_base=2999,
        )
        with EmulatorProcess(state, extra_args=["--latency", str(LATENCY)]) as cloud:
            glance, why = pick_glance(cloud, work, mode)
            runs = measure_all(cloud, work, params, repeats, glance)
    count = params.count
    metrics: dict[str, dict[str, Any]] = {
        "engine": metric([count / t.seconds for t in runs.engine], "images/s"),
        "script_x1": metric([count / t.seconds for t in runs.script_x1], "images/s"),
        "script_x4": metric([count / t.seconds for t in runs.script_x4], "images/s"),
        "bytes_seconds": metric(runs.t_bytes, "s", image_bytes=params.size),
        "bound": metric([bound(TRANSFERS, LATENCY, t) for t in runs.t_bytes], "images/s"),
        "journal_commits_per_image": metric(
            [t.journal_commits / count for t in runs.engine], "commits/image"
        ),
        "engine_cpu_per_image": metric([t.cpu_seconds / count for t in runs.engine], "s"),
        **request_metrics(runs, count),
    }
    if runs.glance_s:
        metrics["glance"] = metric([params.glance_images / s for s in runs.glance_s], "images/s")
    label = f"8 latency {size_label(count, params.size)} {LATENCY * 1000:g} ms"
    return result(
        scenario=SCENARIO,
        title=f"{size_label(count, params.size)} KR1 -> KR2, {LATENCY * 1000:g} ms per request",
        mode=mode,
        started=started,
        params={
            "count": count,
            "size_bytes": params.size,
            "repeats": repeats,
            "latency_seconds": LATENCY,
            "transfers": TRANSFERS,
            "glance_images": params.glance_images if runs.glance_s else 0,
            "glance_why": why,
            "probe_size_bytes": params.probe_size,
        },
        metrics=metrics,
        rows=build_rows(label, metrics, runs, params, why),
        notes=notes(metrics, params, why, bool(runs.glance_s)),
    )


def notes(metrics: dict[str, dict[str, Any]], params: Params, why: str, glance: bool) -> list[str]:
    routes = {k: v["routes"] for k, v in metrics.items() if "_requests_" in k}
    probe = params.probe_size // MiB
    return [
        "images/s: images over the wall time of the whole command (engine start-up included); "
        f"engine: `image-transfer run`, transfers = {TRANSFERS}, a fresh job per repeat; "
        "script: benchmarks/lean_script.py, one bash per image, `xargs -P 1` / `-P 4`",
        f"bound: {TRANSFERS} / (3 x {LATENCY * 1000:g} ms + t_bytes); t_bytes = the time of one "
        f"`curl | curl` pipe of a {probe} MiB image in the same emulator, less one latency "
        f"(its two requests wait side by side), scaled to {params.size // MiB} MiB; "
        f"median {metrics['bytes_seconds']['median'] * 1000:.2f} ms",
        "requests per image (emulator counters, reset before each run, read after; median "
        "over the repeats): "
        + "; ".join(f"{name}: {describe({'r': r}, 'r')}" for name, r in routes.items() if r),
        "journal commits per image: the run report's journal_commits / images copied",
        (
            f"glanceclient: `glance image-download` then `glance image-create`, one image after "
            f"another, {params.glance_images} of the images per run ({why})"
            if glance
            else f"glanceclient not measured: {why}"
        ),
    ]
