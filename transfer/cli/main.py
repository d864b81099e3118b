"""The command line: parses, calls one function per command, maps the outcome to an exit code.

Each command lives in the module that owns its concept and exposes two functions:
``configure(parser)`` adds its arguments, ``run(args) -> int`` does the work.  This module only
wires them together and turns the project's errors into one clear line and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from enum import IntEnum
from typing import Protocol

from transfer import __version__
from transfer.errors import ConfigError, TransferError, only_error


class ExitCode(IntEnum):
    """The exit codes of every command (the README's table)."""

    OK = 0
    PARTIAL = 1  # some images failed for good, or a prune was refused by max_delete
    DIFFERENCES = 1  # verify found differences
    ERROR = 1  # images: the API or a file said no
    USAGE = 2  # bad command line or configuration
    FATAL = 3  # the run could not proceed (credentials, catalog, journal, the job locked)
    RETRYABLE = 4  # some images failed, every failure transient: run again later
    DEADLINE = 5  # max_duration reached: images left for the next run
    INTERRUPTED = 130  # SIGINT or SIGTERM


class CommandModule(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# command name -> ("module" or "module:attribute", one-line help).  The module (or the named
# attribute of it) provides configure() and run().
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("transfer.cli.demo", "run a real migration between emulated regions and tenants"),
    "plan": ("transfer.cli.plan:plan", "show what a job would do (dry run)"),
    "run": ("transfer.cli.jobs:run", "run a job, or resume it where it stopped"),
    "copy": ("transfer.cli.copy:copy", "copy images between CLOUD:REGIONs, no config needed"),
    "sync": ("transfer.cli.copy:sync", "copy, then prune the copies whose source is gone"),
    "status": ("transfer.cli.status:status", "show where jobs stand, from the journal"),
    "verify": ("transfer.cli.plan:verify", "deep-compare a job's sources and targets"),
    "emulator": ("transfer.emulator.cli", "run an emulated cloud: NHN or a private OpenStack"),
    "images": ("transfer.cli.images", "every Image API call: list, show, create, upload, ..."),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def build_parser(
    argv: Sequence[str] | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, CommandModule]]:
    """The parser, with the arguments of the command ``argv`` names (of every command when
    ``argv`` is None).  Only that command's module is imported: every run pays for what it
    imports, and the emulator or the demo have no business in a nightly ``run``."""
    parser = _Parser(
        prog="image-transfer",
        description="Bulk transfer and migration of NHN Cloud (OpenStack Glance v2) images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    modules: dict[str, CommandModule] = {}
    for name, (module_path, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if chosen is not None and name != chosen:
            continue
        module_name, _, attribute = module_path.partition(":")
        module: CommandModule = importlib.import_module(module_name)
        if attribute:
            module = getattr(module, attribute)
        module.configure(command_parser)
        modules[name] = module
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser, modules = build_parser(arguments)
    args = parser.parse_args(arguments)
    try:
        try:
            return modules[args.command].run(args)
        except BaseExceptionGroup as group:
            # Task groups wrap what their tasks raise: report our own errors as if raised bare.
            raise only_error(group) from None
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"image-transfer: config error: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    except TransferError as exc:
        print(f"image-transfer: error: {exc}", file=sys.stderr)
        return ExitCode.FATAL
    except KeyboardInterrupt:
        print("image-transfer: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
