"""The man page, generated from the parser by argparse-manpage: ``make man`` runs
``python -m transfer.cli.manpage docs/image-transfer.1``.  The page is committed; a test
regenerates it and fails when an option changed without ``make man``.

argparse-manpage is a development tool (the ``test`` extra): only this module uses it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transfer import __version__
from transfer.cli.main import EXIT_MEANINGS, ExitCode, build_parser

#: The width the help is wrapped at, whatever the terminal (the page must not depend on it).
WIDTH = "80"
SUMMARY = "bulk transfer and migration of NHN Cloud (OpenStack Glance v2) images"


def _roff(text: str) -> str:
    """Plain text as roff: backslashes and hyphens escaped, no line read as a request."""
    lines = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _exit_status() -> str:
    rows = [f".TP\n.B {int(code)}\n{_roff(EXIT_MEANINGS[code])}" for code in sorted(set(ExitCode))]
    return "\n".join(rows)


def _examples(parser: argparse.ArgumentParser) -> str:
    """Every command's examples (its epilog), then the top level's, as they print in --help."""
    blocks = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                epilog = command.epilog or ""
                if epilog.startswith("examples:\n"):
                    blocks.append(f".SS {name}\n.nf\n{_roff(epilog.partition(chr(10))[2])}\n.fi")
    top = (parser.epilog or "").partition("examples:\n")[2]
    if top:
        blocks.insert(0, f".nf\n{_roff(top)}\n.fi")
    return "\n".join(blocks)


@contextmanager
def _columns(width: str) -> Iterator[None]:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def render() -> str:
    """The page's roff text (the same for the same parser: no date but the version's)."""
    from argparse_manpage.manpage import Manpage

    with _columns(WIDTH):
        parser, _ = build_parser(None)
        page = Manpage(
            parser,
            _data={
                "project_name": "image-transfer",
                "version": __version__,
                "date": f"version {__version__}",
                "manual_title": "image-transfer manual",
                "manual_section": 1,
                "description": SUMMARY,
            },
            format="pretty",
        )
        # The exit codes and the examples as sections of their own, their lines kept (the
        # library would fill the top-level epilog into one paragraph).
        page.add_section("exit status", "=", _exit_status())
        page.add_section("examples", "=", _examples(parser))
        parser.epilog = None
        text: str = str(page)
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m transfer.cli.manpage OUTPUT", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
