"""``status`` that does not lie, the run report, and the metrics file, as a user meets them:
real ``image-transfer`` processes against the emulator, a real SQLite journal (PostgreSQL too
for the deadline stop)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import token
from tests.emulator.helpers import Api
from tests.engine.helpers import (
    SRC,
    MiB,
    Outcome,
    cli,
    emulator_fixture,
    environment,
    job_toml,
    received,
    seed_many,
    write_config,
)
from tests.pg.conftest import PgDatabase
from transfer.emulator import Emulator

emu = emulator_fixture(seed=18)
KiB = 1024
ONE_TARGET = (("dst", "KR1"),)


async def status(config: Path, *options: str) -> Outcome:
    return await cli("status", "-c", str(config), *options, env=environment())


async def run(config: Path, *options: str) -> Outcome:
    return await cli("run", "-c", str(config), "--no-progress", *options, env=environment())


def image_lines(outcome: Outcome, state: str) -> list[str]:
    return [line for line in outcome.out.splitlines() if line.strip().startswith(state + " ")]


async def test_status_exits_by_the_failed_images_and_names_the_step_that_failed(
    emu: Emulator, tmp_path: Path
) -> None:
    await seed_many(emu, [64 * KiB])
    config = write_config(tmp_path, emu, job_toml(targets=ONE_TARGET, retries=2))

    fresh = await status(config)
    assert fresh.code == 0, fresh.out + fresh.err
    unknown = await status(config, "--job", "nope")
    assert unknown.code == 2, unknown.out + unknown.err
    assert "nope" in unknown.err and "known jobs: move" in unknown.err
    assert "Traceback" not in unknown.err and unknown.out == ""

    # Both attempts of the image's upload meet a 503: transient, so run and status say 4.
    emu.set_faults(error_rate=1.0, error_routes={"upload"}, error_statuses=(503,))
    emu.set_faults(errors_remaining=2)
    transient = await run(config)
    assert transient.code == 4, transient.out + transient.err
    seen = await status(config, "--images")
    assert seen.code == 4, seen.out + seen.err
    [failed] = image_lines(seen, "failed")
    assert "step=upload" in failed and "503" in failed, seen.out

    # The retried image's upload now meets a full store (507): for good, so 1 from both.
    emu.set_faults(error_statuses=(507,), errors_remaining=1)
    full = await run(config)
    assert full.code == 1, full.out + full.err
    seen = await status(config, "--images")
    assert seen.code == 1, seen.out + seen.err
    [failed] = image_lines(seen, "failed")
    assert "step=upload" in failed and "storage full" in failed, seen.out

    emu.set_faults(error_rate=0.0)
    assert (await run(config)).code == 0
    clean = await status(config, "--images")
    assert clean.code == 0, clean.out + clean.err
    assert len(image_lines(clean, "done")) == 1 and not image_lines(clean, "failed"), clean.out


@pytest.mark.parametrize("journal", ["sqlite", "postgresql"])
async def test_a_max_duration_stop_is_recorded_and_shown_as_a_deadline(
    emu: Emulator, tmp_path: Path, journal: str, request: pytest.FixtureRequest
) -> None:
    await seed_many(emu, [MiB] * 3)
    emu.set_faults(bandwidth=2 * MiB)  # half a second an image, one at a time
    config = write_config(tmp_path, emu, job_toml(targets=ONE_TARGET, transfers=1))
    if journal == "postgresql":
        db: PgDatabase = request.getfixturevalue("pg_db")
        config.write_text(config.read_text().replace('path = "journal.db"', f'url = "{db.url}"'))
    report = tmp_path / "report.json"

    stopped = await run(config, "--max-duration", "0.2s", "--report", str(report), "--job", "move")
    assert stopped.code == 5, stopped.out + stopped.err
    assert "DEADLINE REACHED" in stopped.out and "INTERRUPTED" not in stopped.out
    data = json.loads(report.read_text())
    assert (data["outcome"], data["deadline_reached"]) == ("deadline", True)
    assert data["counts"]["copied"] < 3  # images were left for the next run

    seen = await status(config)
    assert seen.code == 0, seen.out + seen.err  # nothing failed: the rest waits for next run
    [run_line] = [line for line in seen.out.splitlines() if line.strip().startswith("run ")]
    assert run_line.endswith(" deadline") and "interrupted" not in run_line, seen.out
    listed = json.loads((await status(config, "--json")).out)
    assert [r["outcome"] for r in listed["jobs"][0]["runs"]] == ["deadline"]


def parse_stamp(text: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text
    return datetime.fromisoformat(text).astimezone(UTC)


async def test_the_report_gives_times_target_only_items_reasons_and_honest_bytes(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sizes = [256 * KiB, 512 * KiB, 0]
    kept, changed, dropped = await seed_many(emu, sizes)
    config = write_config(tmp_path, emu, job_toml(targets=ONE_TARGET))
    report = tmp_path / "report.json"

    before, began = received(emu), datetime.now(UTC)
    assert (await run(config, "--report", str(report))).code == 0
    first = json.loads(report.read_text())
    assert first["schema_version"] == 1
    start, end = parse_stamp(first["started_at"]), parse_stamp(first["ended_at"])
    assert began.replace(microsecond=0) <= start <= end <= datetime.now(UTC)
    # Nothing retried: what moved is exactly the images, which is what the cloud received.
    assert first["image_bytes"] == first["bytes_moved"] == sum(sizes) == received(emu) - before
    assert {i["source_id"]: i["image_bytes"] for i in first["items"]} == {
        kept: sizes[0],
        changed: sizes[1],
        dropped: 0,
    }
    assert first["attempts"] == 3 and first["image_retries"] == 0 and first["target_only"] == []

    # Night two: one source changed a property, one is gone, one is new and its first upload
    # is cut after 128 KiB.
    api = Api(http, emu.regions["KR1"], await token(emu, SRC, http))
    patch = [{"op": "add", "path": "/build", "value": "night-2"}]
    patched = await api.call(
        "PATCH",
        f"/v2/images/{changed}",
        json=patch,
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
    )
    assert patched.status == 200, patched.body
    assert (await api.call("DELETE", f"/v2/images/{dropped}")).status == 204
    [new] = await seed_many(emu, [384 * KiB], prefix="new")
    emu.set_faults(drop_upload_after=128 * KiB, drops_remaining=1)

    assert (await run(config, "--report", str(report))).code == 0
    data = json.loads(report.read_text())
    items: dict[str, dict[str, Any]] = {i["source_id"]: i for i in data["items"]}
    assert items[changed]["code"] == "*" and items[changed]["outcome"] == "updated"
    assert any("build" in reason for reason in items[changed]["reasons"]), items[changed]
    [gone] = data["target_only"]
    assert gone["source_id"] is None and gone["target"] == "dst/KR1"
    assert any(dropped in reason for reason in gone["reasons"]), gone
    assert items[new]["attempts"] == 2 and data["image_retries"] == 1
    assert data["attempts"] == sum(i["attempts"] for i in data["items"])
    # The image's bytes once; what moved also holds the cut attempt's.
    assert data["image_bytes"] == items[new]["image_bytes"] == 384 * KiB
    assert data["bytes_moved"] == sum(i["bytes_moved"] for i in data["items"])
    assert 384 * KiB + 128 * KiB <= data["bytes_moved"] <= 2 * 384 * KiB
    assert data["bytes"] == data["bytes_moved"]


_SAMPLE = re.compile(r'^([a-z_]+)\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)+\} [0-9.e+-]+$')


async def test_a_second_job_into_the_same_metrics_file_keeps_the_first_jobs_series(
    emu: Emulator, tmp_path: Path
) -> None:
    await seed_many(emu, [64 * KiB, 32 * KiB])
    jobs = job_toml(name="east", targets=(("src", "KR2"),)) + job_toml(name="west")
    config = write_config(tmp_path, emu, jobs)
    metrics = tmp_path / "image_transfer.prom"

    emu.set_faults(drop_upload_after=16 * KiB, drops_remaining=1)  # one retry, in east
    assert (await run(config, "--job", "east", "--metrics-file", str(metrics))).code == 0
    assert (await run(config, "--job", "west", "--metrics-file", str(metrics))).code == 0

    text = metrics.read_text()
    families: list[str] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.append(line.split()[2])
        elif not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match and match[1] == families[-1], f"{line!r} outside its family:\n{text}"
    assert len(families) == len(set(families)), text  # one HELP/TYPE per family
    assert text.count("# HELP image_transfer_images ") == 1
    for job, copied in (("east", 2), ("west", 4)):
        assert f'image_transfer_images{{job="{job}",outcome="copied"}} {copied}\n' in text
        assert f'image_transfer_last_run_success{{job="{job}"}} 1\n' in text
        assert f'image_transfer_last_success_timestamp_seconds{{job="{job}"}} ' in text
    assert 'image_transfer_image_retries{job="east"} 1\n' in text
    assert 'image_transfer_image_retries{job="west"} 0\n' in text
    assert 'image_transfer_image_bytes{job="west"} ' + str(2 * 96 * KiB) + "\n" in text
