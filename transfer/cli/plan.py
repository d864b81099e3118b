"""The ``plan`` and ``verify`` commands: what a job would do, and a deep comparison of its
sources and targets.  Both plan, neither copies: the runner, the live display and the spool are
``run``'s (``transfer.cli.jobs``), and are not imported here.  The planner, the journal and the
report load while the token requests are in flight (``transfer.cli.inflight``)."""

from __future__ import annotations

import argparse
import json

import anyio

from transfer.cli.inflight import start_then_import
from transfer.cli.main import ExitCode
from transfer.cli.options import Command, common_arguments, load_jobs
from transfer.cloud.sessions import open_clouds

# What planning needs past the token requests (imported while they are in flight).
_PLANNING = ("transfer.engine.planning", "transfer.journal", "transfer.cli.report")

# -- plan ----------------------------------------------------------------------------------


def _configure_plan(parser: argparse.ArgumentParser) -> None:
    common_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def _run_plan(args: argparse.Namespace) -> int:
    config, jobs = load_jobs(args)

    async def main() -> int:
        out = []
        async with open_clouds(config) as clouds:
            await start_then_import(clouds, jobs, *_PLANNING, "transfer.planner")
            from transfer.cli.report import format_plan_summary, plan_json
            from transfer.engine.planning import build_plan
            from transfer.journal import open_journal
            from transfer.planner import format_plan

            async with open_journal(config.journal) as journal:
                for job in jobs:
                    plan = await build_plan(config, job, clouds, journal)
                    if args.json:
                        out.append(plan_json(plan))
                        continue
                    targets = ", ".join(t.key for t in job.targets)
                    print(f"job {job.name}: {job.source.key} -> {targets}")
                    text = format_plan(plan.items)
                    if text:
                        print(text)
                    print(format_plan_summary(plan.items))
        if args.json:
            print(json.dumps(out, indent=2))
        return ExitCode.OK

    return anyio.run(main)


# -- verify --------------------------------------------------------------------------------


def _configure_verify(parser: argparse.ArgumentParser) -> None:
    common_arguments(parser)


def _run_verify(args: argparse.Namespace) -> int:
    config, jobs = load_jobs(args)

    async def main() -> int:
        failed = False
        async with open_clouds(config) as clouds:
            await start_then_import(clouds, jobs, *_PLANNING, "transfer.engine.verification")
            from transfer.cli.report import format_differences
            from transfer.engine.planning import build_plan
            from transfer.engine.verification import verify_plan
            from transfer.journal import open_journal

            async with open_journal(config.journal) as journal:
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
        return ExitCode.DIFFERENCES if failed else ExitCode.OK

    return anyio.run(main)


plan = Command(_configure_plan, _run_plan)
verify = Command(_configure_verify, _run_verify)
