"""The ``copy`` and ``sync`` commands: one job written on the command line (``SRC DST...`` as
``CLOUD:REGION``, a selection, a few limits) instead of in a config file, run by ``run``'s own
path (``transfer.cli.jobs.execute``), so it has the same live display, journal, report and exit
codes.  ``sync`` is ``copy`` and then the prune of this job's marked copies whose source is gone,
within ``--max-delete``.  The clouds and the job are built by ``transfer.config.adhoc``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import MappingProxyType

from transfer.cli.jobs import as_plan, execute, max_delete_argument, run_arguments
from transfer.cli.options import Command, load_jobs, logging_arguments, openstack_environ
from transfer.config.adhoc import adhoc_config
from transfer.config.loader import load_config
from transfer.config.settings import SelectConfig, VerifyMode
from transfer.errors import ConfigError

_ABOUT = """\
CLOUD:REGION:
  CLOUD is a [clouds.NAME] of -c FILE, else a clouds.yaml entry (secure.yaml merged over it,
  found where the openstack CLI looks), else "env" for the OS_* variables.  An empty CLOUD
  (":KR2") is --os-cloud / $OS_CLOUD, else the OS_* variables.  An empty REGION ("nhn") is
  the cloud's region_name.

The job is named copy-HASH from the source, the targets and the selection: the same line
resumes the same job (its journal is at the default path, or -c FILE's)."""

_EXAMPLES = """\
examples:
  image-transfer {name} nhn:KR1 nhn:KR2 --include 'golden-*'
  image-transfer {name} nhn:KR1 nhn:KR2 nhn:JP1 --exclude '*-test' --dry-run
  image-transfer {name} --os-cloud nhn :KR1 :KR2 --id 1c868787-6207-4ff2-a1e7-ae1331d6829b
  image-transfer {name} private:RegionOne env:KR1 --property os_distro=ubuntu --verify full
  image-transfer {name} -c config.toml src:KR1 dst:KR2 --transfers 8 --bwlimit 50M
"""


def _count(low: int, high: int) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high}, got {value}")
        return value

    return parse  # type: ignore[return-value]


def _property(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _configure(parser: argparse.ArgumentParser, *, sync: bool) -> None:
    name = "sync" if sync else "copy"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = f"{parser.description}\n\n{_ABOUT}"
    parser.epilog = _EXAMPLES.format(name=name)
    parser.add_argument("source", metavar="SRC", help="where the images are: CLOUD:REGION")
    parser.add_argument(
        "targets", metavar="DST", nargs="+", help="where they go: CLOUD:REGION (one or more)"
    )
    where = parser.add_argument_group("clouds")
    where.add_argument(
        "-c", "--config", type=Path, metavar="FILE", help="a TOML config whose clouds come first"
    )
    where.add_argument(
        "--os-cloud",
        metavar="NAME",
        help="the clouds.yaml entry an empty CLOUD (':KR1') names (default: $OS_CLOUD, else "
        "the OS_* variables)",
    )
    _selection_arguments(parser)
    how = parser.add_argument_group("how")
    how.add_argument(
        "--dry-run", action="store_true", help="show the plan (as `plan` does), change nothing"
    )
    how.add_argument(
        "--transfers",
        type=_count(1, 64),
        default=4,
        metavar="N",
        help="concurrent data transfers (default 4)",
    )
    how.add_argument(
        "--checkers",
        type=_count(1, 256),
        default=8,
        metavar="N",
        help="concurrent calls that move no bytes: creates, GETs, metadata (default 8)",
    )
    how.add_argument(
        "--verify",
        choices=tuple(VerifyMode),
        default=VerifyMode.AUTO.value,
        help="auto: the servers' hashes prove a copy; full: also hash every byte in flight",
    )
    run_arguments(how)
    if sync:
        max_delete_argument(how)
    out = parser.add_argument_group("output")
    logging_arguments(out)
    parser.set_defaults(
        prune=sync, job=None, worker_id=None, lease_seconds=None, max_takeovers=None
    )
    if not sync:
        parser.set_defaults(max_delete=None)


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    chosen = parser.add_argument_group("which images (every one given must hold)")
    chosen.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="copy images whose name matches GLOB (repeatable; default: every active image)",
    )
    chosen.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip images whose name matches GLOB (repeatable; wins over --include)",
    )
    chosen.add_argument(
        "--id",
        dest="ids",
        action="append",
        default=[],
        metavar="ID",
        help="only this image id (repeatable)",
    )
    chosen.add_argument(
        "--property",
        dest="properties",
        action="append",
        default=[],
        type=_property,
        metavar="K=V",
        help="only images whose property K is V (repeatable: every one must hold)",
    )


def _select(args: argparse.Namespace) -> SelectConfig:
    for glob in (*args.include, *args.exclude):
        if not glob:
            raise ConfigError("--include/--exclude: expected a name glob, got an empty one")
    return SelectConfig(
        names=tuple(dict.fromkeys(args.include)),
        exclude_names=tuple(dict.fromkeys(args.exclude)),
        ids=tuple(dict.fromkeys(args.ids)),
        properties=MappingProxyType(dict(args.properties)),
    )


def _run(args: argparse.Namespace) -> int:
    environ = openstack_environ(args)
    config = load_config(args.config, environ=environ) if args.config else None
    built = adhoc_config(
        args.source,
        args.targets,
        select=_select(args),
        settings={
            "transfers": args.transfers,
            "checkers": args.checkers,
            "verify": VerifyMode(args.verify),
        },
        config=config,
        environ=environ,
    )
    args.built_config = built
    (job,) = built.jobs.values()
    targets = ", ".join(t.key for t in job.targets)
    print(f"image-transfer: job {job.name}: {job.source.key} -> {targets}", file=sys.stderr)
    if args.dry_run:
        return as_plan(args)
    config, jobs = load_jobs(args)
    return execute(config, jobs, args)


copy = Command(lambda parser: _configure(parser, sync=False), _run)
sync = Command(lambda parser: _configure(parser, sync=True), _run)
