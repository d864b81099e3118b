"""``image-transfer completion bash|zsh``: the shell completion script, written by shtab from
the whole parser (every command, subcommand and option), so it never drifts from the options.

Options that take a path (``type=Path``) complete file names; the rest complete their choices
or nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

SHELLS = ("bash", "zsh")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "shell", choices=SHELLS, help="the shell to write the script for: bash or zsh"
    )
    parser.epilog = (
        "examples:\n"
        "  image-transfer completion bash > ~/.local/share/bash-completion/completions/"
        "image-transfer\n"
        "  image-transfer completion zsh > ~/.zfunc/_image-transfer   # with fpath+=(~/.zfunc)\n"
        '  eval "$(image-transfer completion bash)"                   # this shell only'
    )


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _parsers(child)


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser`` for ``shell``."""
    import shtab  # only this command needs it

    for each in _parsers(parser):
        for action in each._actions:
            if action.type is Path and not hasattr(action, "complete"):
                action.complete = shtab.FILE  # type: ignore[attr-defined]
    text: str = shtab.complete(parser, shell=shell)
    return text


def run(args: argparse.Namespace) -> int:
    full_parser: Callable[[], argparse.ArgumentParser] = args.full_parser
    sys.stdout.write(script(full_parser(), args.shell))
    return 0
