"""What a run tells its user: a live stats line, the closing tables, and a JSON report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transfer.engine.prune import PruneResult
from transfer.engine.results import Difference, Progress, RunSummary
from transfer.planner import Code, PlanItem, plan_counts
from transfer.streams import human_bytes

OUTCOMES = ("copied", "repaired", "updated", "in-sync", "failed")


def human_rate(bytes_per_second: float) -> str:
    return f"{human_bytes(bytes_per_second)}/s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def format_plan_summary(items: Sequence[PlanItem]) -> str:
    counts = plan_counts(items)
    names = {
        Code.COPY: "to copy",
        Code.REPAIR: "to repair",
        Code.UPDATE: "metadata differs",
        Code.IN_SYNC: "in sync",
        Code.EXTRA: "on target only",
    }
    return ", ".join(f"{counts[code]} {names[code]} ({code.value})" for code in Code)


def format_summary(summary: RunSummary) -> str:
    """The closing table: one row per item that did something or failed, then the totals."""
    rows = []
    for r in sorted(summary.results, key=lambda r: (r.source_name, r.source_id, r.target_key)):
        if r.outcome == "in-sync" and not r.warnings:
            continue
        note = r.error or "; ".join(r.warnings)
        rows.append(
            [
                r.code.value,
                r.outcome,
                r.source_name,
                r.target_key,
                human_bytes(r.bytes),
                f"{r.seconds:.1f}s",
                note[:120],
            ]
        )
    parts = []
    if rows:
        parts.append(_table(["", "outcome", "image", "target", "bytes", "time", "note"], rows))
    errors = [
        f"  {r.source_name} ({r.source_id}) -> {r.target_key}: {r.error}"
        for r in sorted(summary.failed, key=lambda r: (r.source_name, r.source_id, r.target_key))
        if r.error and len(r.error) > 120
    ]
    if errors:  # the table cuts long notes; a failure's reason is worth reading whole
        parts.append("errors:\n" + "\n".join(errors))
    seconds = max(summary.seconds, 1e-9)
    totals = ", ".join(f"{summary.count(o)} {o}" for o in OUTCOMES)
    parts.append(
        f"job {summary.job}: {totals}; {human_bytes(summary.bytes)} in {summary.seconds:.1f}s "
        f"({human_rate(summary.bytes / seconds)})"
        + ("; INTERRUPTED, run again to resume" if summary.interrupted else "")
    )
    return "\n\n".join(parts)


def format_differences(differences: Sequence[Difference]) -> str:
    rows = [[d.source_name, d.source_id, d.target_key, "; ".join(d.reasons)] for d in differences]
    return _table(["image", "source id", "target", "difference"], rows)


def format_prune(result: PruneResult) -> str:
    lines = [f"pruned {len(result.deleted)} target images"]
    lines += [f"  - {key} {name} ({image_id})" for key, image_id, name in result.deleted]
    lines += [
        f"  kept {key} {name} ({image_id}): {reason}" for key, image_id, name, reason in result.kept
    ]
    lines += [
        f"  failed {key} {name} ({image_id}): {error}"
        for key, image_id, name, error in result.failed
    ]
    return "\n".join(lines)


def summary_json(summary: RunSummary) -> dict[str, Any]:
    return {
        "job": summary.job,
        "run_id": summary.run_id,
        "outcome": summary.outcome,
        "seconds": round(summary.seconds, 3),
        "bytes": summary.bytes,
        "not_started": summary.not_started,
        "counts": {o: summary.count(o) for o in OUTCOMES},
        "items": [
            {
                "code": r.code.value,
                "outcome": r.outcome,
                "source_id": r.source_id,
                "source_name": r.source_name,
                "target": r.target_key,
                "target_id": r.target_id,
                "bytes": r.bytes,
                "seconds": round(r.seconds, 3),
                "attempts": r.attempts,
                "md5": r.md5,
                "sha512": r.sha512,
                "warnings": r.warnings,
                "error": r.error,
                "retryable": r.retryable if r.error else None,
            }
            for r in summary.results
        ],
    }


def progress_line(progress: Progress) -> str:
    done = human_bytes(progress.bytes_done)
    total = human_bytes(progress.bytes_total)
    rate = progress.rate
    eta = ""
    remaining = progress.bytes_total - progress.bytes_done
    if rate > 0 and remaining > 0:
        eta = f", ETA {remaining / rate:.0f}s"
    active = ", ".join(a.name for a in list(progress.active.values())[:3])
    return (
        f"images {progress.images_done}/{progress.images_total}"
        f" ({progress.images_failed} failed), {done}/{total} at {human_rate(rate)}{eta}"
        + (f" [{active}]" if active else "")
    )
