"""The help a user reads: every option explained, every command's help ending with examples,
the exit codes at the top level; and the shell completion script built from the same parser."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from transfer.cli.main import COMMANDS, EXIT_MEANINGS, ExitCode, build_parser

REPO = Path(__file__).resolve().parents[2]


def _children(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _every_parser(
    parser: argparse.ArgumentParser, path: str = "image-transfer"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for name, child in _children(parser):
        yield from _every_parser(child, f"{path} {name}")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transfer", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_option_of_every_command_and_subcommand_has_help() -> None:
    parser, _ = build_parser(None)
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, each in _every_parser(parser)
        for action in each._actions
        if not isinstance(action, argparse._SubParsersAction)
        and action.help != argparse.SUPPRESS
        and not (action.help or "").strip()
    ]
    assert missing == [], "options without help:\n" + "\n".join(missing)


def test_every_command_has_examples_for_the_end_of_its_help() -> None:
    parser, _ = build_parser(None)
    commands = dict(_children(parser))
    assert set(commands) == set(COMMANDS)
    without = [
        name
        for name, command in commands.items()
        if not (command.epilog or "").startswith("examples:\n  ")
    ]
    assert without == [], f"commands whose epilog does not start with examples: {without}"


def test_the_examples_keep_their_lines_in_the_printed_help() -> None:
    done = _cli("emulator", "--help")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("examples:")
    examples = lines[start + 1 :]
    assert len(examples) >= 3
    assert all(
        line.startswith("  image-transfer ") or line.startswith("  curl ") for line in examples
    )


def test_the_top_level_help_lists_every_exit_code_with_its_meaning() -> None:
    done = _cli("--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    table = text[text.index("exit codes:") :]
    for code in set(ExitCode):
        line = next(
            (row for row in table.splitlines() if row.split()[:1] == [str(int(code))]), None
        )
        assert line is not None, f"exit code {int(code)} is not in --help"
        assert EXIT_MEANINGS[code] in line
    assert "examples:\n  image-transfer " in text


@pytest.fixture(scope="module")
def bash_script() -> str:
    done = _cli("completion", "bash")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_bash_completion_script_is_valid_bash(bash_script: str, tmp_path: Path) -> None:
    script = tmp_path / "image-transfer.bash"
    script.write_text(bash_script)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def _complete(script: Path, words: list[str]) -> list[str]:
    """What bash completes for the command line ``words`` (the last one being typed)."""
    line = " ".join(words)
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({line})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        f'COMP_LINE="{line}"\nCOMP_POINT=${{#COMP_LINE}}\n'
        "_shtab_image_transfer image-transfer\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "-c", program],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(script.parent)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_the_commands_subcommands_and_options(
    bash_script: str, tmp_path: Path
) -> None:
    script = tmp_path / "image-transfer.bash"
    script.write_text(bash_script)
    assert set(_complete(script, ["image-transfer", "''"])) >= set(COMMANDS)
    assert _complete(script, ["image-transfer", "em"]) == ["emulator"]
    assert "list" in _complete(script, ["image-transfer", "images", "''"])
    assert "--write-config" in _complete(script, ["image-transfer", "emulator", "--wr"])


def test_zsh_gets_a_script_too_and_a_wrong_shell_is_a_usage_error() -> None:
    zsh = _cli("completion", "zsh")
    assert zsh.returncode == 0, zsh.stderr
    assert zsh.stdout.startswith("#compdef image-transfer")
    assert "emulator" in zsh.stdout
    wrong = _cli("completion", "fish")
    assert wrong.returncode == ExitCode.USAGE
    assert "invalid choice: 'fish'" in wrong.stderr
    assert "Traceback" not in wrong.stderr
