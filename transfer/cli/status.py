"""The ``status`` command: where jobs stand, from the journal alone (no credentials, no
request, no engine: a loop of ``status`` in a shell pays only for the config and the journal).

Its exit code is the state of the jobs shown, as ``run``'s is of a run: 0 when no image of them
is failed in the journal, 4 (``RETRYABLE``) when some are and every one's last failure was
transient, 1 (``PARTIAL``) otherwise; 2 for a ``--job`` neither the config nor the journal
knows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio

from transfer.cli.job_columns import STATUS_ANY_COLUMN
from transfer.cli.job_output import print_status
from transfer.cli.main import ExitCode
from transfer.cli.options import Command, common_arguments, openstack_environ
from transfer.cli.output import add_output_options
from transfer.cli.report import JobStatus
from transfer.config.loader import load_config
from transfer.journal import open_journal
from transfer.journal.records import EntryState


def _configure_status(parser: argparse.ArgumentParser) -> None:
    common_arguments(parser)
    parser.add_argument("--images", action="store_true", help="one line per image and target")
    add_output_options(parser, STATUS_ANY_COLUMN)
    parser.epilog = (
        "examples:\n"
        "  image-transfer status -c config.toml\n"
        "  image-transfer status -c config.toml --job kr1-to-kr2 --images\n"
        "  image-transfer status -c config.toml -f csv --images --column source_name "
        "--column state\n"
        "  image-transfer status -c config.toml -f json"
    )


def _run_status(args: argparse.Namespace) -> int:
    config = load_config(args.config, resolve_secrets=False, environ=openstack_environ(args))

    async def main() -> list[JobStatus] | None:
        statuses = []
        async with open_journal(config.journal) as journal:
            known = sorted(set(config.jobs) | set(await journal.jobs()))
            unknown = [name for name in args.job or () if name not in known]
            if unknown:
                print(
                    f"image-transfer: error: --job {unknown[0]}: no such job in {args.config} "
                    f"or its journal (known jobs: {', '.join(known) or 'none'})",
                    file=sys.stderr,
                )
                return None
            for name in args.job or await journal.jobs():
                statuses.append(
                    JobStatus(
                        job=name,
                        states=await journal.state_counts(name),
                        entries=list((await journal.entries(name)).values()),
                        runs=await journal.runs(name, limit=5),
                    )
                )
        return statuses

    statuses = anyio.run(main)
    if statuses is None:
        return ExitCode.USAGE
    print_status(args, statuses)
    return exit_code(statuses)


def exit_code(statuses: Sequence[JobStatus]) -> int:
    """``PARTIAL`` when an image of these jobs is failed in the journal, ``RETRYABLE`` when
    each such image's last failure was transient, else ``OK``."""
    failed = [e for s in statuses for e in s.entries if e.state == EntryState.FAILED]
    if not failed:
        return ExitCode.OK
    return ExitCode.RETRYABLE if all(e.retryable for e in failed) else ExitCode.PARTIAL


status = Command(_configure_status, _run_status)
