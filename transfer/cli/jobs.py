"""The ``run`` command: run jobs, or resume them where they stopped (parse, call, exit code).

``plan`` and ``verify`` (``transfer.cli.plan``) need the planner but not the runner; ``status``
(``transfer.cli.status``) reads only the journal: each command imports what it uses."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from transfer.bandwidth import parse_bwlimit
from transfer.cli.display import show_progress
from transfer.cli.main import ExitCode
from transfer.cli.metrics import write_metrics
from transfer.cli.options import Command, common_arguments, load_jobs
from transfer.cli.report import (
    format_plan_summary,
    format_prune,
    format_summary,
    run_report,
)
from transfer.cloud.sessions import Clouds, open_clouds
from transfer.config.loader import parse_duration
from transfer.config.settings import Config, HttpSettings, JobConfig, LeaseSettings
from transfer.engine.planning import plan_for_run
from transfer.engine.prune import PruneResult, prune
from transfer.engine.results import Progress
from transfer.engine.runner import JobRun, run_job
from transfer.engine.schedule import default_worker_id
from transfer.errors import ConfigError, TooManyDeletions
from transfer.journal import Journal, open_journal
from transfer.journal.lock import job_lock

# -- run -----------------------------------------------------------------------------------


def _configure_run(parser: argparse.ArgumentParser) -> None:
    common_arguments(parser)
    parser.add_argument(
        "--restart", action="store_true", help="forget the journal of the job and plan afresh"
    )
    parser.add_argument(
        "--report", type=Path, metavar="FILE", help="write a JSON report (schema in the README)"
    )
    parser.add_argument(
        "--metrics-file",
        type=Path,
        metavar="FILE",
        help="write Prometheus metrics (for node_exporter's textfile collector)",
    )
    parser.add_argument(
        "--worker-id",
        metavar="ID",
        help="this worker's name in the journal (default: HOST:PID)",
    )
    parser.add_argument(
        "--lease-seconds",
        metavar="S",
        help="with a PostgreSQL journal: how long a claimed image stays this worker's without "
        "renewal, so a dead worker's images are taken over after it (default: the journal's "
        "lease_seconds, 30)",
    )
    parser.add_argument(
        "--max-takeovers",
        metavar="N",
        help="with a PostgreSQL journal: fail an image whose lease ran out more than N times "
        "(default: the journal's max_takeovers, 3)",
    )
    parser.add_argument(
        "--bwlimit",
        metavar="RATE",
        help='bytes/s for all transfers together ("10M", "off") or a timetable '
        '("01:00,500M 07:00,50M 19:00,off"); overrides the job\'s bwlimit',
    )
    parser.add_argument(
        "--max-duration",
        metavar="DURATION",
        help='start no new image after this long ("6h", "90m", seconds); overrides the job\'s',
    )
    parser.add_argument(
        "--prune", action="store_true", help="delete targets whose source is gone or superseded"
    )
    parser.add_argument(
        "--max-delete", type=int, metavar="N", help="refuse to prune more than N images"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress display while running"
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="remove the job's spool files at the end, even those kept to resume failed images",
    )


def _job_overrides(job: JobConfig, args: argparse.Namespace) -> JobConfig:
    changes: dict[str, object] = {}
    if args.bwlimit is not None:
        try:
            timetable = parse_bwlimit(args.bwlimit)
        except ValueError as exc:
            raise ConfigError(f"--bwlimit: {exc}") from None
        changes["bwlimit"] = None if timetable.unlimited else timetable
    if args.max_duration is not None:
        seconds = parse_duration(args.max_duration)
        if not seconds:
            raise ConfigError(
                f'--max-duration: expected a duration like "6h" or "90m", got {args.max_duration!r}'
            )
        changes["max_duration"] = seconds
    if args.prune:
        changes["prune"] = True
    if args.max_delete is not None:
        if args.max_delete < 0:
            raise ConfigError(f"--max-delete: expected 0 or more, got {args.max_delete}")
        changes["max_delete"] = args.max_delete
    return dataclasses.replace(job, **changes) if changes else job  # type: ignore[arg-type]


@dataclass
class _Outcome:
    """One job of a ``run``: how it ran, and what its prune did."""

    run: JobRun | None = None
    pruned: PruneResult | None = None
    error: str | None = None  # the prune was refused


def _lease_terms(config: Config, args: argparse.Namespace) -> LeaseSettings:
    """The journal's lease settings with the command line's on top, checked together."""
    terms = config.journal.lease
    names = {key: f"journal.{key}" for key in ("lease_seconds", "renew_seconds", "call_seconds")}
    names["max_takeovers"] = "journal.max_takeovers"
    changes: dict[str, Any] = {}
    if args.lease_seconds is not None:
        try:
            changes["lease_seconds"] = float(args.lease_seconds)
        except ValueError:
            expected = "expected a positive number of seconds"
            raise ConfigError(f"--lease-seconds: {expected}, got {args.lease_seconds!r}") from None
        names["lease_seconds"] = "--lease-seconds"
    if args.max_takeovers is not None:
        try:
            changes["max_takeovers"] = int(args.max_takeovers)
        except ValueError:
            raise ConfigError(
                f"--max-takeovers: expected an integer of at least 0, got {args.max_takeovers!r}"
            ) from None
        names["max_takeovers"] = "--max-takeovers"
    terms = dataclasses.replace(terms, **changes)
    problems = [f"{key}: {message}" for key, message in terms.problems(names)]
    if problems:
        raise ConfigError("; ".join(problems), problems=problems)
    return terms


def _run_run(args: argparse.Namespace) -> int:
    config, jobs = load_jobs(args)
    jobs = [_job_overrides(job, args) for job in jobs]
    terms = _lease_terms(config, args)
    config = dataclasses.replace(config, journal=dataclasses.replace(config.journal, lease=terms))
    outcomes: list[_Outcome] = []

    async def main() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, stop, tg.cancel_scope)
            try:
                async with open_journal(config.journal) as journal:
                    for job in jobs:
                        if stop.is_set():
                            break
                        settings = HttpSettings(requests_per_second=job.request_rate)
                        # A shared journal coordinates its workers itself (leases); a local one
                        # allows one run per job, which the lock file enforces.
                        lock = (
                            contextlib.nullcontext()
                            if journal.work_queue is not None
                            else job_lock(config.journal.path, job.name)
                        )
                        with lock:
                            async with open_clouds(config, settings) as clouds:
                                outcomes.append(
                                    await _run_one(config, job, journal, clouds, args, stop, terms)
                                )
            finally:
                tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    finally:
        runs = [(o, o.run) for o in outcomes if o.run is not None]
        if args.report and runs:
            report = [
                run_report(r.summary, deadline=r.deadline, pruned=o.pruned, error=o.error)
                for o, r in runs
            ]
            _write_atomic(
                args.report, json.dumps(report[0] if len(report) == 1 else report, indent=2) + "\n"
            )
        if args.metrics_file and runs:
            write_metrics(args.metrics_file, [r.summary for _, r in runs])
    return _exit_code(outcomes, len(jobs))


def _exit_code(outcomes: list[_Outcome], jobs: int) -> int:
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
) -> _Outcome:
    outcome = _Outcome()
    if args.restart:
        await journal.reset_job(job.name)
    worker = args.worker_id or default_worker_id()
    plan, ticket = await plan_for_run(config, job, clouds, journal, worker, terms=terms)
    print(f"job {job.name}: {format_plan_summary(plan.items)}", file=sys.stderr)
    progress = Progress()

    def deadline() -> None:
        print(
            f"\nimage-transfer: job {job.name}: max duration reached: finishing the images in "
            "flight, starting no new one",
            file=sys.stderr,
        )

    async with anyio.create_task_group() as tg:
        if not args.no_progress:
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
    if sys.stderr.isatty() and not args.no_progress:
        print(file=sys.stderr)
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


async def _watch_signals(stop: anyio.Event, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if not stop.is_set():
                print(
                    f"\nimage-transfer: {signal.Signals(signum).name}: finishing the images in "
                    "flight, starting no new one (again to stop at once)",
                    file=sys.stderr,
                )
                stop.set()
            else:
                scope.cancel()
                return


run = Command(_configure_run, _run_run)
