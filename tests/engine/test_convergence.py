"""Runs that converge: an image's attempts are spaced by the job's backoff (at least any
``Retry-After``), its transfer slot serves another image meanwhile, and a target that Glance is
still settling (``saving``) is waited out and adopted rather than replaced.  Real child
processes against the emulator in this process; what counts is read from the clouds and the
journal file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from tests.conftest import token
from tests.emulator.helpers import Api
from tests.engine.helpers import (
    DST,
    JOB,
    TARGETS,
    MiB,
    cli,
    copies,
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
from transfer.journal.sqlite import SqliteJournal
from transfer.metadata import target_image_id

emu = emulator_fixture(seed=15)
ONE_TARGET = [("dst", "KR1")]


async def test_attempts_wait_at_least_retry_after_and_the_slot_serves_another_image(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ids = await seed_many(emu, [MiB, MiB])
    job = job_toml(targets=ONE_TARGET, transfers=1, retries=3, retry_backoff="0.01s..0.05s")
    config = write_config(tmp_path, emu, job)
    # The first upload fails with a 503 asking for 1.5 s.  A streamed upload cannot be resent by
    # the client, so the image needs another attempt, and it must wait that long for it.
    emu.set_faults(error_rate=1.0, error_routes={"upload"}, errors_remaining=1, retry_after=1.5)
    report = tmp_path / "report.json"
    result = await cli(
        "run", "-c", str(config), "--no-progress", "--report", str(report), env=environment()
    )
    assert result.code == 0, result.out + result.err
    dst = [t for t in TARGETS if t.key == "dst/KR1"]
    assert await copy_problems(emu, http, ids, targets=dst) == []
    items = {i["source_id"]: i for i in json.loads(report.read_text())["items"]}
    [retried] = [i for i in items.values() if i["attempts"] == 2]
    [other] = [i for i in items.values() if i is not retried]
    assert retried["waited"] >= 1.5 and other["attempts"] == 1 and other["waited"] == 0
    # With one transfer slot, the other image was copied while the first one waited.
    async with SqliteJournal(tmp_path / "journal.db") as journal:
        retried_steps = await journal.steps(JOB, retried["source_id"], "dst/KR1")
        other_steps = await journal.steps(JOB, other["source_id"], "dst/KR1")
    uploads = [s for s in retried_steps if s.step == "upload"]
    assert [s.ok for s in uploads] == [False, True]
    [other_upload] = [s for s in other_steps if s.step == "upload"]
    assert uploads[0].finished_at is not None and other_upload.finished_at is not None
    assert uploads[0].finished_at <= other_upload.started_at
    assert other_upload.finished_at <= uploads[1].started_at


async def test_a_target_glance_is_still_saving_is_waited_out_and_adopted(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    [source_id] = await seed_many(emu, [MiB])
    source = emu.image_record("KR1", source_id)
    config = write_config(tmp_path, emu, job_toml(targets=ONE_TARGET))
    # An earlier run's target, which Glance is still finishing: the deterministic id, saving.
    target_id = target_image_id(JOB, "KR1", source_id, source["checksum"], "dst/KR1", 0)
    api = Api(http, emu.regions["KR1"], await token(emu, DST, http))
    made = await api.call(
        "POST",
        "/v2/images",
        json={
            "id": target_id,
            "name": source["name"],
            "disk_format": "raw",
            "os_type": "linux",
            "container_format": "bare",
        },
    )
    assert made.status == 201, made.body
    record = emu._service("KR1").store.get(target_id)
    assert record is not None
    record["status"] = "saving"

    run = await start_cli("run", "-c", str(config), "--no-progress", env=environment())
    await asyncio.sleep(1.5)
    assert emu.image_record("KR1", target_id)["status"] == "saving"  # it waited, not deleted
    record["status"] = "queued"  # Glance gives the interrupted upload up
    result = await finish(run, within=60)
    assert result.code == 0, result.out + result.err
    held = copies(emu, "KR1", DST.tenant_id)[source_id]
    assert [(r["id"], r["status"]) for r in held] == [(target_id, "active")]
    assert "deleted target" not in result.out + result.err
