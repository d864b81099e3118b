"""The ``status`` command: where jobs stand, from the journal alone (no credentials, no
request, no engine: a loop of ``status`` in a shell pays only for the config and the journal)."""

from __future__ import annotations

import argparse

import anyio

from transfer.cli.job_columns import STATUS_ANY_COLUMN
from transfer.cli.job_output import print_status
from transfer.cli.main import ExitCode
from transfer.cli.options import Command, common_arguments
from transfer.cli.output import add_output_options
from transfer.cli.report import JobStatus
from transfer.config.loader import load_config
from transfer.journal import open_journal


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
    config = load_config(args.config, resolve_secrets=False)

    async def main() -> list[JobStatus]:
        statuses = []
        async with open_journal(config.journal) as journal:
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
    print_status(args, statuses)
    return ExitCode.OK


status = Command(_configure_status, _run_status)
