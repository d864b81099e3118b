"""The ``bench`` command: measure what the link between two clouds' regions gives (parse, call
``transfer.bench``, show, exit code).  ``bench --cleanup`` deletes what a killed bench left.

The clouds are named as ``copy`` names them (``CLOUD:REGION``: a ``[clouds.NAME]`` of ``-c``,
a clouds.yaml entry, ``env``), resolved by ``transfer.config.adhoc``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio

from transfer.bandwidth import parse_bwlimit
from transfer.bench.chart import write_chart
from transfer.bench.ledger import Swept, sweep
from transfer.bench.markers import RUN_ID_RE, new_run_id
from transfer.bench.report import left_lines, report_json, report_lines
from transfer.bench.runner import Bench, BenchReport, BenchSettings, open_side
from transfer.cli.display import show_progress
from transfer.cli.main import ExitCode
from transfer.cli.options import Command, load_jobs, logging_arguments, openstack_environ
from transfer.cloud.sessions import open_clouds
from transfer.config.adhoc import CloudResolver, Spec, endpoint
from transfer.config.checks import parse_duration
from transfer.config.loader import load_config
from transfer.config.settings import (
    Config,
    Endpoint,
    HttpSettings,
    JobConfig,
    JournalConfig,
    LogConfig,
    LogFormat,
    LogLevel,
)
from transfer.engine.results import Progress
from transfer.errors import ConfigError
from transfer.streams import parse_size

_ABOUT = """\
Creates random test images in the source (or reads existing ones, --images), then measures,
for each --transfers value: the download alone, the upload alone (random bytes into images
made for it) and the full verified copy by the engine, as `run` makes it; and the latency of
single calls.  It prints a table, the knee of the curve and which side limits.  Everything it
creates is marked (image_transfer_bench = RUN_ID) and deleted at the end, after SIGINT or
SIGTERM too; `bench --cleanup` deletes what a killed bench left: every bench's images, or one
run's with --run ID.  It measures your link; `make bench` measures the engine on loopback."""

_EXAMPLES = """\
examples:
  image-transfer bench --from nhn:KR1 --to nhn:JP1
  image-transfer bench --from nhn:KR1 --to nhn:JP1 --sizes 64M,1G --count 4 --transfers 1,4,16
  image-transfer bench --from nhn:KR1 --to other:KR1 --images 'golden-*' --max-duration 5m
  image-transfer bench --from nhn:KR1 --to nhn:JP1 --json bench.json --chart bench.svg --yes
  image-transfer bench --from nhn:KR1 --to nhn:JP1 --cleanup --run 3f9c0a1b2d4e"""


def _list(parse: Any, what: str) -> Any:
    def parse_list(text: str) -> tuple[Any, ...]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}")
        try:
            return tuple(parse(part) for part in parts)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse_list


def _size(text: str) -> int:
    size = parse_size(text)
    if size <= 0:
        raise ValueError(f"expected a size above 0, got {text!r}")
    return size


def _transfers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise ValueError(f"expected transfers from 1 to 64, got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"expected 1 to 1000, got {text!r}")
    return int(text)


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = f"{parser.description}\n\n{_ABOUT}"
    parser.epilog = _EXAMPLES
    where = parser.add_argument_group("clouds (as for copy: CLOUD:REGION)")
    where.add_argument("--from", dest="source", metavar="CLOUD:REGION", help="the source side")
    where.add_argument("--to", dest="target", metavar="CLOUD:REGION", help="the target side")
    where.add_argument(
        "-c", "--config", type=Path, metavar="FILE", help="a TOML config whose clouds come first"
    )
    where.add_argument(
        "--os-cloud",
        metavar="NAME",
        help="the clouds.yaml entry an empty CLOUD (':KR1') names (default: $OS_CLOUD)",
    )
    images = parser.add_argument_group("the test images")
    images.add_argument(
        "--sizes",
        type=_list(_size, "sizes"),
        default=(256 * 1024 * 1024,),
        metavar="LIST",
        help="sizes of the random images made in the source, e.g. 64M,1G (default 256M)",
    )
    images.add_argument(
        "--count",
        type=_count,
        metavar="N",
        help="random images of each size (default: the largest --transfers value)",
    )
    images.add_argument(
        "--images",
        metavar="GLOB",
        help="use the source's existing active images whose name matches GLOB instead (read "
        "only: nothing is made or changed in the source)",
    )
    images.add_argument(
        "--max-bytes",
        type=_size_arg,
        default=10 * 1024**3,
        metavar="SIZE",
        help="ask before holding more than SIZE in one cloud at once (default 10G)",
    )
    images.add_argument(
        "-y", "--yes", action="store_true", help="do not ask: go ahead beyond --max-bytes"
    )
    _measure_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="FILE", help="write every figure as JSON")
    out.add_argument(
        "--chart", type=Path, metavar="FILE", help="draw throughput against transfers (.svg/.png)"
    )
    out.add_argument("--no-progress", action="store_true", help="no progress display")
    logging_arguments(out)
    clean = parser.add_argument_group("cleanup")
    clean.add_argument(
        "--cleanup",
        action="store_true",
        help="measure nothing: delete the images benches left in --from and --to (every "
        "bench's, or --run's), found by their marker; nothing else is touched",
    )
    clean.add_argument(
        "--run", metavar="ID", help="with --cleanup: only the images of this bench run"
    )
    parser.set_defaults(job=None)


