"""Nightly replication as operators run it: drift, prune, the overlap lock, bandwidth limits,
deadlines, the JSON report and the metrics file.  Real CLI processes against the emulator."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import token
from tests.emulator.helpers import Api
from tests.engine.helpers import (
    DST,
    JOB,
    OUTSIDER,
    PARTNER,
    SRC,
    TARGETS,
    MiB,
    cli,
    copies,
    copy_problems,
    emulator_fixture,
    environment,
    finish,
    job_toml,
    journal_problems,
    members_of,
    received,
    seed_many,
    share,
    start_cli,
    write_config,
)
from transfer.cloud.sessions import open_clouds
from transfer.config.loader import load_config
from transfer.emulator import Emulator
from transfer.engine.planning import build_plan
from transfer.engine.runner import run_plan
from transfer.journal.sqlite import SqliteJournal
from transfer.streams import TokenBucket

emu = emulator_fixture(seed=5)


async def src_api(emu: Emulator, http: aiohttp.ClientSession) -> Api:
    return Api(http, emu.regions["KR1"], await token(emu, SRC, http))


async def test_metadata_drift_is_propagated_without_moving_bytes(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ids = await seed_many(emu, [MiB, 2 * MiB])
    config = write_config(tmp_path, emu, job_toml())
    assert (await cli("run", "-c", str(config), "--no-progress", env=environment())).code == 0
    before = received(emu)

    api = await src_api(emu, http)
    reply = await api.call(
        "PATCH",
        f"/v2/images/{ids[0]}",
        json=[{"op": "add", "path": "/build", "value": "night-2"}],
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
    )
    assert reply.status == 200, reply.body
    assert (await api.call("PUT", f"/v2/images/{ids[1]}/tags/fresh")).status == 204

    plan = await cli("plan", "-c", str(config), env=environment())
    assert re.search(r"^\* src/KR2 img-00 .*build", plan.out, re.M), plan.out
    assert re.search(r"^\* dst/KR1 img-01 .*tag 'fresh'", plan.out, re.M), plan.out

    run = await cli("run", "-c", str(config), "--no-progress", env=environment())
    assert run.code == 0, run.err
    assert received(emu) == before  # metadata only: not one byte uploaded again
    assert await copy_problems(emu, http, ids) == []
    for owner, region in ((SRC, "KR2"), (DST, "KR1")):
        copied = copies(emu, region, owner.tenant_id)
        assert copied[ids[0]][0]["build"] == "night-2"
        assert "fresh" in copied[ids[1]][0]["tags"]


async def test_prune_deletes_only_this_jobs_unprotected_orphans_and_obeys_max_delete(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    keep, gone, locked = await seed_many(emu, [MiB, MiB, MiB])
    api = await src_api(emu, http)
    patch = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
    protect = [{"op": "replace", "path": "/protected", "value": True}]
    assert (
        await api.call("PATCH", f"/v2/images/{locked}", json=protect, headers=patch)
    ).status == 200
    # An image in the target tenant that this tool did not make.
    bystander = await emu.seed_image("KR2", SRC.tenant_id, data=b"mine", name="img-01")
    config = write_config(tmp_path, emu, job_toml())
    assert (await cli("run", "-c", str(config), "--no-progress", env=environment())).code == 0

    assert (await api.call("DELETE", f"/v2/images/{gone}")).status == 204
    unprotect = [{"op": "replace", "path": "/protected", "value": False}]
    assert (
        await api.call("PATCH", f"/v2/images/{locked}", json=unprotect, headers=patch)
    ).status == 200
    assert (await api.call("DELETE", f"/v2/images/{locked}")).status == 204

    plan = await cli("plan", "-c", str(config), env=environment())
    assert len(re.findall(r"^- ", plan.out, re.M)) == 4, plan.out  # 2 sources x 2 targets

    # Two unprotected orphans (gone's copies) but only one allowed: nothing is deleted.
    refused = await cli(
        "run",
        "-c",
        str(config),
        "--no-progress",
        "--prune",
        "--max-delete",
        "1",
        env=environment(),
    )
    assert refused.code == 1 and "more than max_delete 1; nothing was deleted" in refused.err
    for owner, region in ((SRC, "KR2"), (DST, "KR1")):
        assert set(copies(emu, region, owner.tenant_id)) == {keep, gone, locked}

    pruned = await cli("run", "-c", str(config), "--no-progress", "--prune", env=environment())
    assert pruned.code == 0, pruned.err
    assert "pruned 2 target images" in pruned.out
    for owner, region in ((SRC, "KR2"), (DST, "KR1")):
        left = copies(emu, region, owner.tenant_id)
        assert set(left) == {keep, locked}  # the protected copies stay
        assert left[locked][0]["protected"] is True
    assert emu.image_record("KR2", bystander)["status"] == "active"  # never someone else's


async def test_a_second_run_of_a_live_job_is_refused(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ids = await seed_many(emu, [4 * MiB, 4 * MiB])
    emu.set_faults(bandwidth=2 * MiB)  # the first run lasts a few seconds
    config = write_config(tmp_path, emu, job_toml())
    first = await start_cli("run", "-c", str(config), "--no-progress", env=environment())
    try:
        for _ in range(200):  # until the first run holds the lock (it has begun uploading)
            if received(emu) > 0:
                break
            await asyncio.sleep(0.05)
        second = await cli("run", "-c", str(config), "--no-progress", env=environment())
        assert second.code == 3
        assert f"job '{JOB}' is already running (pid {first.pid}" in second.err
        assert "Traceback" not in second.err
    finally:
        emu.set_faults(bandwidth=None)
        done = await finish(first, within=120)
    assert done.code == 0, done.err
    assert await copy_problems(emu, http, ids) == []


async def test_bwlimit_holds_the_average_rate_near_the_cap(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_many(emu, [6 * MiB, 6 * MiB, 6 * MiB, 6 * MiB])
    config_path = write_config(tmp_path, emu, job_toml(targets=(("src", "KR2"),), transfers=4))
    for name, value in environment().items():
        monkeypatch.setenv(name, value)
    config = load_config(config_path)
    job = config.jobs[JOB]
    cap = 6 * MiB  # about four seconds of transfer: fixed costs (journal fsyncs) amortised
    async with SqliteJournal(config.journal.path) as journal, open_clouds(config) as clouds:
        plan = await build_plan(config, job, clouds, journal)
        started = time.monotonic()
        summary = await run_plan(plan, journal=journal, bucket=TokenBucket(cap))
        elapsed = time.monotonic() - started
    assert summary.bytes == 24 * MiB and not summary.failed
    rate = summary.bytes / elapsed
    assert 0.9 * cap <= rate <= 1.1 * cap, f"{rate / MiB:.2f} MiB/s against a 6 MiB/s cap"


async def test_a_deadline_stops_new_images_and_the_next_run_finishes(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ids = await seed_many(emu, [2 * MiB] * 6)
    emu.set_faults(bandwidth=2 * MiB)
    config = write_config(tmp_path, emu, job_toml(targets=(("src", "KR2"),), transfers=1))
    report = tmp_path / "report.json"
    first = await cli(
        "run",
        "-c",
        str(config),
        "--no-progress",
        "--max-duration",
        "1.5s",
        "--report",
        str(report),
        env=environment(),
        within=120,
    )
    assert first.code == 5, first.err
    assert "max duration reached" in first.err
    data = json.loads(report.read_text())
    assert data["deadline_reached"] is True and data["not_started"] >= 1
    assert data["counts"]["copied"] + data["not_started"] == len(ids)
    assert "images left for the next run" in first.out

    emu.set_faults(bandwidth=None)
    second = await cli("run", "-c", str(config), "--no-progress", env=environment())
    assert second.code == 0, second.err
    only_kr2 = tuple(t for t in TARGETS if t.key == "src/KR2")
    assert await copy_problems(emu, http, ids, targets=only_kr2) == []
    assert await journal_problems(tmp_path, ids, only_kr2) == []


_METRIC_LINE = re.compile(r'^[a-z_]+\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)+\} [0-9.e+-]+$')


async def test_the_report_and_the_metrics_match_what_happened(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ids = await seed_many(emu, [MiB, 2 * MiB, 0])
    config = write_config(tmp_path, emu, job_toml())
    report, metrics = tmp_path / "report.json", tmp_path / "image_transfer.prom"
    run = await cli(
        "run",
        "-c",
        str(config),
        "--no-progress",
        "--report",
        str(report),
        "--metrics-file",
        str(metrics),
        env=environment(),
    )
    assert run.code == 0, run.err
    data = json.loads(report.read_text())
    assert data["outcome"] == "ok" and data["counts"]["copied"] == 6
    assert data["bytes"] == 2 * (3 * MiB)
    by_pair = {(i["source_id"], i["target"]): i for i in data["items"]}
    assert set(by_pair) == {(i, t) for i in ids for t in ("src/KR2", "dst/KR1")}
    for (source_id, target), item in by_pair.items():
        owner, region = (SRC, "KR2") if target == "src/KR2" else (DST, "KR1")
        [copy] = copies(emu, region, owner.tenant_id)[source_id]
        assert item["target_id"] == copy["id"] and item["outcome"] == "copied"

    text = metrics.read_text()
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert samples and all(_METRIC_LINE.match(line) for line in samples), text
    assert f'image_transfer_images{{job="{JOB}",outcome="copied"}} 6' in samples
    assert f'image_transfer_bytes{{job="{JOB}"}} {6 * MiB}' in samples
    assert f'image_transfer_last_run_success{{job="{JOB}"}} 1' in samples
    stamp = next(s for s in samples if s.startswith("image_transfer_last_success"))
    assert abs(float(stamp.rsplit(" ", 1)[1]) - time.time()) < 120


async def test_a_night_with_no_change_only_lists(emu: Emulator, tmp_path: Path) -> None:
    await seed_many(emu, [1024] * 120)
    config = write_config(tmp_path, emu, job_toml())
    assert (await cli("run", "-c", str(config), "--no-progress", env=environment())).code == 0
    emu.reset_counters()
    second = await cli("run", "-c", str(config), "--no-progress", env=environment())
    assert second.code == 0, second.err
    assert "240 in-sync" in second.out
    used: dict[str, int] = {}
    for region in ("KR1", "KR2"):
        for route, count in emu.counters(region)["requests"].items():
            used[route] = used.get(route, 0) + count
    # Listing both sides is the whole cost of a night without changes: no per-image call.
    assert set(used) <= {"list"}, used
    assert used["list"] <= 6, used


async def test_member_drift_is_propagated(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    [image] = await seed_many(emu, [MiB], shared=[0])
    await share(emu, http, image, [PARTNER])
    config = write_config(tmp_path, emu, job_toml(targets=(("src", "KR2"),)))
    assert (await cli("run", "-c", str(config), "--no-progress", env=environment())).code == 0
    [copy] = copies(emu, "KR2", SRC.tenant_id)[image]
    assert await members_of(emu, http, "KR2", SRC, copy["id"]) == {PARTNER.tenant_id: "accepted"}

    # The owner shares with one more tenant and stops sharing with the partner.
    await share(emu, http, image, [OUTSIDER])
    api = await src_api(emu, http)
    reply = await api.call("DELETE", f"/v2/images/{image}/members/{PARTNER.tenant_id}")
    assert reply.status == 204, reply.body
    before = received(emu)
    run = await cli("run", "-c", str(config), "--no-progress", env=environment())
    assert run.code == 0, run.err
    assert received(emu) == before
    assert await members_of(emu, http, "KR2", SRC, copy["id"]) == {OUTSIDER.tenant_id: "pending"}
