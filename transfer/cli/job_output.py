"""What ``plan``, ``verify`` and ``status`` print for scripts: their rows (``-f value|csv``,
``--column``) and JSON documents (``docs/json-output.md``), in the run report's vocabulary:
``source_id``, ``source_name``, ``target`` (a target's key, ``cloud/REGION``), ``target_id``,
and the outcomes spelled as the report spells them (``copied``, ``in-sync``, ``handed-over``).

The human text of the three commands stays in ``transfer.cli.report``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from transfer.cli.job_columns import (
    PLAN_COLUMNS,
    STATUS_COLUMNS,
    STATUS_ITEM_ALL,
    STATUS_ITEM_COLUMNS,
    VERIFY_COLUMNS,
)
from transfer.cli.output import check_columns, print_rows, select
from transfer.cli.report import (
    JobStatus,
    format_differences,
    format_plan_summary,
    format_status,
    step_shown,
)
from transfer.engine.results import REPORTED_OUTCOMES, Difference, Outcome
from transfer.journal.records import STATES, JournalEntry, RunRecord
from transfer.planner import Code, format_plan

if TYPE_CHECKING:
    from transfer.engine.planning import JobPlan

#: What each plan code means, as one word (``action`` in the plan's rows and counts).
ACTIONS = {
    Code.COPY: "copy",
    Code.REPAIR: "repair",
    Code.UPDATE: "update",
    Code.IN_SYNC: "in-sync",
    Code.EXTRA: "target-only",
}


def _items(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[Any]:
    """A job's items in its JSON document: without ``job`` (the job's object names it)."""
    if columns is None:
        return [{k: v for k, v in row.items() if k != "job"} for row in rows]
    return [select(row, columns) for row in rows]


# -- plan ------------------------------------------------------------------------------------


def plan_rows(plan: JobPlan) -> list[dict[str, Any]]:
    return [
        {
            "job": plan.job.name,
            "code": i.code.value,
            "action": ACTIONS[i.code],
            "target": i.target_key,
            "source_id": i.source.id if i.source else None,
            "source_name": i.source.name if i.source else None,
            "target_id": i.target.id if i.target else i.target_id,
            "target_name": i.target.name if i.target else None,
            "reasons": list(i.reasons),
        }
        for i in plan.items
    ]


def plan_json(plan: JobPlan, columns: Sequence[str] | None = None) -> dict[str, Any]:
    """One job's object in ``plan -f json``."""
    counts = dict.fromkeys(ACTIONS.values(), 0)
    for item in plan.items:
        counts[ACTIONS[item.code]] += 1
    return {
        "job": plan.job.name,
        "source": plan.job.source.key,
        "targets": [t.key for t in plan.job.targets],
        "counts": counts,
        "items": _items(plan_rows(plan), columns),
    }


def print_plans(args: argparse.Namespace, plans: Sequence[JobPlan]) -> None:
    def human() -> str:
        parts = []
        for plan in plans:
            targets = ", ".join(t.key for t in plan.job.targets)
            parts.append(f"job {plan.job.name}: {plan.job.source.key} -> {targets}")
            text = format_plan(plan.items)
            if text:
                parts.append(text)
            parts.append(format_plan_summary(plan.items))
        return "\n".join(parts)

    print_rows(
        args,
        [row for plan in plans for row in plan_rows(plan)],
        default=PLAN_COLUMNS,
        human=human,
        document=lambda columns: {"jobs": [plan_json(p, columns) for p in plans]},
    )


# -- verify ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verified:
    """One job's ``verify``: its plan and the differences found in it."""

    plan: JobPlan
    differences: Sequence[Difference]

    @property
    def pairs(self) -> int:
        return sum(1 for i in self.plan.items if i.source is not None)

    def rows(self) -> list[dict[str, Any]]:
        found = {(d.source_id, d.target_key): d for d in self.differences}
        rows = []
        for item in self.plan.items:
            if item.source is None:
                continue
            difference = found.get((item.source.id, item.target_key))
            rows.append(
                {
                    "job": self.plan.job.name,
                    "result": "verified" if difference is None else "differs",
                    "source_id": item.source.id,
                    "source_name": item.source.name,
                    "target": item.target_key,
                    "target_id": item.target.id if item.target else item.target_id,
                    "reasons": list(difference.reasons) if difference else [],
                }
            )
        return rows

    def json(self, columns: Sequence[str] | None) -> dict[str, Any]:
        return {
            "job": self.plan.job.name,
            "pairs": self.pairs,
            "verified": self.pairs - len(self.differences),
            "differ": len(self.differences),
            "items": _items(self.rows(), columns),
        }


