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
from typing import Protocol

from transfer import __version__
from transfer.errors import ConfigError, TransferError

# Exit codes (documented in the README).
EXIT_OK = 0
EXIT_PARTIAL = 1  # some images failed, the rest succeeded
EXIT_USAGE = 2  # bad command line or configuration
EXIT_FATAL = 3  # the run could not proceed (credentials, catalog, journal)
EXIT_INTERRUPTED = 130


class CommandModule(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# command name -> (module path, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "emulator": ("transfer.emulator.cli", "run the emulated NHN cloud (identity + image regions)"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, CommandModule]]:
    parser = _Parser(
        prog="image-transfer",
        description="Bulk transfer and migration of NHN Cloud (OpenStack Glance v2) images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    modules: dict[str, CommandModule] = {}
    for name, (module_path, help_text) in COMMANDS.items():
        module: CommandModule = importlib.import_module(module_path)  # type: ignore[assignment]
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(command_parser)
        modules[name] = module
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    try:
        return modules[args.command].run(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"image-transfer: config error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except TransferError as exc:
        print(f"image-transfer: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("image-transfer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
