"""Spooling as a user meets it: separate ``image-transfer run`` processes that resume a spooled
download cut again and again, the disk-space check, ``--clean``; the emulator runs in this
process and every check reads the clouds, the journal and the spool directory."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import aiohttp

from tests.engine.helpers import (
    JOB,
    TARGETS,
    MiB,
    cli,
    copies,
    copy_problems,
    emulator_fixture,
    environment,
    job_toml,
    journal_problems,
    received,
    seed_many,
    write_config,
)
from tests.fanout.helpers import mode, same_bytes, served, spool_files
from transfer.config.settings import SPOOL_RESERVE_ENV as RESERVE_ENV
from transfer.emulator import Emulator
from transfer.journal.records import SpoolRecord
from transfer.journal.sqlite import SqliteJournal

RETRYABLE = 4  # exit code: some images failed, every failure transient


emu = emulator_fixture(seed=31)


async def spool_records(config_dir: Path) -> list[SpoolRecord]:
    async with SqliteJournal(config_dir / "journal.db") as journal:
        return await journal.spools(JOB)


async def test_a_spooled_download_cut_again_and_again_resumes_across_runs(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    size = 10 * MiB + 5
    cut = 3 * MiB
    [source] = await seed_many(emu, [size])
    config = write_config(tmp_path, emu, job_toml(retries=1, extra='spool = "always"\n'))
    args = ("run", "-c", str(config), "--no-progress")
    spool_dir = tmp_path / "spool"
    emu.set_faults(drop_download_after=cut)  # every download body stops after 3 MiB

    offsets = []
    for run in range(3):
        result = await cli(*args, env=environment())
        assert result.code == RETRYABLE, result.out + result.err
        # The journal and the disk agree on what arrived.
        [record] = await spool_records(tmp_path)
        [path] = spool_files(spool_dir)
        assert (record.source_id, record.complete, record.path) == (source, False, str(path))
        assert path.stat().st_size == record.bytes_done
        offsets.append(record.bytes_done)
        assert mode(path) == 0o600 and mode(path.parent) == 0o700 and mode(spool_dir) == 0o700
        assert received(emu) == 0  # no upload starts before the spool is whole
        if run == 1:
            # Bytes on disk beyond what the journal vouches for are not trusted.
            with path.open("ab") as handle:
                handle.write(b"not from the source" * 1000)
    # One request brings at most `cut` bytes: more than that on disk means the runs resumed.
    assert 0 < offsets[0] < offsets[1] < offsets[2] < size and offsets[2] > cut, offsets
    emu.set_faults(drop_download_after=None)
    before = served(emu)

    result = await cli(*args, env=environment())

    assert result.code == 0, result.out + result.err
    assert served(emu) - before == size - offsets[2]  # only the rest was asked for (Range)
    assert await copy_problems(emu, http, [source]) == []
    assert await journal_problems(tmp_path, [source]) == []
    for target in TARGETS:
        [copy] = copies(emu, target.region, target.owner.tenant_id)[source]
        assert same_bytes(emu, target.region, copy["id"], emu, source)
    assert spool_files(spool_dir) == [] and await spool_records(tmp_path) == []


async def test_a_spool_file_shorter_than_the_journal_says_is_read_again(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    size = 4 * MiB + 1
    [source] = await seed_many(emu, [size])
    config = write_config(
        tmp_path, emu, job_toml(targets=[("dst", "KR1")], retries=1, extra='spool = "always"\n')
    )
    args = ("run", "-c", str(config), "--no-progress")
    emu.set_faults(drop_download_after=3 * MiB, drops_remaining=1)
    assert (await cli(*args, env=environment())).code == RETRYABLE
    [path] = spool_files(tmp_path / "spool")
    [record] = await spool_records(tmp_path)
    assert record.bytes_done > 0
    with path.open("r+b") as handle:  # the disk lost some of what the journal recorded
        handle.truncate(record.bytes_done // 2)

    result = await cli(*args, env=environment())

    assert result.code == 0, result.out + result.err
    assert served(emu) == 3 * MiB + size  # started over: the file could not be trusted
    assert await copy_problems(emu, http, [source], TARGETS[1:]) == []


async def test_too_little_disk_space_fails_clearly_and_auto_streams_instead(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources = await seed_many(emu, [2 * MiB, MiB])
    always = job_toml(retries=2, extra='spool = "always"\n')
    config = write_config(tmp_path, emu, always)
    # Keep a petabyte free: no disk here can take the spool.
    env = {**environment(), RESERVE_ENV: "1P"}

    result = await cli("run", "-c", str(config), "--no-progress", env=env)

    assert result.code == 1, result.out + result.err  # not worth retrying until space is freed
    assert "Traceback" not in result.err
    # One failed row per image and target, each saying why in full below the table.
    rows = re.findall(r"^\+ +failed +img-\d+ .*not enough disk space to spool", result.out, re.M)
    assert len(rows) == 2 * len(TARGETS), result.out
    assert result.out.count(f"kept free ({RESERVE_ENV})") == 2 * len(TARGETS), result.out
    assert f"kept free ({RESERVE_ENV})" in result.err
    assert served(emu) == 0 and received(emu) == 0  # nothing downloaded, nothing half-filled
    assert spool_files(tmp_path / "spool") == []
    assert await copy_problems(emu, http, sources) == [
        f"{t.key} {name}: 0 copies, expected one: []"
        for t in TARGETS
        for name in ("img-00", "img-01")
    ]

    # auto would spool these images (an earlier run failed them) but streams when space lacks.
    write_config(tmp_path, emu, always.replace('spool = "always"', 'spool = "auto"'))
    again = await cli("run", "-c", str(config), "--no-progress", env=env)

    assert again.code == 0, again.out + again.err
    assert "not spooling: streaming instead" in again.err
    assert served(emu) == 3 * MiB  # streamed, and still once per image for both targets
    assert await copy_problems(emu, http, sources) == []
    assert spool_files(tmp_path / "spool") == []

    bad = await cli("run", "-c", str(config), env={**environment(), RESERVE_ENV: "lots"})
    assert bad.code == 2 and f"{RESERVE_ENV}: expected a size like 500M" in bad.err, bad.err


async def test_clean_removes_the_spool_kept_for_a_failed_image(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    size = 3 * MiB
    [source] = await seed_many(emu, [size])
    config = write_config(
        tmp_path, emu, job_toml(targets=[("dst", "KR1")], retries=1, extra='spool = "always"\n')
    )
    args = ("run", "-c", str(config), "--no-progress")
    emu.set_faults(drop_download_after=MiB)

    assert (await cli(*args, env=environment())).code == RETRYABLE
    assert len(spool_files(tmp_path / "spool")) == 1  # kept: the next run resumes it

    cleaned = await cli(*args, "--clean", env=environment())

    assert cleaned.code == RETRYABLE, cleaned.out + cleaned.err
    assert not (tmp_path / "spool" / JOB).exists()
    assert await spool_records(tmp_path) == []
    emu.set_faults(drop_download_after=None)
    assert (await cli(*args, env=environment())).code == 0
    assert served(emu) == MiB + MiB + size  # the cleaned spool was not there to resume
    assert await copy_problems(emu, http, [source], TARGETS[1:]) == []
    assert not (tmp_path / "spool" / JOB).exists()
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM spools").fetchone() == (0,)
