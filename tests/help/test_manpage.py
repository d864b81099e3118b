"""The man page: generated from the parser, committed as docs/image-transfer.1, kept current
(an option changed without ``make man`` fails here), and rendered by man without a warning."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from transfer.cli.main import COMMANDS, ExitCode
from transfer.cli.manpage import render

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "image-transfer.1"


def test_the_committed_man_page_is_the_one_the_parser_generates() -> None:
    assert PAGE.read_text() == render(), (
        "docs/image-transfer.1 is stale: an option or its help changed; run `make man`"
    )


@pytest.mark.parametrize("renderer", ["man", "groff"])
def test_the_man_page_renders_without_errors(renderer: str) -> None:
    if renderer == "man":
        argv = ["man", "--warnings", "-l", str(PAGE)]
    else:
        argv = ["groff", "-man", "-Tutf8", "-P", "-cbou", "-ww", str(PAGE)]
    assert shutil.which(argv[0]) is not None, f"{argv[0]} is not installed"
    env = {**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    text = done.stdout
    for name in COMMANDS:
        assert f"image-transfer {name}" in text
    status = text[text.index("EXIT STATUS") : text.index("EXAMPLES")]
    for code in set(ExitCode):
        assert f"\n       {int(code)} " in status
