"""A disk that fills up under the spool or the journal: the image (or the run) ends cleanly with
a clear error, nothing else is harmed, and a later run finishes.  Real small filesystems
(tmpfs), mounted by the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.engine.helpers import (
    TARGETS,
    MiB,
    cli,
    copy_problems,
    emulator_fixture,
    environment,
    finish,
    job_toml,
    seed_many,
    start_cli,
    write_config,
)
from transfer.emulator import Emulator


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a small tmpfs here: {mounted.stderr.strip()}"
        if os.environ.get("IMAGE_TRANSFER_REQUIRE_ALL_TESTS") == "1":
            pytest.fail(f"{reason} (IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1: not skipping)")
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


emu = emulator_fixture(seed=31)


async def test_a_disk_that_fills_up_under_a_spool_fails_the_image_cleanly(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ids = await seed_many(emu, [3 * MiB, MiB // 4])
    only_kr2 = tuple(t for t in TARGETS if t.key == "src/KR2")
    emu.set_faults(bandwidth=MiB)  # slow enough to fill the disk while the spool is written
    with small_filesystem(tmp_path / "spool", "4m") as spool:
        config = write_config(
            tmp_path,
            emu,
            job_toml(
                targets=(("src", "KR2"),),
                transfers=2,
                retries=1,
                extra=f'spool = "always"\nspool_dir = "{spool}"\n',
            ),
        )
        env = {**environment(), "IMAGE_TRANSFER_SPOOL_RESERVE": "0"}
        run = await start_cli("run", "-c", str(config), "--no-progress", env=env)
        for _ in range(400):  # until the big image's spool file is being written
            if any(p.stat().st_size > 0 for p in spool.rglob("*") if p.is_file()):
                break
            await asyncio.sleep(0.02)
        # Another program takes all the space left.
        filler = spool / "filler"
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
        first = await finish(run, within=120)
        assert first.code in (1, 4), first.err
        assert "Traceback" not in first.err
        assert "No space left on device" in first.out, first.out

        filler.unlink()  # the operator frees space: the next run finishes the image
        emu.set_faults(bandwidth=None)
        again = await cli("run", "-c", str(config), "--no-progress", env=env)
        assert again.code == 0, again.out + again.err
        assert await copy_problems(emu, http, ids, targets=only_kr2) == []


async def test_a_full_disk_under_the_journal_is_a_clear_error_and_loses_nothing(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ids = await seed_many(emu, [MiB, MiB // 2])
    only_kr2 = tuple(t for t in TARGETS if t.key == "src/KR2")
    with small_filesystem(tmp_path / "state", "2m") as state:
        config = write_config(state, emu, job_toml(targets=(("src", "KR2"),), retries=1))
        # A first look creates the journal; then another program takes all the space left.
        assert (await cli("plan", "-c", str(config), env=environment())).code == 0
        filler = state / "filler"
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)
        full = await cli("run", "-c", str(config), "--no-progress", env=environment())
        assert full.code != 0
        assert "Traceback" not in full.err
        said = full.out + full.err
        assert re.search(r"journal \S+journal\.db: .*\(is its disk full or read-only\?\)", said), (
            said
        )

        filler.unlink()
        again = await cli("run", "-c", str(config), "--no-progress", env=environment())
        assert again.code == 0, again.out + again.err
        assert await copy_problems(emu, http, ids, targets=only_kr2) == []
