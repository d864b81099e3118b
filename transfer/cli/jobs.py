"""The job commands: ``plan``, ``run``, ``status`` and ``verify`` (each: parse, call, exit code)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio

from transfer.bandwidth import follow_timetable, parse_bwlimit
from transfer.cli.display import show_progress
from transfer.cli.logs import configure_logging
from transfer.cli.metrics import write_metrics
from transfer.cli.report import (
    format_differences,
    format_plan_summary,
    format_prune,
    format_summary,
    summary_json,
)
from transfer.cloud.sessions import Clouds, open_clouds
from transfer.config.loader import load_config, parse_duration
from transfer.config.settings import Config, HttpSettings, JobConfig
from transfer.engine.planning import JobPlan, build_plan, join_and_plan
from transfer.engine.prune import PruneResult, prune
from transfer.engine.results import Progress, RunSummary
from transfer.engine.runner import default_worker_id, run_plan
from transfer.engine.verification import verify_plan
from transfer.errors import ConfigError, TooManyDeletions
from transfer.journal import Journal, open_journal
from transfer.journal.lock import job_lock
from transfer.journal.records import PlanTicket
from transfer.planner import format_plan
from transfer.streams import TokenBucket, human_bytes

_T = TypeVar("_T")

EXIT_OK = 0
EXIT_PARTIAL = 1  # some images failed for good (or a prune was refused)
EXIT_DIFFERENCES = 1  # verify found differences
EXIT_RETRYABLE = 4  # some images failed, every failure transient: run again later
EXIT_DEADLINE = 5  # max duration reached: images left for the next run
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Command:
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", required=True, type=Path, metavar="FILE", help="the TOML config file"
    )
    parser.add_argument(
        "--job",
        action="append",
        metavar="NAME",
        help="the job to act on (repeatable; default: every job in the config)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    parser.add_argument(
        "--log-format", choices=("auto", "console", "json"), help="override [log] format"
    )


def _load(args: argparse.Namespace) -> tuple[Config, list[JobConfig]]:
    config = load_config(args.config)
    for warning in config.warnings:
        print(f"image-transfer: warning: {warning}", file=sys.stderr)
    configure_logging(
        "debug" if args.verbose else config.log.level, args.log_format or config.log.format
    )
    names = args.job or list(config.jobs)
    unknown = [n for n in names if n not in config.jobs]
    if unknown:
        known = ", ".join(config.jobs) or "none"
        raise ConfigError(f"{args.config}: no job named {unknown[0]!r} (jobs: {known})")
    if not names:
        raise ConfigError(f"{args.config}: the config defines no [[jobs]]")
    return config, [config.jobs[n] for n in names]


def _run_async(func: Callable[[], Awaitable[_T]]) -> _T:
    async def main() -> _T:
        return await func()

    return anyio.run(main)


# -- plan ----------------------------------------------------------------------------------


def _configure_plan(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def _run_plan(args: argparse.Namespace) -> int:
    config, jobs = _load(args)

    async def main() -> int:
        out = []
        async with open_journal(config.journal) as journal, open_clouds(config) as clouds:
            for job in jobs:
                plan = await build_plan(config, job, clouds, journal)
                if args.json:
                    out.append(_plan_json(plan))
                else:
                    print(
                        f"job {job.name}: {job.source.key} -> "
                        f"{', '.join(t.key for t in job.targets)}"
                    )
                    text = format_plan(plan.items)
                    if text:
                        print(text)
                    print(format_plan_summary(plan.items))
        if args.json:
            print(json.dumps(out, indent=2))
        return EXIT_OK

    return _run_async(main)


def _plan_json(plan: JobPlan) -> dict[str, object]:
    return {
        "job": plan.job.name,
        "items": [
            {
                "code": i.code.value,
                "target": i.target_key,
                "source_id": i.source.id if i.source else None,
                "source_name": i.source.name if i.source else None,
                "target_id": i.target.id if i.target else i.target_id,
                "reasons": list(i.reasons),
            }
            for i in plan.items
        ],
    }


# -- run -----------------------------------------------------------------------------------


def _configure_run(parser: argparse.ArgumentParser) -> None:
    _common(parser)
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
        type=float,
        default=30.0,
        metavar="S",
        help="with a PostgreSQL journal: how long a claimed image stays this worker's without "
        "renewal, so a dead worker's images are taken over after it (default 30)",
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
        off = len(timetable.entries) == 1 and timetable.entries[0][1] is None
        changes["bwlimit"] = None if off else timetable
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
    summary: RunSummary | None = None
    deadline: bool = False
    pruned: PruneResult | None = None
    error: str | None = None


def _run_run(args: argparse.Namespace) -> int:
    config, jobs = _load(args)
    jobs = [_job_overrides(job, args) for job in jobs]
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
                                    await _run_one(config, job, journal, clouds, args, stop)
                                )
            finally:
                tg.cancel_scope.cancel()

    try:
        _run_async(main)
    finally:
        summaries = [o.summary for o in outcomes if o.summary is not None]
        if args.report and summaries:
            report = [_report(o) for o in outcomes if o.summary is not None]
            _write_atomic(
                args.report, json.dumps(report[0] if len(report) == 1 else report, indent=2) + "\n"
            )
        if args.metrics_file and summaries:
            write_metrics(args.metrics_file, summaries)
    return _exit_code(outcomes, len(jobs))


def _exit_code(outcomes: list[_Outcome], jobs: int) -> int:
    summaries = [o.summary for o in outcomes if o.summary is not None]
    if any(o.deadline for o in outcomes):
        return EXIT_DEADLINE
    if any(s.interrupted for s in summaries) or len(outcomes) < jobs:
        return EXIT_INTERRUPTED
    failed = [r for s in summaries for r in s.failed]
    if failed or any(o.error for o in outcomes):
        if failed and all(r.retryable for r in failed) and not any(o.error for o in outcomes):
            return EXIT_RETRYABLE
        return EXIT_PARTIAL
    return EXIT_OK


def _report(outcome: _Outcome) -> dict[str, object]:
    assert outcome.summary is not None
    data = summary_json(outcome.summary)
    data["deadline_reached"] = outcome.deadline
    if outcome.pruned is not None:
        data["pruned"] = [
            {"target": key, "target_id": image_id, "name": name}
            for key, image_id, name in outcome.pruned.deleted
        ]
        data["prune_kept"] = [
            {"target": key, "target_id": image_id, "name": name, "reason": reason}
            for key, image_id, name, reason in outcome.pruned.kept
        ]
    if outcome.error:
        data["error"] = outcome.error
    return data


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
) -> _Outcome:
    outcome = _Outcome()
    if args.restart:
        await journal.reset_job(job.name)
    ticket: PlanTicket | None = None
    if journal.work_queue is not None:
        worker = args.worker_id or default_worker_id()
        plan, ticket = await join_and_plan(
            config, job, clouds, journal, worker, lease_seconds=args.lease_seconds
        )
    else:
        plan = await build_plan(config, job, clouds, journal)
    print(f"job {job.name}: {format_plan_summary(plan.items)}", file=sys.stderr)
    progress = Progress()
    # The job's own stop: a signal stops every job; a deadline only this one.
    job_stop = anyio.Event()
    bucket = TokenBucket(None) if job.bwlimit is not None else None

    async def relay() -> None:
        await stop.wait()
        job_stop.set()

    async def deadline(seconds: float) -> None:
        await anyio.sleep(seconds)
        outcome.deadline = True
        print(
            f"\nimage-transfer: job {job.name}: max duration reached: finishing the images in "
            "flight, starting no new one",
            file=sys.stderr,
        )
        job_stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(relay)
        if job.max_duration is not None:
            tg.start_soon(deadline, job.max_duration)
        if bucket is not None and job.bwlimit is not None:
            tg.start_soon(follow_timetable, job.bwlimit, bucket)
        if not args.no_progress:
            tg.start_soon(show_progress, progress)
        summary = await run_plan(
            plan,
            journal=journal,
            worker=args.worker_id,
            bucket=bucket,
            progress=progress,
            stop=job_stop,
            clean_spool=args.clean,
            ticket=ticket,
            lease_seconds=args.lease_seconds,
        )
        tg.cancel_scope.cancel()
    if outcome.deadline and not summary.interrupted:
        outcome.deadline = False  # everything finished before the deadline mattered
    outcome.summary = summary
    if sys.stderr.isatty() and not args.no_progress:
        print(file=sys.stderr)
    print(format_summary(summary))
    if outcome.deadline:
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


# -- status --------------------------------------------------------------------------------


def _configure_status(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--images", action="store_true", help="one line per image and target")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _run_status(args: argparse.Namespace) -> int:
    config = load_config(args.config, resolve_secrets=False)
    names = args.job

    async def main() -> int:
        report = []
        async with open_journal(config.journal) as journal:
            for name in names or await journal.jobs():
                entries = await journal.entries(name)
                runs = await journal.runs(name, limit=5)
                counts: dict[str, int] = {}
                for e in entries.values():
                    counts[e.state] = counts.get(e.state, 0) + 1
                report.append((name, entries, runs, counts))
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "job": name,
                            "states": counts,
                            "runs": [r.__dict__ for r in runs],
                            "items": [e.__dict__ for e in entries.values()]
                            if args.images
                            else None,
                        }
                        for name, entries, runs, counts in report
                    ],
                    indent=2,
                    default=str,
                )
            )
            return EXIT_OK
        if not report:
            print("the journal holds no job yet")
        for name, entries, runs, counts in report:
            states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no items"
            total = sum(e.bytes_done for e in entries.values())
            print(f"job {name}: {states}; {human_bytes(total)} moved")
            holders: dict[str, int] = {}
            for e in entries.values():
                if e.lease_owner:
                    holders[e.lease_owner] = holders.get(e.lease_owner, 0) + 1
            for holder, count in sorted(holders.items()):
                print(f"  worker {holder} holds {count} images")
            for r in runs:
                print(
                    f"  run {r.id} by {r.worker}: {r.started_at} -> "
                    f"{r.finished_at or 'running or killed'} {r.outcome or ''}".rstrip()
                )
            if args.images:
                for e in sorted(entries.values(), key=lambda e: (e.source_name, e.target_key)):
                    err = f"  ({e.last_error})" if e.last_error and e.state != "done" else ""
                    print(
                        f"  {e.state:8} {e.source_name or e.source_id} -> {e.target_key} "
                        f"{e.target_id or '-'} step={e.last_step or '-'}{err}"
                        + (f"  [held by {e.lease_owner}]" if e.lease_owner else "")
                    )
        return EXIT_OK

    return _run_async(main)


# -- verify --------------------------------------------------------------------------------


def _configure_verify(parser: argparse.ArgumentParser) -> None:
    _common(parser)


def _run_verify(args: argparse.Namespace) -> int:
    config, jobs = _load(args)

    async def main() -> int:
        failed = False
        async with open_journal(config.journal) as journal, open_clouds(config) as clouds:
            for job in jobs:
                plan = await build_plan(config, job, clouds, journal)
                differences = await verify_plan(plan)
                pairs = sum(1 for i in plan.items if i.source is not None)
                if differences:
                    failed = True
                    print(f"job {job.name}: {len(differences)} of {pairs} copies differ")
                    print(format_differences(differences))
                else:
                    print(f"job {job.name}: all {pairs} copies verified")
        return EXIT_DIFFERENCES if failed else EXIT_OK

    return _run_async(main)


plan = Command(_configure_plan, _run_plan)
run = Command(_configure_run, _run_run)
status = Command(_configure_status, _run_status)
verify = Command(_configure_verify, _run_verify)
