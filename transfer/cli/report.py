"""What the job commands tell their user: the plan, the live stats line, the closing tables of
a run and its JSON report, the differences ``verify`` finds, and ``status`` (the JSON of plan,
verify and status is ``transfer.cli.job_output``'s)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transfer.engine.results import REPORTED_OUTCOMES, Difference, Outcome, RunSummary
from transfer.journal.records import EntryState, JournalEntry, RunRecord, stamp
from transfer.planner import Code, PlanItem, plan_counts
from transfer.streams import human_bytes

if TYPE_CHECKING:
    from transfer.engine.prune import PruneResult


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
        if r.outcome is Outcome.IN_SYNC and not r.warnings:
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
    totals = ", ".join(
        f"{summary.count(o)} {o}"
        for o in REPORTED_OUTCOMES
        if o is not Outcome.HANDED_OVER or summary.count(o)  # only workers of a shared journal
    )
    if summary.failed_elsewhere:
        totals += f" ({summary.failed_elsewhere} more failed at other workers)"
    retried = f", {summary.image_retries} retried attempts" if summary.image_retries else ""
    stopped = ""
    if summary.interrupted:
        why = "DEADLINE REACHED" if summary.deadline else "INTERRUPTED"
        stopped = f"; {why}, run again to resume"
    parts.append(
        f"job {summary.job}: {totals}; {human_bytes(summary.bytes)} moved in "
        f"{summary.seconds:.1f}s ({human_rate(summary.bytes / seconds)}){retried}{stopped}"
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


#: The version of the JSON report's schema (``docs/report.md``); it changes when a field
#: changes meaning or goes away, not when one is added.
REPORT_SCHEMA_VERSION = 1


def summary_json(summary: RunSummary) -> dict[str, Any]:
    """One job's run as the report gives it (``docs/report.md``)."""
    reasons = {(i.source.id, i.target_key): list(i.reasons) for i in summary.plan if i.source}
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "job": summary.job,
        "run_id": summary.run_id,
        "outcome": summary.outcome,
        "started_at": stamp(summary.started_at),
        "ended_at": stamp(summary.ended_at),
        "seconds": round(summary.seconds, 3),
        "image_bytes": summary.image_bytes,
        "bytes_moved": summary.bytes,
        "bytes": summary.bytes,  # bytes_moved's older name
        "attempts": summary.attempts,
        "image_retries": summary.image_retries,
        "not_started": summary.not_started,
        "journal_commits": summary.journal_commits,
        "counts": {o: summary.count(o) for o in REPORTED_OUTCOMES},
        "items": [
            {
                "code": r.code.value,
                "outcome": r.outcome,
                "source_id": r.source_id,
                "source_name": r.source_name,
                "target": r.target_key,
                "target_id": r.target_id,
                "reasons": reasons.get((r.source_id, r.target_key), []),
                "image_bytes": r.image_bytes,
                "bytes_moved": r.bytes,
                "bytes": r.bytes,
                "seconds": round(r.seconds, 3),
                "attempts": r.attempts,
                "waited": round(r.waited, 3),
                "md5": r.md5,
                "sha512": r.sha512,
                "warnings": r.warnings,
                "error": r.error,
                "failed_step": r.failed_step if r.error else None,
                "retryable": r.retryable if r.error else None,
            }
            for r in summary.results
        ],
        "target_only": [
            {
                "target": i.target_key,
                "target_id": i.target.id if i.target else i.target_id,
                "target_name": i.target.name if i.target else None,
                "source_id": i.source.id if i.source else None,
                "reasons": list(i.reasons),
            }
            for i in summary.plan
            if i.code is Code.EXTRA
        ],
    }


def run_report(
    summary: RunSummary, *, deadline: bool, pruned: PruneResult | None, error: str | None
) -> dict[str, Any]:
    """One job's part of ``run --report`` (its schema is ``docs/report.md``)."""
    data = summary_json(summary)
    data["deadline_reached"] = deadline
    if pruned is not None:
        data["pruned"] = [
            {"target": key, "target_id": image_id, "name": name}
            for key, image_id, name in pruned.deleted
        ]
        data["prune_kept"] = [
            {"target": key, "target_id": image_id, "name": name, "reason": reason}
            for key, image_id, name, reason in pruned.kept
        ]
    if error:
        data["error"] = error
    return data


def several_jobs_report(jobs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The report of a run of several jobs: their reports (``run_report``), in the order they
    ran, under the times of the whole (ISO 8601 stamps of one format sort as times do)."""
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "started_at": min(job["started_at"] for job in jobs),
        "ended_at": max(job["ended_at"] for job in jobs),
        "jobs": list(jobs),
    }


@dataclass(frozen=True)
class JobStatus:
    """What ``status`` shows of one job, as read from the journal."""

    job: str
    states: Mapping[str, int]
    entries: Sequence[JournalEntry]
    runs: Sequence[RunRecord]


def format_status(statuses: Sequence[JobStatus], *, images: bool) -> str:
    if not statuses:
        return "the journal holds no job yet"
    lines: list[str] = []
    for s in statuses:
        states = ", ".join(f"{n} {state}" for state, n in sorted(s.states.items())) or "no items"
        total = sum(e.bytes_done for e in s.entries)
        lines.append(f"job {s.job}: {states}; {human_bytes(total)} moved")
        holders = Counter(e.lease_owner for e in s.entries if e.lease_owner)
        lines += [f"  worker {h} holds {n} images" for h, n in sorted(holders.items())]
        lines += [
            f"  run {r.id} by {r.worker}: {r.started_at} -> "
            f"{r.finished_at or 'running or killed'} {r.outcome or ''}".rstrip()
            for r in s.runs
        ]
        if images:
            lines += [_status_line(e) for e in sorted(s.entries, key=_by_name)]
    return "\n".join(lines)


def _by_name(entry: JournalEntry) -> tuple[str, str]:
    return (entry.source_name or "", entry.target_key)


def step_shown(e: JournalEntry) -> str | None:
    """A failed entry's failing step; else the last step it completed."""
    return e.failed_step if e.state == EntryState.FAILED else e.last_step


def _status_line(e: JournalEntry) -> str:
    err = f"  ({e.last_error})" if e.last_error and e.state != EntryState.DONE else ""
    held = f"  [held by {e.lease_owner}]" if e.lease_owner else ""
    return (
        f"  {e.state:8} {e.source_name or e.source_id} -> {e.target_key} "
        f"{e.target_id or '-'} step={step_shown(e) or '-'}{err}{held}"
    )
