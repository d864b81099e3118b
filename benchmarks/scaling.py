"""Scenario 9: images/s of the engine against ``transfers``, with 30 ms added to every request.

The emulator runs with ``--latency 0.03``.  Each repeat runs the engine at every ``transfers``
value (a fresh job each), the lean curl script four at a time (``xargs -P 4``) and one
``curl | curl`` pipe of a large image (``t_bytes``, as in the latency scenario), rotating the
order.  For each value the bound is ``transfers / (3 x latency + t_bytes)``.  A full run draws
``benchmarks/scaling.png`` (matplotlib, the ``bench`` extra, imported only there).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    BENCH_DIR,
    REPO,
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
    bound,
    bytes_seconds,
    expected_copies,
    list_sources,
    run_job,
    run_script,
    seed_with_probe,
    size_label,
)

SCENARIO = "scaling"
LATENCY = 0.03
PREFIX = "bench-scale-"
CHART = BENCH_DIR / "scaling.png"


@dataclass(frozen=True)
class Params:
    count: int
    size: int
    repeats: int
    transfers: tuple[int, ...]
    probe_size: int


FULL = Params(
    count=128, size=4 * MiB, repeats=3, transfers=(1, 2, 4, 8, 16, 32), probe_size=256 * MiB
)
QUICK = Params(count=6, size=1 * MiB, repeats=3, transfers=(1, 4), probe_size=8 * MiB)


def measure_all(
    cloud: Cloud, work: Path, params: Params, repeats: int
) -> tuple[dict[int, list[float]], list[float], list[float]]:
    """Seconds per engine run by transfers, of the script x4, and t_bytes per repeat."""
    sources = list_sources(cloud, PREFIX)
    [probe] = list_sources(cloud, PROBE_NAME)
    expected = expected_copies(sources)
    jobs = [
        JobSpec(name=f"scale-t{t}-{i}", names=[PREFIX + "*"], transfers=t)
        for t in params.transfers
        for i in range(repeats)
    ]
    config = write_config(work / "bench.toml", cloud, jobs)
    engine: dict[int, list[float]] = {t: [] for t in params.transfers}
    script: list[float] = []
    t_bytes: list[float] = []
    kinds: list[int | str] = [*params.transfers, "script", "bytes"]
    for i in range(repeats):
        shift = i % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            if kind == "script":
                script.append(run_script(cloud, work, sources, 4, expected).seconds)
            elif kind == "bytes":
                t_bytes.append(bytes_seconds(cloud, probe, params.size, LATENCY, i))
            else:
                t = int(kind)
                done = run_job(cloud, config, f"scale-t{t}-{i}", expected, params.size)
                engine[t].append(done.seconds)
    return engine, script, t_bytes


def draw_chart(
    path: Path,
    title: str,
    transfers: Sequence[int],
    engine: Sequence[dict[str, Any]],
    bounds: Sequence[float],
    script_x4: float,
) -> None:
    """images/s against transfers (log2 x): the engine's medians with min-max bars, the bound,
    the script x4 as a horizontal line.  matplotlib is imported here only (the bench extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    medians = [m["median"] for m in engine]
    low = [m["median"] - m["min"] for m in engine]
    high = [m["max"] - m["median"] for m in engine]
    ax.errorbar(
        transfers,
        medians,
        yerr=[low, high],
        marker="o",
        capsize=4,
        label="image-transfer run (median, min-max)",
    )
    ax.plot(
        transfers,
        bounds,
        linestyle="--",
        marker=".",
        color="grey",
        label="bound: transfers / (3 x latency + t_bytes)",
    )
    ax.axhline(script_x4, color="tab:red", linestyle=":", label="lean curl script, xargs -P 4")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(transfers), [str(t) for t in transfers])
    ax.set_yscale("log")
    ax.set_xlabel("transfers")
    ax.set_ylabel("images/s")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def chart(mode: str, title: str, params: Params, metrics: dict[str, Any]) -> tuple[str | None, str]:
    """Draw the chart in a full run; (its path or None, a note)."""
    if mode == "quick":
        return None, "chart: not drawn in a quick run"
    transfers = list(params.transfers)
    try:
        draw_chart(
            CHART,
            title,
            transfers,
            [metrics[f"engine_transfers_{t}"] for t in transfers],
            [metrics[f"bound_transfers_{t}"]["median"] for t in transfers],
            metrics["script_x4"]["median"],
        )
    except ImportError as exc:
        return None, f"chart: not drawn, matplotlib is missing ({exc}; pip install -e '.[bench]')"
    shown = str(CHART.relative_to(REPO))
    return shown, f"chart: {shown}"


def summarize_runs(
    params: Params, engine_s: dict[int, list[float]], script_s: list[float], t_bytes: list[float]
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The metrics and table rows of the measured seconds."""
    count = params.count
    metrics: dict[str, dict[str, Any]] = {
        "script_x4": metric([count / s for s in script_s], "images/s"),
        "bytes_seconds": metric(t_bytes, "s", image_bytes=params.size),
    }
    label = f"9 scaling {size_label(count, params.size)} {LATENCY * 1000:g} ms"
    rows = []
    for t in params.transfers:
        engine = metric([count / s for s in engine_s[t]], "images/s")
        bounds = metric([bound(t, LATENCY, b) for b in t_bytes], "images/s")
        metrics[f"engine_transfers_{t}"] = engine
        metrics[f"bound_transfers_{t}"] = bounds
        rows.append(
            row(
                f"{label} transfers={t}",
                f"{engine['median']:.1f} img/s ({engine['min']:.1f}-{engine['max']:.1f})",
                f"{bounds['median']:.1f} img/s bound",
                f"{engine['median'] / bounds['median']:.2f}x",
                "-",
                None,
            )
        )
    x4 = metrics["script_x4"]["median"]
    if 4 in params.transfers:
        at4 = metrics["engine_transfers_4"]["median"]
        rows.append(
            row(
                f"{label} transfers=4 vs script x4",
                f"{at4:.1f} img/s",
                f"{x4:.1f} img/s script x4",
                f"{at4 / x4:.2f}x",
                "-",
                None,
            )
        )
    return metrics, rows


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
            fill_base=4999,
        )
        with EmulatorProcess(state, extra_args=["--latency", str(LATENCY)]) as cloud:
            engine_s, script_s, t_bytes = measure_all(cloud, work, params, repeats)
    count = params.count
    metrics, rows = summarize_runs(params, engine_s, script_s, t_bytes)
    title = f"{size_label(count, params.size)} KR1 -> KR2, {LATENCY * 1000:g} ms per request"
    path, chart_note = chart(mode, f"images/s against transfers: {title}", params, metrics)
    return result(
        scenario=SCENARIO,
        title=title,
        mode=mode,
        started=started,
        params={
            "count": count,
            "size_bytes": params.size,
            "repeats": repeats,
            "latency_seconds": LATENCY,
            "transfers": list(params.transfers),
            "probe_size_bytes": params.probe_size,
            "chart": path,
        },
        metrics=metrics,
        rows=rows,
        notes=[
            "images/s: images over the wall time of `image-transfer run` (start-up included), "
            "a fresh job per run; median and (min-max) of the repeats",
            "bound: transfers / (3 x latency + t_bytes); t_bytes from one `curl | curl` pipe of "
            f"a {params.probe_size // MiB} MiB image per repeat, less one latency, scaled to "
            f"{params.size // MiB} MiB (median {metrics['bytes_seconds']['median'] * 1000:.2f} ms)",
            "script x4: benchmarks/lean_script.py, `xargs -P 4`, one bash per image",
            chart_note,
        ],
    )
