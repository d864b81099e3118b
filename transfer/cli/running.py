"""The engine side of ``run``: plan and run each job on the journal, prune, write the report and
the metrics, and the exit code of it all.

``transfer.cli.jobs`` parses the command line, reads the config and sends the first job's token
requests before it imports this module (with the engine, the journal and the display): those
imports and the journal's opening happen while the token requests are in flight."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import anyio

from transfer.cli.display import show_progress
from transfer.cli.main import ExitCode
from transfer.cli.metrics import write_metrics
from transfer.cli.report import (
    format_plan_summary,
    format_prune,
    format_summary,
    run_report,
    several_jobs_report,
)
from transfer.cloud.sessions import Clouds
from transfer.config.settings import Config, JobConfig, LeaseSettings
from transfer.engine.planning import JobPlan, plan_for_run
from transfer.engine.prune import PruneResult, prune
from transfer.engine.results import Progress
from transfer.engine.runner import JobRun, run_job
from transfer.engine.schedule import default_worker_id
from transfer.errors import TooManyDeletions
from transfer.journal import Journal, open_journal
from transfer.journal.lock import job_lock


@dataclass
class Outcome:
    """One job of a ``run``: how it ran, and what its prune did."""

    run: JobRun | None = None
    pruned: PruneResult | None = None
    error: str | None = None  # the prune was refused


async def run_jobs(
    config: Config,
    jobs: Sequence[JobConfig],
    clouds_for: Callable[[int, JobConfig], AbstractAsyncContextManager[Clouds]],
    args: argparse.Namespace,
    stop: anyio.Event,
    terms: LeaseSettings,
    outcomes: list[Outcome],
) -> None:
    """Run ``jobs`` one after another on the config's journal, the n-th with the clouds
    ``clouds_for(n, job)`` opens, appending each job's outcome to ``outcomes``."""
    async with open_journal(config.journal) as journal:
        for n, job in enumerate(jobs):
            if stop.is_set():
                break
            # A shared journal coordinates its workers itself (leases); a local one allows
            # one run per job, which the lock file enforces.
            lock = (
                contextlib.nullcontext()
                if journal.work_queue is not None
                else job_lock(config.journal.path, job.name)
            )
            with lock:
                async with clouds_for(n, job) as clouds:
                    outcomes.append(await _run_one(config, job, journal, clouds, args, stop, terms))


def write_outputs(args: argparse.Namespace, outcomes: Sequence[Outcome]) -> None:
    """The ``--report`` and ``--metrics-file`` of the jobs that ran."""
    runs = [(o, o.run) for o in outcomes if o.run is not None]
    if args.report and runs:
        report = [
            run_report(r.summary, deadline=r.deadline, pruned=o.pruned, error=o.error)
            for o, r in runs
        ]
        data = report[0] if len(report) == 1 else several_jobs_report(report)
        _write_atomic(args.report, json.dumps(data, indent=2) + "\n")
    if args.metrics_file and runs:
        write_metrics(args.metrics_file, [r.summary for _, r in runs])


def exit_code(outcomes: Sequence[Outcome], jobs: int) -> int:
    runs = [o.run for o in outcomes if o.run is not None]
    if any(r.deadline for r in runs):
        return ExitCode.DEADLINE
    if any(r.summary.interrupted for r in runs) or len(outcomes) < jobs:
        return ExitCode.INTERRUPTED
    failed = [item for r in runs for item in r.summary.failed]
    refused = any(o.error for o in outcomes)
    if any(r.summary.failed_elsewhere for r in runs):
        return ExitCode.PARTIAL  # the job as a whole has failed images, in other workers' hands
    if failed or refused:
        if failed and all(item.retryable for item in failed) and not refused:
            return ExitCode.RETRYABLE
        return ExitCode.PARTIAL
    return ExitCode.OK


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


async def _run_one(
    config: Config,
    job: JobConfig,
    journal: Journal,
    clouds: Clouds,
    args: argparse.Namespace,
    stop: anyio.Event,
    terms: LeaseSettings,
) -> Outcome:
    outcome = Outcome()
    if args.restart:
        await journal.reset_job(job.name)
    worker = args.worker_id or default_worker_id()
    plan, ticket = await plan_for_run(config, job, clouds, journal, worker, terms=terms)

    def planned(plan: JobPlan) -> None:
        print(f"job {job.name}: {format_plan_summary(plan.items)}", file=sys.stderr)

    if plan.pending is not None:  # the source is still being listed: said once it is
        plan.pending.on_complete = planned
    else:
        planned(plan)
    progress = Progress()

    def deadline() -> None:
        print(
            f"\nimage-transfer: job {job.name}: max duration reached: finishing the images in "
            "flight, starting no new one",
            file=sys.stderr,
        )

    async with anyio.create_task_group() as tg:
        if not (args.no_progress or args.quiet):
            tg.start_soon(show_progress, progress)
        ran = outcome.run = await run_job(
            plan,
            journal=journal,
            stop=stop,
            worker=worker,
            progress=progress,
            clean_spool=args.clean,
            ticket=ticket,
            terms=terms,
            on_deadline=deadline,
        )
        tg.cancel_scope.cancel()
    summary = ran.summary
    # The display has stopped: its region is replaced by its final header, so the table
    # below starts on a line of its own.
    print(format_summary(summary))
    if ran.deadline:
        print(
            f"job {job.name}: deadline reached; {summary.not_started} images left for the next run"
        )
    if job.prune and not summary.interrupted:
        try:
            outcome.pruned = await prune(
                plan.items, plan.targets, job=job.name, max_delete=job.max_delete
            )
        except TooManyDeletions as exc:
            outcome.error = str(exc)
            print(f"image-transfer: error: {exc}", file=sys.stderr)
        else:
            print(format_prune(outcome.pruned))
    return outcome
