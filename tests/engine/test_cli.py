"""``image-transfer plan|run|status|verify`` as a user meets them: real child processes against
the emulator in this process, their exit codes and what they print."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp

from tests.conftest import token
from tests.emulator.helpers import Api
from tests.engine.helpers import (
    CLOUDS,
    DST,
    JOB,
    PARTNER,
    SRC,
    TARGETS,
    MiB,
    Outcome,
    cli,
    copies,
    copy_problems,
    emulator_fixture,
    environment,
    job_toml,
    journal_entries,
    journal_problems,
    seed_many,
    share,
    write_config,
)
from transfer.emulator import Emulator

emu = emulator_fixture(seed=3)


def plan_lines(outcome: Outcome) -> list[str]:
    """The per-item lines of ``plan``: CODE TARGET NAME (ID) ..."""
    return [line for line in outcome.out.splitlines() if re.match(r"[+=*!-] \S+/\S+ ", line)]


async def test_a_source_that_refuses_downloads_fails_alone_with_exit_code_1(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    good = await seed_many(emu, [MiB, 2 * MiB, 0])
    refused = await emu.seed_image(
        "KR1",
        SRC.tenant_id,
        size=MiB,
        fill_seed=9,
        name="no-download",
        nhncloud_allow_download="false",
    )
    config = write_config(tmp_path, emu, job_toml())
    report = tmp_path / "report.json"

    result = await cli(
        "run", "-c", str(config), "--no-progress", "--report", str(report), env=environment()
    )

    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    failed_lines = [line for line in result.out.splitlines() if "no-download" in line]
    assert len(failed_lines) == len(TARGETS), result.out
    for line in failed_lines:
        assert "failed" in line and "403" in line, line
    items = json.loads(report.read_text())["items"]
    failed = [i for i in items if i["outcome"] == "failed"]
    assert {i["source_id"] for i in failed} == {refused}
    assert all("403" in i["error"] and "not allowed" in i["error"] for i in failed)
    # The rest were copied all the same, and the refused image left no empty copy behind.
    assert await copy_problems(emu, http, [*good, refused]) == [
        f"{t.key} no-download: 0 copies, expected one: []" for t in TARGETS
    ]
    entries = await journal_entries(tmp_path)
    assert {entries[(refused, t.key)].state for t in TARGETS} == {"failed"}
    assert await journal_problems(tmp_path, good) == []

    # Once the owner allows the download, the next run copies it (its deleted empty target's
    # id stays reserved, so the copy gets a new one).
    api = Api(http, emu.regions["KR1"], await token(emu, SRC, http))
    allow = [{"op": "replace", "path": "/nhncloud_allow_download", "value": "true"}]
    assert (await api.patch(refused, allow)).status == 200
    again = await cli("run", "-c", str(config), "--no-progress", env=environment())
    assert again.code == 0, again.out + again.err
    assert await copy_problems(emu, http, [*good, refused]) == []
    assert await journal_problems(tmp_path, [*good, refused]) == []


async def test_bad_configs_are_one_clear_line_and_exit_code_2(
    emu: Emulator, tmp_path: Path
) -> None:
    cases: dict[str, tuple[str, list[str], dict[str, str], str]] = {}
    env = environment()

    typo = write_config(
        tmp_path, emu, job_toml().replace("checkers = 8", "chekers = 8"), name="typo.toml"
    )
    cases["misspelled key"] = ("run", [], env, r"jobs\[0\]\.chekers: unknown key.*'checkers'")
    no_cloud = write_config(
        tmp_path,
        emu,
        job_toml(targets=[("dst", "KR1"), ("backup", "KR2")]),
        name="no-cloud.toml",
    )
    cases["missing cloud"] = (
        "plan",
        [],
        env,
        r"jobs\[0\]\.targets\[1\]\.cloud: no cloud named 'backup'",
    )
    cases["missing password"] = (
        "run",
        [],
        {k: v for k, v in env.items() if "DST" not in k},
        r"clouds\.dst\.password_env: environment variable ENGINE_TEST_DST_PASSWORD is not set",
    )
    good = write_config(tmp_path, emu, job_toml(), name="good.toml")
    cases["unknown job"] = ("plan", ["--job", "mvoe"], env, r"no job named 'mvoe'")
    files = {
        "misspelled key": typo,
        "missing cloud": no_cloud,
        "missing password": good,
        "unknown job": good,
    }

    async def one(case: str) -> tuple[str, Outcome]:
        command, extra, case_env, _ = cases[case]
        return case, await cli(command, "-c", str(files[case]), *extra, env=case_env)

    results = await asyncio.gather(*(one(case) for case in cases))

    for case, outcome in results:
        pattern = cases[case][3]
        assert outcome.code == 2, (case, outcome)
        assert "Traceback" not in outcome.err, (case, outcome.err)
        lines = outcome.err.strip().splitlines()
        assert len(lines) == 1, (case, lines)
        assert re.search(pattern, lines[0]), (case, lines[0])
        assert lines[0].startswith("image-transfer: config error: "), (case, lines[0])
        for spec in CLOUDS.values():
            assert spec.password not in outcome.out + outcome.err, case
    # Nothing was created anywhere: config problems stop before any call.
    assert emu.counters("KR1")["requests"].get("create", 0) == 0
    assert emu.counters("KR2")["requests"].get("create", 0) == 0


async def test_plan_run_status_and_verify_tell_the_user_what_is_true(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources = await seed_many(emu, [MiB, 2 * MiB, 0, 3 * MiB], shared=[1])
    await share(emu, http, sources[1], [PARTNER])
    config = write_config(tmp_path, emu, job_toml())
    env = environment()
    pairs = len(sources) * len(TARGETS)

    before = await cli("plan", "-c", str(config), env=env)
    assert before.code == 0, before.err
    lines = plan_lines(before)
    assert len(lines) == pairs and all(line.startswith("+ ") for line in lines), before.out
    assert emu.counters("KR2")["requests"].get("create", 0) == 0  # a dry run

    run = await cli("run", "-c", str(config), "--no-progress", env=env)
    assert run.code == 0, run.err
    assert f"{pairs} copied" in run.out, run.out
    assert await copy_problems(emu, http, sources) == []

    after = await cli("plan", "-c", str(config), env=env)
    lines = plan_lines(after)
    assert len(lines) == pairs and all(line.startswith("= ") for line in lines), after.out

    status = await cli("status", "-c", str(config), "--images", env=env)
    assert status.code == 0, status.err
    assert re.search(rf"job {JOB}: {pairs} done\b", status.out), status.out
    image_lines = [line for line in status.out.splitlines() if " step=" in line]
    assert len(image_lines) == pairs and all(line.split()[0] == "done" for line in image_lines), (
        status.out
    )
    assert "ok" in status.out  # the run's outcome

    verified = await cli("verify", "-c", str(config), env=env)
    assert verified.code == 0, verified.out
    assert f"all {pairs} copies verified" in verified.out

    # Someone changes a copy behind the job's back: a property, and a tag removed.
    [copy_kr2] = copies(emu, "KR2", SRC.tenant_id)[sources[0]]
    [copy_dst] = copies(emu, "KR1", DST.tenant_id)[sources[3]]
    api = Api(http, emu.regions["KR2"], await token(emu, SRC, http))
    reply = await api.patch(copy_kr2["id"], [{"op": "replace", "path": "/build", "value": "x"}])
    assert reply.status == 200, reply.body
    api = Api(http, emu.regions["KR1"], await token(emu, DST, http))
    reply = await api.call("DELETE", f"/v2/images/{copy_dst['id']}/tags/n3")
    assert reply.status == 204, reply.body

    tampered = await cli("verify", "-c", str(config), env=env)
    assert tampered.code == 1, tampered.out + tampered.err
    assert f"2 of {pairs} copies differ" in tampered.out, tampered.out
    [line_kr2] = [line for line in tampered.out.splitlines() if sources[0] in line]
    assert "src/KR2" in line_kr2 and "build" in line_kr2, line_kr2
    [line_dst] = [line for line in tampered.out.splitlines() if sources[3] in line]
    assert "dst/KR1" in line_dst and "n3" in line_dst, line_dst


async def test_bad_lease_settings_are_one_clear_line_and_exit_code_2_on_a_local_journal(
    emu: Emulator, tmp_path: Path
) -> None:
    good = write_config(tmp_path, emu, job_toml(), name="good.toml")
    text = good.read_text().replace(
        'path = "journal.db"', 'path = "journal.db"\nlease_seconds = 3\nrenew_seconds = 2'
    )
    (tmp_path / "tight.toml").write_text(text)
    cases = {
        "zero": (good, ["--lease-seconds", "0"], r"--lease-seconds: .* got 0$"),
        "negative": (good, ["--lease-seconds=-3"], r"--lease-seconds: .* got -3$"),
        "nan": (good, ["--lease-seconds", "nan"], r"--lease-seconds: .* got nan$"),
        "words": (good, ["--lease-seconds", "soon"], r"--lease-seconds: .* got 'soon'$"),
        "takeovers": (good, ["--max-takeovers", "-1"], r"--max-takeovers: expected 0 or more"),
        "relation": (
            tmp_path / "tight.toml",
            [],
            r"journal\.lease_seconds: expected more than journal\.renew_seconds \(2\) plus "
            r"journal\.call_seconds \(1\), got 3",
        ),
    }
    for case, (config, extra, pattern) in cases.items():
        outcome = await cli("run", "-c", str(config), "--no-progress", *extra, env=environment())
        assert outcome.code == 2, (case, outcome)
        lines = outcome.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in outcome.err, (case, outcome.err)
        assert lines[0].startswith("image-transfer: config error: "), (case, lines[0])
        assert re.search(pattern, lines[0]), (case, lines[0])
    assert emu.counters("KR1")["requests"].get("create", 0) == 0
    assert emu.counters("KR2")["requests"].get("create", 0) == 0


async def test_bytes_that_never_verify_and_a_full_store_are_exit_1_not_run_again_later(
    emu: Emulator, tmp_path: Path
) -> None:
    [image] = await seed_many(emu, [MiB])
    config = write_config(tmp_path, emu, job_toml(targets=[("dst", "KR1")], retries=2))
    report = tmp_path / "report.json"
    run = ("run", "-c", str(config), "--no-progress", "--report", str(report))

    emu.set_faults(corrupt_downloads=100)  # a link that corrupts every download
    corrupted = await cli(*run, env=environment())
    assert corrupted.code == 1, corrupted.out + corrupted.err
    [item] = json.loads(report.read_text())["items"]
    assert item["outcome"] == "failed" and item["retryable"] is False
    source_md5 = emu.image_record("KR1", image)["checksum"]
    assert "checksum" in item["error"] and source_md5 in item["error"], item["error"]

    uploads = emu.counters("KR1")["requests"].get("upload", 0)
    emu.set_faults(
        corrupt_downloads=0, error_rate=1.0, error_routes={"upload"}, error_statuses=(507,)
    )
    full = await cli(*run, env=environment())
    assert full.code == 1, full.out + full.err
    [item] = json.loads(report.read_text())["items"]
    assert item["outcome"] == "failed" and item["retryable"] is False
    assert item["error"].startswith("target dst/KR1 ("), item["error"]
    assert "storage full or quota reached" in item["error"] and "507" in item["error"]
    # Neither the client nor another attempt repeats an upload into a full store.
    assert emu.counters("KR1")["requests"].get("upload", 0) == uploads + 1
