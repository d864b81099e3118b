"""Fan-out in the engine, in-process against emulators: a source read once for several targets,
a target that fails mid-upload while the others go on, and where its retry gets the bytes
(the source again, or the spool).  Every check reads the clouds and the journal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.engine.helpers import (
    DST,
    JOB,
    SRC,
    TARGETS,
    MiB,
    copies,
    copy_problems,
    emulator_fixture,
    journal_problems,
    seed_many,
)
from tests.fanout.helpers import (
    Cloud,
    copy_problems_in,
    job_toml,
    new_far_emulator,
    run_job,
    same_bytes,
    served,
    spool_files,
    uploads,
    write_config,
)
from transfer.emulator import Emulator
from transfer.journal.sqlite import SqliteJournal

emu = emulator_fixture(seed=21)


@pytest.fixture
async def far() -> AsyncIterator[Emulator]:
    async with new_far_emulator() as emulator:
        yield emulator


@pytest.mark.parametrize("verify", ["auto", "full"])
async def test_two_targets_read_each_source_once_and_both_verify(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path, verify: str
) -> None:
    sizes = [5 * MiB + 3, 0, 2 * MiB, 777]
    sources = await seed_many(emu, sizes)
    clouds = {"src": Cloud(emu, SRC), "dst": Cloud(emu, DST)}
    targets = [(t.key.split("/")[0], t.region) for t in TARGETS]
    config = write_config(tmp_path, clouds, job_toml(targets, verify=verify))

    summary = await run_job(config, clouds)

    assert summary.failed == [], [r.error for r in summary.failed]
    assert served(emu) == sum(sizes)  # one read per image, whatever the number of targets
    assert await copy_problems(emu, http, sources) == []
    assert await journal_problems(tmp_path, sources) == []
    if verify == "full":
        # The bytes were hashed once, in flight, and each target was proven against them.
        assert all(r.md5 and r.sha512 for r in summary.results), summary.results
    async with SqliteJournal(tmp_path / "journal.db") as journal:
        for source_id, size in zip(sources, sizes, strict=True):
            for target in TARGETS:
                steps = await journal.steps(JOB, source_id, target.key)
                [upload] = [s for s in steps if s.step == "upload"]
                assert upload.ok and upload.detail["bytes"] == size
                assert upload.detail["from"] == "shared"

    again = await run_job(config, clouds)
    assert [r.outcome for r in again.results] == ["in-sync"] * len(sizes) * 2
    assert served(emu) == sum(sizes)


@pytest.mark.parametrize(
    ("spool", "reads", "retry_from"),
    [("off", 2, "source"), ("auto", 2, "spool"), ("always", 1, "spool")],
)
async def test_a_target_failing_mid_upload_retries_alone(
    emu: Emulator,
    far: Emulator,
    tmp_path: Path,
    spool: str,
    reads: int,
    retry_from: str,
) -> None:
    size = 6 * MiB + 11
    [source] = await seed_many(emu, [size])
    clouds = {"src": Cloud(emu, SRC), "far": Cloud(far, DST)}
    config = write_config(tmp_path, clouds, job_toml([("src", "KR2"), ("far", "JP1")], spool=spool))
    # Only the far region drops an upload, once, a sixth of the way in.
    far.set_faults(drop_upload_after=MiB, drops_remaining=1)

    summary = await run_job(config, clouds)

    assert far.faults.drops_remaining == 0  # the far upload was cut
    assert summary.failed == [], [r.error for r in summary.failed]
    by_target = {r.target_key: r for r in summary.results}
    assert by_target["src/KR2"].attempts == 1  # the healthy target never started again
    assert by_target["far/JP1"].attempts == 2
    assert uploads(emu, "KR2") == 1 and uploads(far, "JP1") == 2
    assert served(emu) == reads * size
    # Both copies are exact, and the journal tells each target's own story.
    [near_copy] = copies(emu, "KR2", SRC.tenant_id)[source]
    assert same_bytes(emu, "KR2", near_copy["id"], emu, source)
    assert copy_problems_in(emu, far, "JP1", [source]) == []
    [far_copy] = copies(far, "JP1", DST.tenant_id)[source]
    assert same_bytes(far, "JP1", far_copy["id"], emu, source)
    async with SqliteJournal(tmp_path / "journal.db") as journal:
        entries = await journal.entries(JOB)
        assert {key: e.state for key, e in entries.items()} == {
            (source, "src/KR2"): "done",
            (source, "far/JP1"): "done",
        }
        near = [s for s in await journal.steps(JOB, source, "src/KR2") if s.step == "upload"]
        far_steps = [s for s in await journal.steps(JOB, source, "far/JP1") if s.step == "upload"]
    assert [s.ok for s in near] == [True]
    assert [s.ok for s in far_steps] == [False, True]
    assert far_steps[1].detail["from"] == retry_from
    first_from = "spool" if spool == "always" else "shared"
    assert near[0].detail["from"] == first_from
    # The spool served its purpose: nothing is left on disk.
    assert spool_files(tmp_path / "spool") == []


async def test_a_source_refusing_downloads_fails_every_target_without_uploads(
    emu: Emulator, tmp_path: Path
) -> None:
    good = await seed_many(emu, [MiB])
    refused = await emu.seed_image(
        "KR1", SRC.tenant_id, size=MiB, fill_seed=9, name="no", nhncloud_allow_download="false"
    )
    clouds = {"src": Cloud(emu, SRC), "dst": Cloud(emu, DST)}
    targets = [(t.key.split("/")[0], t.region) for t in TARGETS]
    config = write_config(tmp_path, clouds, job_toml(targets, retries=2))

    summary = await run_job(config, clouds)

    failed = {(r.source_id, r.target_key) for r in summary.failed}
    assert failed == {(refused, t.key) for t in TARGETS}
    assert all("403" in (r.error or "") for r in summary.failed)
    # No upload of the refused image was even started: one per good copy only.
    assert uploads(emu, "KR1") + uploads(emu, "KR2") == len(TARGETS)
    assert await journal_problems(tmp_path, good) == []
