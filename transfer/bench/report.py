"""A bench's report: the lines it prints (the table, the latencies, the knee, the limit, what
was left) and its JSON document (``--json``)."""

from __future__ import annotations

from typing import Any

from transfer.bench import figures
from transfer.bench.ledger import Swept
from transfer.bench.runner import BenchReport, BenchSettings
from transfer.cli.output import SCHEMA_VERSION
from transfer.streams import human_bytes


def left_lines(swept: Swept) -> list[str]:
    """What a deletion could not delete, one line each."""
    lines = [
        f"  left {image_id} in {swept.key}: it is protected (a bench never protects an image)"
        for image_id in swept.protected
    ]
    lines += [f"  left {image_id} in {swept.key}: {why}" for image_id, why in swept.failed]
    return lines


def report_lines(report: BenchReport, settings: BenchSettings) -> list[str]:
    lines = [
        f"bench {report.run_id}: {report.source} -> {report.target}, {len(report.pool)} images "
        f"({human_bytes(report.pool_bytes)}), transfers {','.join(map(str, settings.transfers))}"
    ]
    if report.measurements:
        lines += ["", *figures.table(report.measurements)]
    if report.latencies:
        lines += ["", *figures.latency_table(report.latencies)]
    knee, why = report.knee
    verdict = report.verdict
    lines += [
        "",
        f"knee: {knee if knee is not None else '-'} transfers ({why})",
        f"limit: {verdict.side} ({verdict.reason})",
    ]
    for swept in report.cleanup:
        lines += left_lines(swept)
    if report.overran:
        lines.append(
            f"bench: the measurements took {report.seconds:.0f} s, more than --max-duration "
            f"{settings.max_duration:g} s: each moves at least one image per transfer (smaller "
            "--sizes or fewer --transfers fit in it)"
        )
    if report.interrupted:
        lines.append("bench: interrupted; the figures above are those measured before the signal")
    return lines


def report_json(report: BenchReport, settings: BenchSettings) -> dict[str, Any]:
    knee, why = report.knee
    verdict = report.verdict
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": report.run_id,
        "source": report.source,
        "target": report.target,
        "started_at": report.started_at.isoformat(),
        "images": [{"id": i.id, "name": i.name, "size": i.size} for i in report.pool],
        "synthetic": settings.images is None,
        "transfers": list(settings.transfers),
        "max_duration": settings.max_duration,
        "bwlimit": settings.bwlimit,
        "measurements": [figures.measurement_json(m) for m in report.measurements],
        "latency": [figures.latency_json(lat) for lat in report.latencies],
        "knee": {"transfers": knee, "reason": why},
        "limit": {"side": verdict.side, "reason": verdict.reason},
        "seconds": round(report.seconds, 3),
        "interrupted": report.interrupted,
        "left_behind": [{"cloud": key, "id": image_id} for key, image_id in report.left_behind],
    }
