"""A reader that goes away (``| head``) ends any command quietly: exit 141 (128 + SIGPIPE, what a
shell shows for a Unix tool killed by the closed pipe), nothing on stderr, no traceback.

The pipes are real: the child's stdout is a pipe whose read end is closed before the child
writes (deterministic: the child takes far longer to start than the parent to close it), or a
shell pipeline into ``head -0``.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.engine.helpers import (
    REPO,
    cli,
    environment,
    job_toml,
    new_emulator,
    seed_many,
    write_config,
)
from transfer.cli.main import ExitCode
from transfer.emulator import Emulator

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with new_emulator() as emulator:
        await seed_many(emulator, [1000, 2000, 3000])
        yield emulator


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def config(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config whose job has run once, so that ``status --images`` has lines to print."""
    path = write_config(tmp_path_factory.mktemp("pipes"), emu, job_toml())
    done = await cli("run", "-c", str(path), env=environment())
    assert done.code == 0, done.err
    return path


async def _into_closed_pipe(*args: str) -> tuple[int, str]:
    """``image-transfer ARGS`` with stdout a pipe nobody reads: its exit code and stderr."""
    read_end, write_end = os.pipe()
    env = {**os.environ, **environment()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transfer",
        *args,
        cwd=REPO,
        env=env,
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    os.close(read_end)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def _images_list(config: Path) -> tuple[str, ...]:
    return ("images", "-c", str(config), "--cloud", "src", "--region", "KR1", "list")


@pytest.mark.parametrize(
    "command",
    [
        ("--help",),
        ("emulator", "--help"),
        ("completion", "bash"),
        ("status", "-c", "{config}", "--images"),
        ("plan", "-c", "{config}"),
        ("verify", "-c", "{config}"),
    ],
    ids=lambda c: " ".join(c).replace(" -c {config}", ""),
)
async def test_a_closed_pipe_ends_the_command_quietly(
    config: Path, command: tuple[str, ...]
) -> None:
    args = [part.replace("{config}", str(config)) for part in command]
    code, err = await _into_closed_pipe(*args)
    assert err == ""
    assert code == ExitCode.BROKEN_PIPE


async def test_images_list_into_a_closed_pipe_says_nothing(config: Path) -> None:
    code, err = await _into_closed_pipe(*_images_list(config))
    assert err == ""
    assert code == ExitCode.BROKEN_PIPE


async def test_a_shell_pipeline_into_head(config: Path) -> None:
    """As a user types it: the pipeline's output is what head let through, stderr is empty."""
    command = shlex.join(
        [sys.executable, "-m", "transfer", "status", "-c", str(config), "--images"]
    )
    program = f'{command} | head -0; echo "exit ${{PIPESTATUS[0]}}"'
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        program,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert err.decode() == ""
    assert out.decode() == f"exit {int(ExitCode.BROKEN_PIPE)}\n"
