"""``python -m benchmarks [--quick] [--only NAME ...]``: run the scenarios, write one JSON result
per scenario under ``benchmarks/results/<mode>/`` and print one table.

``--quick`` is the small version the test suite runs (about a minute); the full run takes
about 40 minutes on two cores.  ``--table`` prints the table of the last results without
running anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import (
    fanout,
    large_image,
    latency,
    memory,
    planning,
    scaling,
    small_images,
    startup,
    tiny,
    workers,
)
from benchmarks.harness import RESULTS_DIR, BenchError, machine, write_result
from transfer.cli.logs import configure_logging
from transfer.config.settings import LogFormat, LogLevel

SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    large_image.SCENARIO: large_image.run,
    small_images.SCENARIO: small_images.run,
    memory.SCENARIO: memory.run,
    planning.SCENARIO: planning.run,
    fanout.SCENARIO: fanout.run,
    workers.SCENARIO: workers.run,
    startup.SCENARIO: startup.run,
    latency.SCENARIO: latency.run,
    scaling.SCENARIO: scaling.run,
    tiny.SCENARIO: tiny.run,
}
COLUMNS = ("scenario", "engine", "baseline", "ratio", "goal", "met?")


def table(results: Sequence[Mapping[str, Any]]) -> str:
    """One plain-text table of every result's rows."""
    lines: list[list[str]] = [list(COLUMNS)]
    for res in results:
        for r in res["rows"]:
            met = {True: "yes", False: "NO", None: "-"}[r["met"]]
            lines.append([r["scenario"], r["engine"], r["baseline"], r["ratio"], r["goal"], met])
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine_line(info: Mapping[str, Any]) -> str:
    return (
        f"{info['cores']} cores, {info['cpu_model']}, {info.get('memory_gib')} GiB, "
        f"Python {info['python']}, aiohttp {info.get('packages', {}).get('aiohttp', '?')}"
    )


def load_results(results_dir: Path, mode: str, names: Sequence[str]) -> list[dict[str, Any]]:
    found = []
    for name in names:
        path = results_dir / mode / f"{name}.json"
        if path.exists():
            found.append(json.loads(path.read_text()))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--repeat", type=int, metavar="N", help="repeats per measurement")
    parser.add_argument(
        "--baseline",
        choices=("auto", "glance", "curl"),
        help="small images baseline (default: auto in a full run, curl in a quick one)",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, metavar="DIR", help="where results go"
    )
    parser.add_argument(
        "--table", action="store_true", help="print the table of the last results and exit"
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    mode = "quick" if args.quick else "full"
    names = args.only or list(SCENARIOS)
    configure_logging(LogLevel.WARNING, LogFormat.CONSOLE)

    if args.table:
        results = load_results(args.results, mode, names)
        if not results:
            print(f"no {mode} results in {args.results}", file=sys.stderr)
            return 1
        print(f"{mode} results, {machine_line(results[0]['machine'])}")
        print(table(results))
        return 0

    print(f"benchmarks ({mode}) on {machine_line(machine())}", file=sys.stderr)
    results = []
    for name in names:
        started = time.monotonic()
        print(f"[{name}] running...", file=sys.stderr, flush=True)
        kwargs: dict[str, Any] = {}
        if name == small_images.SCENARIO:
            kwargs["baseline"] = args.baseline or ("curl" if args.quick else "auto")
        try:
            res = SCENARIOS[name](mode, args.repeat, **kwargs)
        except BenchError as exc:
            print(f"[{name}] failed: {exc}", file=sys.stderr)
            return 1
        path = write_result(args.results, res)
        print(
            f"[{name}] done in {time.monotonic() - started:.0f}s -> {path}",
            file=sys.stderr,
            flush=True,
        )
        results.append(res)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