def _size_arg(text: str) -> int:
    try:
        return _size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _measure_arguments(parser: argparse.ArgumentParser) -> None:
    how = parser.add_argument_group("what is measured")
    how.add_argument(
        "--transfers",
        type=_list(_transfers, "transfers values"),
        default=(1, 2, 4, 8, 16),
        metavar="LIST",
        help="the numbers of transfers at once to measure (default 1,2,4,8,16)",
    )
    how.add_argument(
        "--max-duration",
        default="10m",
        metavar="DURATION",
        help='time for all the measurements ("10m", "90s"; default 10m): each gets its share '
        "of what is left, and moves at least one image per transfer",
    )
    how.add_argument(
        "--bwlimit", metavar="RATE", help='bytes/s for all transfers together ("50M"; default off)'
    )
    how.add_argument(
        "--request-rate",
        type=float,
        metavar="N",
        help="at most N API requests per second per tenant (default: no cap)",
    )


def _endpoints(args: argparse.Namespace, resolver: CloudResolver, *, both: bool) -> list[Endpoint]:
    sides: list[Endpoint] = []
    for flag, text in (("--from", args.source), ("--to", args.target)):
        if text is None:
            if both:
                raise ConfigError(f"bench: {flag} CLOUD:REGION is required")
            continue
        spec = Spec(flag, text)
        end = endpoint(spec, resolver.cloud(spec))
        if end in sides:
            raise spec.error("expected a target other than the source")
        sides.append(end)
    if not sides:
        raise ConfigError("bench --cleanup: expected --from or --to (or both)")
    return sides


def _config(args: argparse.Namespace) -> tuple[Config, list[Endpoint]]:
    environ = openstack_environ(args)
    base = load_config(args.config, environ=environ) if args.config else None
    resolver = CloudResolver(base, environ)
    sides = _endpoints(args, resolver, both=not args.cleanup)
    job = JobConfig(
        name="bench",
        source=sides[0],
        targets=tuple(sides[1:]) or (sides[0],),
        request_rate=args.request_rate,
    )
    clouds = MappingProxyType({**(base.clouds if base else {}), **resolver.resolved})
    config = Config(
        path=base.path if base else Path("(command line)"),
        journal=JournalConfig(path=Path("bench-journal.db")),  # each copy gets its own
        # The engine's line per image is noise here (-v shows it): warnings and errors only.
        log=LogConfig(level=LogLevel.WARNING, format=base.log.format if base else LogFormat.AUTO),
        clouds=clouds,
        jobs=MappingProxyType({job.name: job}),
        warnings=(*(base.warnings if base else ()), *resolver.warnings),
    )
    args.built_config = config
    load_jobs(args)  # the warnings, and the logging
    return config, sides


