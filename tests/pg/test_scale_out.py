"""Several `image-transfer run` workers on one job through a real PostgreSQL journal, against
the emulator: every image copied exactly once, the work spread, a killed worker's images taken
over after its leases run out."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import psycopg

from tests.engine.helpers import (
    SRC,
    TARGETS,
    MiB,
    copy_problems,
    emulator_fixture,
    environment,
    finish,
    job_toml,
    received,
    seed_many,
    start_cli,
    write_config,
)
from tests.pg.conftest import PgDatabase
from transfer.emulator import Emulator
from transfer.journal.postgres import PgJournal

emu = emulator_fixture(seed=21)


def pg_config(tmp_path: Path, emu: Emulator, db: PgDatabase, *, transfers: int = 2) -> Path:
    config = write_config(tmp_path, emu, job_toml(transfers=transfers))
    text = config.read_text().replace('path = "journal.db"', f'url = "{db.url}"')
    config.write_text(text)
    return config


async def start_worker(config: Path, worker: str, *options: str) -> asyncio.subprocess.Process:
    """``image-transfer run`` as worker ``worker`` of the job in ``config``."""
    args = ("-c", str(config), "--no-progress", "--worker-id", worker, *options)
    return await start_cli("run", *args, env=environment())


async def done_states(db: PgDatabase, job: str = "move") -> dict[str, int]:
    async with PgJournal(db.url) as journal:
        entries = await journal.entries(job)
    states: dict[str, int] = {}
    for entry in entries.values():
        states[entry.state] = states.get(entry.state, 0) + 1
    return states


async def test_three_workers_copy_every_image_exactly_once_and_share_the_work(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path, pg_db: PgDatabase
) -> None:
    ids = await seed_many(emu, [MiB // 2 + i * 4096 for i in range(30)])
    emu.set_faults(bandwidth=16 * MiB)  # long enough a run that all three take part
    config = pg_config(tmp_path, emu, pg_db)
    workers = [
        await start_worker(config, f"w{n}", "--report", str(tmp_path / f"w{n}.json"))
        for n in range(3)
    ]
    outcomes = [await finish(w, within=180) for w in workers]
    assert [o.code for o in outcomes] == [0, 0, 0], [o.err[-2000:] for o in outcomes]

    assert await copy_problems(emu, http, ids) == []  # exactly one faithful copy per target
    assert await done_states(pg_db) == {"done": 60}
    copied = {}
    for n in range(3):
        report = json.loads((tmp_path / f"w{n}.json").read_text())
        copied[n] = {
            (i["source_id"], i["target"]) for i in report["items"] if i["outcome"] == "copied"
        }
    assert all(copied.values()), {n: len(c) for n, c in copied.items()}  # everyone worked
    assert sum(len(c) for c in copied.values()) == 60  # and no pair was copied twice
    assert set().union(*copied.values()) == {(i, t.key) for i in ids for t in TARGETS}


async def open_steps(db: PgDatabase, worker: str, step: str | None = None) -> int:
    """How many steps (of one kind, or any) ``worker`` started and never finished, by the
    journal (0 before the first worker made the tables)."""
    try:
        [(count,)] = await asyncio.to_thread(
            db.execute,
            "SELECT COUNT(*) FROM steps s JOIN runs r ON r.id = s.run_id "
            "WHERE r.worker = %s AND s.finished_at IS NULL AND (%s::text IS NULL OR s.step = %s)",
            (worker, step, step),
        )
    except psycopg.errors.UndefinedTable:
        return 0
    return int(count)


async def test_a_killed_workers_images_are_taken_over_after_its_leases_expire(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path, pg_db: PgDatabase
) -> None:
    ids = await seed_many(emu, [2 * MiB] * 8)
    emu.set_faults(bandwidth=2 * MiB)  # slow enough that the victim is still busy when killed
    config = pg_config(tmp_path, emu, pg_db)
    lease = ("--lease-seconds", "3")
    victim = await start_worker(config, "victim", *lease)
    for _ in range(400):  # until the victim is uploading
        if received(emu) > 0:
            break
        await asyncio.sleep(0.05)
    survivors = [await start_worker(config, f"s{n}", *lease) for n in range(2)]
    await asyncio.sleep(0.5)
    for _ in range(500):  # killed inside a step: a kill between two images leaves nothing
        if await open_steps(pg_db, "victim"):
            break
        await asyncio.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    await victim.communicate()
    emu.set_faults(bandwidth=None)
    outcomes = [await finish(s, within=180) for s in survivors]
    assert [o.code for o in outcomes] == [0, 0], [o.err[-2000:] for o in outcomes]
    assert await copy_problems(emu, http, ids) == []  # no duplicate, nothing left half-made
    assert await done_states(pg_db) == {"done": 16}
    # The victim died inside some images' steps, and the survivors finished those very images
    # (done, above): with steps of their own, or, when their own listing found the copy
    # complete, by marking it done.
    assert await open_steps(pg_db, "victim") >= 1


async def test_a_worker_killed_inside_uploads_leaves_no_duplicate_and_no_queued_target(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path, pg_db: PgDatabase
) -> None:
    # The takeover's case: the victim created its targets and was sending their bytes.  The
    # survivors must upload into those very targets (the journal's ids), not make new ones.
    ids = await seed_many(emu, [3 * MiB // 2 + i * 4096 for i in range(10)])
    emu.set_faults(bandwidth=MiB)
    config = pg_config(tmp_path, emu, pg_db)
    lease = ("--lease-seconds", "3")
    # All three start together, so each lists the clouds before the targets exist.
    victim = await start_worker(config, "victim", *lease)
    survivors = [await start_worker(config, f"s{n}", *lease) for n in range(2)]
    for _ in range(1000):
        if await open_steps(pg_db, "victim", "upload") >= 2:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the victim never got inside an upload")
    victim.send_signal(signal.SIGKILL)
    await victim.communicate()
    emu.set_faults(bandwidth=4 * MiB)
    outcomes = [await finish(s, within=180) for s in survivors]
    assert [o.code for o in outcomes] == [0, 0], [o.err[-2000:] for o in outcomes]
    assert await copy_problems(emu, http, ids) == []
    assert await done_states(pg_db) == {"done": 20}


async def test_bad_lease_settings_are_a_usage_error_on_a_shared_journal_too(
    emu: Emulator, tmp_path: Path, pg_db: PgDatabase
) -> None:
    config = pg_config(tmp_path, emu, pg_db)
    for value in ("0", "-3", "nan"):
        proc = await start_worker(config, "w", f"--lease-seconds={value}")
        outcome = await finish(proc)
        assert outcome.code == 2, outcome
        assert outcome.err.strip() == (
            "image-transfer: config error: --lease-seconds: expected a positive number of "
            f"seconds, got {value}"
        )


async def test_every_worker_exits_1_when_an_image_of_the_job_failed_at_any_worker(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path, pg_db: PgDatabase
) -> None:
    good = await seed_many(emu, [MiB // 2] * 6)
    refused = await emu.seed_image(
        "KR1",
        SRC.tenant_id,
        size=MiB,
        fill_seed=9,
        name="no-download",
        nhncloud_allow_download="false",
    )
    emu.set_faults(bandwidth=4 * MiB)  # both workers take part
    config = pg_config(tmp_path, emu, pg_db)
    workers = [await start_worker(config, f"w{n}") for n in range(2)]
    outcomes = [await finish(w, within=120) for w in workers]
    # Whichever worker met the refusal, the job has failed images: neither says success.
    assert [o.code for o in outcomes] == [1, 1], [o.out + o.err[-1500:] for o in outcomes]
    assert sum("more failed at other workers" in o.out for o in outcomes) >= 1, outcomes
    assert await copy_problems(emu, http, [*good, refused]) == [
        f"{t.key} no-download: 0 copies, expected one: []" for t in TARGETS
    ]
    assert await done_states(pg_db) == {"done": 12, "failed": 2}
