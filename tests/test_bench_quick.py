"""The benchmarks' quick mode runs end to end and leaves a well-formed result per scenario.

It runs ``python -m benchmarks --quick`` as a user would (a subprocess: the emulator, the
engine and the baselines are processes of their own) into a temporary results folder.  No
timing is asserted: numbers on a shared machine say nothing in a test; their shape does.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

# scenario -> the metrics its result must carry
EXPECTED_METRICS = {
    "large_image": ("engine", "engine_run_only", "baseline_curl_pipe", "ratio"),
    "small_images": (
        "baseline",
        "engine_transfers_1",
        "engine_transfers_4",
        "engine_transfers_8",
        "engine_transfers_16",
    ),
    "memory": ("engine_peak_rss_big", "engine_peak_rss_small", "ratio"),
    "planning": ("plan_new", "plan_in_sync", "status", "import_floor"),
    "fanout": (
        "one_region",
        "fan_out_two_regions",
        "source_bytes_one_region",
        "source_bytes_fan_out",
        "time_ratio",
    ),
    "startup": ("run", "images_list_token", "status", "floor_aiohttp", "floor_python"),
    "latency": (
        "engine",
        "script_x1",
        "script_x4",
        "bytes_seconds",
        "bound",
        "journal_commits_per_image",
        "engine_requests_target",
        "engine_requests_source",
        "script_requests_target",
        "script_requests_source",
    ),
    "scaling": (
        "engine_transfers_1",
        "engine_transfers_4",
        "bound_transfers_1",
        "bound_transfers_4",
        "script_x4",
        "bytes_seconds",
    ),
    "tiny": (
        "engine",
        "script_x8",
        "engine_cpu_per_image",
        "script_cpu_per_image",
        "journal_commits_per_image",
    ),
}
ROW_KEYS = {"scenario", "engine", "baseline", "ratio", "goal", "met"}


def positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    results = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--results", str(results)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return results / "quick", done.stdout


@pytest.mark.parametrize("scenario", sorted(EXPECTED_METRICS))
def test_each_scenario_writes_a_well_formed_result(
    quick_run: tuple[Path, str], scenario: str
) -> None:
    folder, _ = quick_run
    data = json.loads((folder / f"{scenario}.json").read_text())

    assert data["scenario"] == scenario
    assert data["mode"] == "quick"
    assert data["title"]
    machine = data["machine"]
    assert positive(machine["cores"])
    assert machine["cpu_model"] and machine["python"].count(".") == 2
    assert positive(data["scenario_seconds"])
    assert data["params"]["repeats"] >= 3

    for name in EXPECTED_METRICS[scenario]:
        measured = data["metrics"][name]
        assert measured["unit"], name
        runs = measured["runs"]
        assert len(runs) >= 3 and all(positive(r) for r in runs), (name, runs)
        assert measured["min"] <= measured["median"] <= measured["max"], name
        assert positive(measured["median"]), name
        assert measured["spread"] >= 0, name

    assert data["rows"]
    for r in data["rows"]:
        assert set(r) == ROW_KEYS
        assert r["scenario"] and r["engine"] and r["goal"]
        assert r["met"] in (True, False, None)


def test_scenarios_check_what_they_claim(quick_run: tuple[Path, str]) -> None:
    folder, _ = quick_run
    small = json.loads((folder / "small_images.json").read_text())
    assert small["params"]["baseline"] in ("curl", "glanceclient")
    assert small["params"]["transfers"] == [1, 4, 8, 16]
    memory = json.loads((folder / "memory.json").read_text())
    # Peak RSS is at least what the interpreter with aiohttp needs: a real measurement.
    assert memory["metrics"]["engine_peak_rss_small"]["min"] > 20
    planning = json.loads((folder / "planning.json").read_text())
    assert planning["params"]["pairs"] == 2 * planning["params"]["sources"]
    assert planning["params"]["journal_steps"] == 10_000
    startup = json.loads((folder / "startup.json").read_text())["metrics"]
    # The first request comes after the interpreter started, and before the command ended.
    assert startup["run"]["min"] > startup["floor_python"]["min"] / 2
    assert startup["run"]["median"] < startup["run_whole"]["median"]


def test_latency_scenarios_count_what_they_claim(quick_run: tuple[Path, str]) -> None:
    folder, _ = quick_run
    latency = json.loads((folder / "latency.json").read_text())
    assert latency["params"]["latency_seconds"] == 0.03
    metrics = latency["metrics"]
    # The lean script makes exactly four requests per image: metadata and download on the
    # source, create and upload on the target (the counters are real, not assumed).
    assert metrics["script_requests_source"]["routes"] == {"download": 1.0, "show": 1.0}
    assert metrics["script_requests_target"]["routes"] == {"create": 1.0, "upload": 1.0}
    # The engine downloads each image once and creates and uploads each copy at least once.
    engine_target = metrics["engine_requests_target"]["routes"]
    assert metrics["engine_requests_source"]["routes"]["download"] == 1.0
    assert engine_target["create"] >= 1.0 and engine_target["upload"] == 1.0
    # The bound follows from the measured bytes time: transfers / (3 x latency + t_bytes).
    t_bytes = metrics["bytes_seconds"]["runs"]
    expected = [4 / (3 * 0.03 + t) for t in t_bytes]
    assert metrics["bound"]["runs"] == pytest.approx(expected)
    glance = [r for r in latency["rows"] if r["scenario"].endswith("vs glanceclient")]
    assert len(glance) == 1
    assert ("glance" in metrics) == (glance[0]["met"] is not None)
    scaling = json.loads((folder / "scaling.json").read_text())
    assert scaling["params"]["transfers"] == [1, 4]
    assert scaling["params"]["chart"] is None  # a quick run draws nothing
    tiny = json.loads((folder / "tiny.json").read_text())
    # CPU per image is the engine process's own: no more than its wall time on every core.
    cores = tiny["machine"]["cores"]
    cpu_ms = tiny["metrics"]["engine_cpu_per_image"]["runs"]
    rates = tiny["metrics"]["engine"]["runs"]
    assert all(cpu < 1000 / rate * cores for cpu, rate in zip(cpu_ms, rates, strict=True))


def test_the_table_has_a_row_per_result_row(quick_run: tuple[Path, str]) -> None:
    folder, stdout = quick_run
    lines = stdout.strip().splitlines()
    assert lines[0].split() == ["scenario", "engine", "baseline", "ratio", "goal", "met?"]
    rows = [json.loads(p.read_text())["rows"] for p in sorted(folder.glob("*.json"))]
    names = [r["scenario"] for group in rows for r in group]
    assert len(lines) == 2 + len(names)
    for name in names:
        assert any(line.startswith(name) for line in lines[2:]), name