def print_verified(args: argparse.Namespace, jobs: Sequence[Verified]) -> None:
    def human() -> str:
        lines = []
        for job in jobs:
            name, count = job.plan.job.name, len(job.differences)
            if count:
                lines.append(f"job {name}: {count} of {job.pairs} copies differ")
                lines.append(format_differences(job.differences))
            else:
                lines.append(f"job {name}: all {job.pairs} copies verified")
        return "\n".join(lines)

    print_rows(
        args,
        [row for job in jobs for row in job.rows()],
        default=VERIFY_COLUMNS,
        human=human,
        document=lambda columns: {"jobs": [job.json(columns) for job in jobs]},
    )


# -- status ----------------------------------------------------------------------------------


def _run_json(run: RunRecord) -> dict[str, Any]:
    """A run as the journal keeps it, its counts keyed by the report's outcome spellings (the
    journal stores ``in_sync``, ``handed_over``)."""
    found: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in run.summary.items():
        name = key.upper()
        if name in Outcome.__members__:
            found[Outcome[name].value] = value
        else:
            rest[key] = value
    counts: dict[str, Any] = {
        o.value: found.pop(o.value) for o in REPORTED_OUTCOMES if o.value in found
    }
    counts.update(found)
    return {
        "run_id": run.id,
        "worker": run.worker,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "outcome": run.outcome,
        "counts": counts,
        **rest,
    }


def _entry_row(job: str, e: JournalEntry) -> dict[str, Any]:
    return {
        "job": job,
        "state": e.state,
        "source_id": e.source_id,
        "source_name": e.source_name,
        "target": e.target_key,
        "target_id": e.target_id,
        "step": step_shown(e),
        "bytes_done": e.bytes_done,
        "attempts": e.attempts,
        "error": e.last_error,
        "lease_owner": e.lease_owner,
        "updated_at": e.updated_at,
        "generation": e.generation,
        "source_checksum": e.source_checksum,
        "source_size": e.source_size,
        "md5": e.md5,
        "sha512": e.sha512,
        "lease_expires": e.lease_expires,
        "last_step": e.last_step,
        "failed_step": e.failed_step,
        "retryable": e.retryable,
    }


def _job_row(s: JobStatus) -> dict[str, Any]:
    last = s.runs[0] if s.runs else None
    return {
        "job": s.job,
        **{state: s.states.get(state, 0) for state in STATES},
        "bytes_done": sum(e.bytes_done for e in s.entries),
        "last_run_id": last.id if last else None,
        "last_outcome": last.outcome if last else None,
        "last_started_at": last.started_at if last else None,
        "last_finished_at": last.finished_at if last else None,
    }


def _sorted_entries(s: JobStatus) -> list[JournalEntry]:
    return sorted(s.entries, key=lambda e: (e.source_name or "", e.target_key, e.source_id))


def status_json(
    statuses: Sequence[JobStatus], *, images: bool, columns: Sequence[str] | None = None
) -> dict[str, Any]:
    """``status -f json`` (without its ``schema_version``, which ``print_document`` adds)."""
    jobs = []
    for s in statuses:
        row = _job_row(s)
        holders: dict[str, int] = {}
        for e in s.entries:
            if e.lease_owner:
                holders[e.lease_owner] = holders.get(e.lease_owner, 0) + 1
        items = None
        if images:
            items = _items([_entry_row(s.job, e) for e in _sorted_entries(s)], columns)
        jobs.append(
            {
                "job": s.job,
                "states": {state: row[state] for state in STATES},
                "bytes_done": row["bytes_done"],
                "workers": dict(sorted(holders.items())),
                "runs": [_run_json(r) for r in s.runs],
                "items": items,
            }
        )
    return {"jobs": jobs}


def print_status(args: argparse.Namespace, statuses: Sequence[JobStatus]) -> None:
    images = bool(args.images)
    if images:
        check_columns(args, STATUS_ITEM_ALL, "status --images")
        rows = [_entry_row(s.job, e) for s in statuses for e in _sorted_entries(s)]
    else:
        check_columns(args, STATUS_COLUMNS, "status (without --images)")
        rows = [_job_row(s) for s in statuses]
    print_rows(
        args,
        rows,
        default=STATUS_ITEM_COLUMNS if images else STATUS_COLUMNS,
        human=lambda: format_status(statuses, images=images),
        document=lambda columns: status_json(statuses, images=images, columns=columns),
    )
