"""The ``run`` command: run jobs, or resume them where they stopped (parse, call, exit code).
``execute`` is its path from a loaded config to the exit code, which ``copy`` and ``sync``
(``transfer.cli.copy``) take too; ``run --dry-run`` is ``plan`` (``as_plan``).

``plan`` and ``verify`` (``transfer.cli.plan``) need the planner but not the runner; ``status``
(``transfer.cli.status``) reads only the journal: each command imports what it uses.  ``run``
sends the first job's token requests as soon as the config is read, and imports the engine, the
journal and the display (``transfer.cli.running``) and opens the journal while they are in
flight."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from transfer.bandwidth import parse_bwlimit
from transfer.cli.inflight import start_then_import
from transfer.cli.main import ExitCode
from transfer.cli.options import Command, common_arguments, load_jobs
from transfer.cli.serve import page_beside, serve_arguments
from transfer.cloud.sessions import Clouds, open_clouds
from transfer.config.loader import parse_duration
from transfer.config.settings import Config, HttpSettings, JobConfig, LeaseSettings
from transfer.errors import ConfigError

if TYPE_CHECKING:
    from transfer.cli.running import Outcome

# -- run -----------------------------------------------------------------------------------


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "examples:\n"
        "  image-transfer run -c config.toml\n"
        "  image-transfer run -c config.toml --job kr1-to-kr2 --dry-run\n"
        "  image-transfer run -c config.toml --job nightly --max-duration 6h --bwlimit "
        "'01:00,500M 07:00,50M'\n"
        "  image-transfer run -c config.toml --report report.json --metrics-file "
        "/var/lib/node_exporter/image-transfer.prom -q"
    )
    common_arguments(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show what the jobs would do and change nothing (the same as `plan`)",
    )
    run_arguments(parser)
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
        "--prune", action="store_true", help="delete targets whose source is gone or superseded"
    )
    max_delete_argument(parser)


def run_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The options of ``run`` that ``copy`` and ``sync`` share."""
    parser.add_argument(
        "--restart", action="store_true", help="forget the journal of the job and plan afresh"
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write a JSON report (its schema: docs/report.md)",
    )
    parser.add_argument(
        "--metrics-file",
        type=Path,
        metavar="FILE",
        help="write Prometheus metrics (for node_exporter's textfile collector)",
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
        "--no-progress", action="store_true", help="no progress display while running"
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="remove the job's spool files at the end, even those kept to resume failed images",
    )
    serve_arguments(parser)


def max_delete_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--max-delete", type=int, metavar="N", help="refuse to prune more than N images"
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
    if args.dry_run:
        return as_plan(args)
    config, jobs = load_jobs(args)
    if not args.job and len(jobs) > 1:
        print(f"image-transfer: running the {len(jobs)} jobs of {args.config}:", file=sys.stderr)
        for job in jobs:
            targets = ", ".join(t.key for t in job.targets)
            print(f"  {job.name}: {job.source.key} -> {targets}", file=sys.stderr)
    return execute(config, jobs, args)


def as_plan(args: argparse.Namespace) -> int:
    """``plan`` with the options of this command that ``plan`` has (a dry run)."""
    from transfer.cli.plan import plan

    parser = argparse.ArgumentParser(add_help=False)
    plan.configure(parser)
    known = {action.dest for action in parser._actions}
    given = {key: value for key, value in vars(args).items() if key in known}
    defaults = vars(parser.parse_args(["--config", str(args.config or "")]))
    merged = argparse.Namespace(**{**defaults, **given})
    merged.built_config = getattr(args, "built_config", None)
    return plan.run(merged)


def execute(config: Config, jobs: list[JobConfig], args: argparse.Namespace) -> int:
    """Run ``jobs`` of ``config`` with the command line's overrides: ``run``'s path, which
    ``copy`` and ``sync`` take too (the live display, the journal, the report, the exit code)."""
    jobs = [_job_overrides(job, args) for job in jobs]
    terms = _lease_terms(config, args)
    config = dataclasses.replace(config, journal=dataclasses.replace(config.journal, lease=terms))
    page = page_beside(config, args)
    outcomes: list[Outcome] = []
    imported = False  # transfer.cli.running, the engine side

    async def main() -> None:
        # Plain asyncio up to the first requests; anyio from there on (``start_then_import``
        # loads its backend while they are in flight).
        nonlocal imported
        async with AsyncExitStack() as first:
            early = await first.enter_async_context(open_clouds(config, _http(jobs[0])))
            await start_then_import(early, jobs[:1], "transfer.cli.running")
            imported = True
            from transfer.cli.running import run_jobs

            def clouds_for(n: int, job: JobConfig) -> AbstractAsyncContextManager[Clouds]:
                if n == 0:
                    return _opened(early, first)
                return open_clouds(config, _http(job))

            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_signals, stop, tg.cancel_scope)
                try:
                    async with page:
                        await run_jobs(config, jobs, clouds_for, args, stop, terms, outcomes)
                finally:
                    tg.cancel_scope.cancel()

    try:
        asyncio.run(main())
    finally:
        if imported:
            from transfer.cli.running import write_outputs

            write_outputs(args, outcomes)
    if not imported:  # stopped before anything ran
        return ExitCode.INTERRUPTED
    from transfer.cli.running import exit_code

    return exit_code(outcomes, len(jobs))


def _http(job: JobConfig) -> HttpSettings:
    return HttpSettings(requests_per_second=job.request_rate)


@asynccontextmanager
async def _opened(clouds: Clouds, stack: AsyncExitStack) -> AsyncIterator[Clouds]:
    """Clouds opened already (with their token requests under way), closed by ``stack`` when
    the job that uses them is done."""
    try:
        yield clouds
    finally:
        await stack.aclose()


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
