"""Interrupted runs of the real ``image-transfer run`` process: SIGKILL at random moments then
a resume, and SIGTERM, which finishes the images in flight and exits 130.  The emulator runs in
this process, slowed down so that the signals land while bytes are moving."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import aiohttp

from tests.engine.helpers import (
    JOB,
    TARGETS,
    MiB,
    copies,
    copy_problems,
    emulator_fixture,
    environment,
    job_toml,
    journal_entries,
    journal_problems,
    kill,
    received,
    seed_many,
    start_cli,
    write_config,
)
from transfer.emulator import Emulator
from transfer.journal.sqlite import SqliteJournal

# Bytes per second per connection: slow enough that a signal lands mid-upload.
BANDWIDTH = 20_000_000


emu = emulator_fixture(seed=11)


def uploads(emu: Emulator) -> int:
    """Upload requests every region has received so far."""
    return sum(int(emu.counters(r)["requests"].get("upload", 0)) for r in ("KR1", "KR2"))


async def wait_for_upload_bytes(
    emu: Emulator, proc: asyncio.subprocess.Process, since: int, within: float = 20.0
) -> None:
    """Return once ``proc`` is uploading: an upload request came in after this was called
    (a killed run's leftover body bytes, still read from the socket by the bandwidth-capped
    emulator, are no sign of the new run), and upload bytes beyond ``since``."""
    deadline = time.monotonic() + within
    requests_before = uploads(emu)
    while uploads(emu) <= requests_before or received(emu) <= since:
        if proc.returncode is not None:
            out, err = await proc.communicate()
            raise AssertionError(f"the run ended first:\n{out.decode()}\n{err.decode()}")
        assert time.monotonic() < deadline, "no upload started"
        await asyncio.sleep(0.01)


def half_made(emu: Emulator) -> list[str]:
    """Targets of the job that hold no finished data."""
    return [
        record["id"]
        for target in TARGETS
        for records in copies(emu, target.region, target.owner.tenant_id).values()
        for record in records
        if record["status"] != "active"
    ]


def duplicates(emu: Emulator) -> list[str]:
    return [
        f"{target.key} {source_id}: {len(records)} copies"
        for target in TARGETS
        for source_id, records in copies(emu, target.region, target.owner.tenant_id).items()
        if len(records) > 1
    ]


async def test_sigkill_at_random_moments_then_resume_leaves_exactly_one_copy_each(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    rng = random.Random(20240611)
    sizes = [rng.randrange(1 * MiB, 8 * MiB) for _ in range(12)]
    sources = await seed_many(emu, sizes, shared=[3])
    config = write_config(tmp_path, emu, job_toml(transfers=2))
    env = environment()
    emu.set_faults(bandwidth=BANDWIDTH)
    args = ("run", "-c", str(config), "--no-progress")

    kills_mid_upload = 0
    for round_ in range(4):
        proc = await start_cli(*args, env=env)
        await wait_for_upload_bytes(emu, proc, received(emu))
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        assert proc.returncode is None, f"round {round_}: the run finished before the kill"
        assert await kill(proc) == -signal.SIGKILL
        if half_made(emu):
            kills_mid_upload += 1
        assert duplicates(emu) == [], f"after kill {round_}"
    assert kills_mid_upload >= 2  # the kills did interrupt uploads, not just idle moments

    final = await start_cli(*args, env=env)
    out, err = await asyncio.wait_for(final.communicate(), 60)
    assert final.returncode == 0, out.decode() + err.decode()

    assert await copy_problems(emu, http, sources) == []
    assert await journal_problems(tmp_path, sources) == []
    async with SqliteJournal(tmp_path / "journal.db") as journal:
        runs = await journal.runs(JOB)
    assert len(runs) == 5
    assert [r.outcome for r in runs] == ["ok", None, None, None, None]  # newest first


async def test_sigterm_finishes_the_images_in_flight_and_exits_130(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources = await seed_many(emu, [4 * MiB] * 6)
    config = write_config(tmp_path, emu, job_toml(transfers=2))
    env = environment()
    emu.set_faults(bandwidth=BANDWIDTH)
    args = ("run", "-c", str(config), "--no-progress")

    proc = await start_cli(*args, env=env)
    await wait_for_upload_bytes(emu, proc, 0)
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 30)

    assert proc.returncode == 130, out.decode() + err.decode()
    assert "SIGTERM" in err.decode()
    assert "INTERRUPTED" in out.decode()
    # The images in flight were finished: nothing half-made, and some were not started.
    assert half_made(emu) == []
    assert duplicates(emu) == []
    entries = await journal_entries(tmp_path)
    pairs = len(sources) * len(TARGETS)
    assert 0 < len(entries) < pairs
    async with SqliteJournal(tmp_path / "journal.db") as journal:
        for (source_id, key), entry in entries.items():
            assert entry.state == "done", entry
            assert entry.last_step == "protect", entry
            steps = await journal.steps(JOB, source_id, key)
            assert steps and all(step.ok for step in steps), steps
    for target in TARGETS:
        done = [s for s in sources if (s, target.key) in entries]
        assert await copy_problems(emu, http, done, [target]) == []

    again = await start_cli(*args, env=env)
    out, err = await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 0, out.decode() + err.decode()
    assert await copy_problems(emu, http, sources) == []
    assert await journal_problems(tmp_path, sources) == []
