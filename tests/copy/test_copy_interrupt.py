"""``copy`` killed with SIGKILL mid-upload, then run again with the same line: the same job
resumes, and a plain HTTP listing of each target shows exactly one active copy per source with
the source's checksums.  The emulator runs in this process, slowed down so that the kills land
while bytes are moving."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import aiohttp

from tests.copy.helpers import by_source, job_name, listing, run, start, write_clouds_yaml
from tests.engine.helpers import (
    DST,
    MARKER,
    SRC,
    MiB,
    Outcome,
    emulator_fixture,
    received,
    seed_many,
)
from tests.engine.test_interrupt import BANDWIDTH, wait_for_upload_bytes
from transfer.emulator import Emulator

emu = emulator_fixture(seed=23)


async def test_copy_killed_mid_upload_then_rerun_leaves_exactly_one_copy_each(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    rng = random.Random(18)
    sources = await seed_many(emu, [rng.randrange(1 * MiB, 6 * MiB) for _ in range(8)])
    write_clouds_yaml(tmp_path, emu)
    emu.set_faults(bandwidth=BANDWIDTH)
    line = ("copy", "nhn:KR1", "nhn:KR2", "other:KR1", "--include", "img-*", "--transfers", "2",
            "--no-progress")  # fmt: skip

    names = set()
    mid_upload = 0
    for round_ in range(3):
        proc = await start(tmp_path, *line)
        await wait_for_upload_bytes(emu, proc, received(emu))
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        assert proc.returncode is None, f"round {round_}: the copy finished before the kill"
        proc.send_signal(signal.SIGKILL)
        out, err = await proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        names.add(job_name(Outcome(proc.returncode, out.decode(), err.decode())))
        made = [*await listing(emu, http, "KR2", SRC), *await listing(emu, http, "KR1", DST)]
        mid_upload += any(i["status"] != "active" for i in made if MARKER in i)

    final = await run(tmp_path, *line)
    assert final.code == 0, final.out + final.err
    names.add(job_name(final))
    assert len(names) == 1  # every run of the line was the same job
    assert mid_upload >= 1  # a kill did land with a copy half made

    wanted = {
        image["id"]: (image["checksum"], image["os_hash_value"])
        for image in await listing(emu, http, "KR1", SRC)
        if image["id"] in sources
    }
    assert sorted(wanted) == sorted(sources)
    for region, tenant in (("KR2", SRC), ("KR1", DST)):
        held = by_source(await listing(emu, http, region, tenant))
        assert sorted(held) == sorted(sources), region
        for source_id, records in held.items():
            assert len(records) == 1, (region, source_id, [r["id"] for r in records])
            (copy,) = records
            assert copy["status"] == "active"
            assert (copy["checksum"], copy["os_hash_value"]) == wanted[source_id]
            assert copy["image_transfer_job"] in names
