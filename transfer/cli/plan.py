"""The ``plan`` and ``verify`` commands: what a job would do, and a deep comparison of its
sources and targets.  Both plan, neither copies: the runner, the live display and the spool are
``run``'s (``transfer.cli.jobs``), and are not imported here.  The planner, the journal and the
report load while the token requests are in flight (``transfer.cli.inflight``)."""

from __future__ import annotations

import argparse

import anyio

from transfer.cli.inflight import start_then_import
from transfer.cli.job_columns import PLAN_COLUMNS, VERIFY_COLUMNS
from transfer.cli.main import ExitCode
from transfer.cli.options import Command, common_arguments, load_jobs
from transfer.cli.output import add_output_options
from transfer.cloud.sessions import open_clouds

# What planning needs past the token requests (imported while they are in flight).
_PLANNING = ("transfer.engine.planning", "transfer.journal", "transfer.cli.job_output")

# -- plan ----------------------------------------------------------------------------------


def _configure_plan(parser: argparse.ArgumentParser) -> None:
    common_arguments(parser)
    add_output_options(parser, PLAN_COLUMNS)
    parser.epilog = (
        "examples:\n"
        "  image-transfer plan -c config.toml\n"
        "  image-transfer plan -c config.toml --job kr1-to-kr2 -f json\n"
        "  image-transfer plan -c config.toml -f value --column action --column source_name\n"
        "  image-transfer plan -c config.toml -f csv > plan.csv"
    )


def _run_plan(args: argparse.Namespace) -> int:
    config, jobs = load_jobs(args)

    async def main() -> int:
        async with open_clouds(config) as clouds:
            await start_then_import(clouds, jobs, *_PLANNING)
            from transfer.cli.job_output import print_plans
            from transfer.engine.planning import build_plan
            from transfer.journal import open_journal

            async with open_journal(config.journal) as journal:
                plans = [await build_plan(config, job, clouds, journal) for job in jobs]
        print_plans(args, plans)
        return ExitCode.OK

    return anyio.run(main)


# -- verify --------------------------------------------------------------------------------


def _configure_verify(parser: argparse.ArgumentParser) -> None:
    common_arguments(parser)
    add_output_options(parser, VERIFY_COLUMNS)
    parser.epilog = (
        "examples:\n"
        "  image-transfer verify -c config.toml\n"
        "  image-transfer verify -c config.toml --job kr1-to-kr2 --json\n"
        "  image-transfer verify -c config.toml -f value --column result --column source_name"
    )


def _run_verify(args: argparse.Namespace) -> int:
    config, jobs = load_jobs(args)

    async def main() -> int:
        async with open_clouds(config) as clouds:
            await start_then_import(clouds, jobs, *_PLANNING, "transfer.engine.verification")
            from transfer.cli.job_output import Verified, print_verified
            from transfer.engine.planning import build_plan
            from transfer.engine.verification import verify_plan
            from transfer.journal import open_journal

            verified = []
            async with open_journal(config.journal) as journal:
                for job in jobs:
                    plan = await build_plan(config, job, clouds, journal)
                    verified.append(Verified(plan, await verify_plan(plan)))
        print_verified(args, verified)
        failed = any(v.differences for v in verified)
        return ExitCode.DIFFERENCES if failed else ExitCode.OK

    return anyio.run(main)


plan = Command(_configure_plan, _run_plan)
verify = Command(_configure_verify, _run_verify)