def _settings(args: argparse.Namespace) -> BenchSettings:
    seconds = parse_duration(args.max_duration)
    if not seconds:
        raise ConfigError(
            f'--max-duration: expected a duration like "10m" or "90s", got {args.max_duration!r}'
        )
    rate = None
    if args.bwlimit is not None:
        try:
            rate = parse_bwlimit(args.bwlimit).rate_at(datetime.now())
        except ValueError as exc:
            raise ConfigError(f"--bwlimit: {exc}") from None
    if args.request_rate is not None and not args.request_rate > 0:
        raise ConfigError(f"--request-rate: expected a positive number, got {args.request_rate}")
    transfers = tuple(sorted(set(args.transfers)))
    return BenchSettings(
        run_id=new_run_id(),
        sizes=tuple(args.sizes),
        count=args.count or max(transfers),
        images=args.images,
        transfers=transfers,
        max_duration=seconds,
        max_bytes=args.max_bytes,
        bwlimit=rate,
    )


class _Display:
    """The bench's ``Watch``: a line per phase and the run's progress display meanwhile."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.shown = not (args.no_progress or args.quiet)
        self.yes = args.yes

    @asynccontextmanager
    async def phase(self, label: str, progress: Progress | None) -> AsyncIterator[None]:
        print(f"bench: {label}", file=sys.stderr)
        if not self.shown or progress is None:
            yield
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(show_progress, progress)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    def say(self, line: str) -> None:
        print(line, file=sys.stderr)

    async def confirm(self, question: str) -> bool:
        if self.yes:
            return True
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise ConfigError(f"{question}: give --yes to go ahead (no terminal to ask on)")
        sys.stderr.write(f"image-transfer: {question}. Go ahead? [y/N] ")
        sys.stderr.flush()
        answer = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        return answer.strip().lower() in ("y", "yes")


def _run(args: argparse.Namespace) -> int:
    if args.run is not None and not args.cleanup:
        raise ConfigError("--run: only with --cleanup (a bench names its own run)")
    if args.run is not None and not RUN_ID_RE.fullmatch(args.run):
        raise ConfigError(f"--run: expected a run id of 12 hex digits, got {args.run!r}")
    if args.cleanup:
        config, sides = _config(args)
        return anyio.run(_cleanup, config, sides, args.run, args.request_rate)
    settings = _settings(args)
    config, _ = _config(args)
    (job,) = config.jobs.values()
    bench = Bench(config, job, settings, _Display(args))
    print(
        f"image-transfer: bench {settings.run_id}: {job.source.key} -> {job.targets[0].key} "
        f"(bench --cleanup --run {settings.run_id} deletes what a killed bench left)",
        file=sys.stderr,
    )
    report = anyio.run(_bench, bench)
    print("\n".join(report_lines(report, settings)))
    if args.json:
        args.json.write_text(json.dumps(report_json(report, settings), indent=2) + "\n")
    if args.chart and report.measurements:
        title = f"bench {report.run_id}: {report.source} -> {report.target}"
        write_chart(args.chart, report.measurements, report.knee[0], title)
    return _exit_code(report)


async def _bench(bench: Bench) -> BenchReport:
    async with anyio.create_task_group() as tg:

        async def signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                async for signum in received:
                    name = signal.Signals(signum).name
                    print(
                        f"\nimage-transfer: {name}: stopping; deleting what the bench created "
                        "(SIGKILL would leave it for `bench --cleanup`)",
                        file=sys.stderr,
                    )
                    bench.stop()

        tg.start_soon(signals)
        report = await bench.run()
        tg.cancel_scope.cancel()
    return report


async def _cleanup(
    config: Config, sides: Sequence[Endpoint], run_id: str | None, rate: float | None
) -> int:
    whose = f"bench run {run_id}" if run_id else "every bench run"
    code: int = ExitCode.OK
    async with open_clouds(config, HttpSettings(requests_per_second=rate)) as clouds:
        for end in sides:
            side = await open_side(clouds, "side", end)
            swept = await sweep(side, run_id)
            print(f"bench --cleanup: {end.key}: deleted {len(swept.deleted)} images of {whose}")
            code = max(code, _left(swept))
    return code


def _left(swept: Swept) -> int:
    for line in left_lines(swept):
        print(line)
    return ExitCode.PARTIAL if swept.protected or swept.failed else ExitCode.OK


def _exit_code(report: BenchReport) -> int:
    if report.interrupted:
        return ExitCode.INTERRUPTED
    if report.left_behind:
        return ExitCode.PARTIAL
    failed = [m for m in report.measurements if m.failed]
    if failed:
        return ExitCode.RETRYABLE if all(m.transient for m in failed) else ExitCode.PARTIAL
    return ExitCode.OK


bench = Command(_configure, _run)
