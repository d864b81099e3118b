"""The command line: parses, calls one function per command, maps the outcome to an exit code.

Each command lives in the module that owns its concept and exposes two functions:
``configure(parser)`` adds its arguments, ``run(args) -> int`` does the work.  This module only
wires them together and turns the project's errors into one clear line and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol

from transfer import __version__
from transfer.errors import ConfigError, TransferError, only_error

if TYPE_CHECKING:
    from _typeshed import SupportsWrite


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
    BROKEN_PIPE = 141  # stdout was closed early (`| head`): 128 + SIGPIPE, as a shell shows it


#: One line of meaning per exit code, for the table that ends ``image-transfer --help``.
EXIT_MEANINGS: dict[int, str] = {
    ExitCode.OK: "success (verify: every copy matches)",
    ExitCode.PARTIAL: "some images failed and need a person; verify: differences; images: refused",
    ExitCode.USAGE: "usage or configuration error",
    ExitCode.FATAL: "the run could not proceed: credentials, catalog, journal, job locked",
    ExitCode.RETRYABLE: "some images failed, every failure transient: run again later",
    ExitCode.DEADLINE: "max_duration reached: the rest is left for the next run",
    ExitCode.INTERRUPTED: "interrupted by SIGINT or SIGTERM: run again to resume",
    ExitCode.BROKEN_PIPE: "the reader of the output went away (a closed pipe, as `| head`)",
}

EXAMPLES = """\
examples:
  image-transfer demo                                       a real migration on emulated regions
  image-transfer plan -c config.toml --job golden           what the job would do
  image-transfer run -c config.toml --job golden            copy, or resume where it stopped
  image-transfer images -c config.toml --cloud src list     the Image API from the shell
  image-transfer emulator --port 5000 --write-config ./emu  an emulated cloud, and a config for it
  image-transfer COMMAND --help                             a command's options and examples
  image-transfer completion bash > ~/.local/share/bash-completion/completions/image-transfer"""


def top_epilog() -> str:
    """The end of the top-level help: the exit codes, one line each, then examples."""
    rows = [f"  {code:>3}  {EXIT_MEANINGS[code]}" for code in sorted(set(ExitCode))]
    return "exit codes:\n" + "\n".join(rows) + "\n\n" + EXAMPLES


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
    "serve": ("transfer.cli.serve:serve", "serve a live page of the jobs, from the journal"),
    "verify": ("transfer.cli.plan:verify", "deep-compare a job's sources and targets"),
    "bench": ("transfer.cli.bench:bench", "measure the link between two regions, then clean up"),
    "emulator": ("transfer.emulator.cli", "run an emulated cloud: NHN or a private OpenStack"),
    "images": ("transfer.cli.images", "every Image API call: list, show, create, upload, ..."),
    "completion": ("transfer.cli.completion", "print a shell completion script (bash or zsh)"),
}


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 2 with one line; help keeps the line breaks of descriptions and epilogs
    (the examples), for every parser built with this class, subcommands' too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        # argparse swallows a failed write of its help or usage; a closed pipe must reach
        # main(), which ends every command the same way when the reader goes away.
        if message:
            (file or sys.stderr).write(message)

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
        epilog=top_epilog(),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    modules: dict[str, CommandModule] = {}
    for name, (module_path, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if chosen is not None and name != chosen:
            continue
        module_name, _, attribute = module_path.partition(":")
        module: CommandModule = importlib.import_module(module_name)
        if attribute:
            module = getattr(module, attribute)
        module.configure(command_parser)
        modules[name] = module
    # For the commands that describe the command line itself (completion): the whole parser.
    parser.set_defaults(full_parser=lambda: build_parser(None)[0])
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a closed stdout (``| head``) ends any command quietly, with 141."""
    try:
        try:
            code = _main(argv)
        except SystemExit as exc:
            # --help and usage errors print, then exit: their text may meet a closed pipe too.
            sys.stdout.flush()
            raise exc from None
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away: nothing more to say to it, and nothing to say about it (a
        # Unix tool would have died of SIGPIPE).  stdout now points at /dev/null, so that the
        # interpreter's last flush of what is still buffered does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return ExitCode.BROKEN_PIPE


def _require_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A command whose ``-c/--config`` is required got its file, not only ``-c COLUMN``s."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[args.command]
    for action in command._actions:
        if action.required and action.dest == "config" and getattr(args, "config", None) is None:
            command.error("the config file is missing: -c/--config FILE (-c COLUMN picks a column)")


def _main(argv: Sequence[str] | None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser, modules = build_parser(arguments)
    args = parser.parse_args(arguments)
    _require_config(parser, args)
    try:
        try:
            return modules[args.command].run(args)
        except BaseExceptionGroup as group:
            if group.subgroup(BrokenPipeError) is not None:
                raise BrokenPipeError from None
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
