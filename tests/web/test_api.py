"""The live page's JSON API and its safety, without a browser: ``run --serve`` while a slowed
migration runs (the same process serves the page), then ``serve`` on the journal it left.
Every number is compared with the journal's own, every answer checked for its headers, and
for the test passwords and tracebacks it must not hold."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp

from tests.engine.helpers import (
    JOB,
    SRC,
    MiB,
    environment,
    job_toml,
    seed_many,
    start_cli,
    write_config,
)
from tests.engine.helpers import emulator_fixture as _emulator_fixture
from tests.web.helpers import Answer, announced, get, safe_answer_problems, stop
from transfer.emulator import Emulator
from transfer.journal.records import EntryState
from transfer.journal.sqlite import SqliteJournal

emu = _emulator_fixture(seed=41)
TARGET = "src/KR2"


async def poll(
    http: aiohttp.ClientSession, url: str, until: Any, within: float = 30.0
) -> dict[str, Any]:
    """``/api/overview`` until ``until(document)`` holds."""
    deadline = time.monotonic() + within
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = await get(http, url + "api/overview")
        assert answer.status == 200, answer.text
        last = answer.json()
        if until(last):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"the page never showed it; last document: {last}")


def holding(document: dict[str, Any]) -> bool:
    workers = document["jobs"][0]["workers"] if document["jobs"] else []
    return any(h["done"] > 0 for w in workers for h in w["holds"])


async def test_run_serve_shows_the_run_live_and_serve_shows_what_the_journal_says(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    good = await seed_many(emu, [3 * MiB // 2] * 4)
    refused = await emu.seed_image(
        "KR1", SRC.tenant_id, size=MiB, fill_seed=7, name="no-download",
        nhncloud_allow_download="false",
    )  # fmt: skip
    config = write_config(
        tmp_path, emu, job_toml(targets=(("src", "KR2"),), transfers=2, retries=1)
    )
    emu.set_faults(bandwidth=MiB)  # each transfer 1.5 s or more: the run lasts a few seconds

    run = await start_cli(
        "run", "-c", str(config), "--no-progress", "--serve", "127.0.0.1:0", env=environment()
    )
    live = await announced(run)
    during = await poll(http, live, holding)
    [worker] = during["jobs"][0]["workers"]
    assert worker["state"] == "running" and worker["finished_at"] is None
    held = next(h for h in worker["holds"] if h["done"] > 0)
    assert held["target"] == TARGET and 0 < held["done"] <= held["total"] == 3 * MiB // 2
    assert held["source_id"] in good
    ran = await stop_when_done(run)
    assert ran.code == 1, ran.err  # one image failed for good, the others were copied
    emu.set_faults(bandwidth=None)

    serve = await start_cli("serve", "-c", str(config), "--listen", "127.0.0.1:0")
    try:
        url = await announced(serve)
        answers = await check_endpoints(http, url, tmp_path, good, refused)
        answers += await check_refusals(http, url)
    finally:
        served = await stop(serve)
    assert served.code == 0, served.err
    for answer in answers:
        assert safe_answer_problems(answer) == [], (answer.status, answer.text[:300])


async def stop_when_done(proc: asyncio.subprocess.Process) -> Any:
    try:
        await asyncio.wait_for(proc.wait(), 60)
    except TimeoutError:
        proc.kill()
    return await stop(proc)


async def check_endpoints(
    http: aiohttp.ClientSession, url: str, workdir: Path, good: list[str], refused: str
) -> list[Answer]:
    """Every endpoint's answer, each compared with the journal."""
    async with SqliteJournal(workdir / "journal.db") as journal:
        states = await journal.state_counts(JOB)
        entries = await journal.entries(JOB)
        samples = await journal.samples(JOB)
        [last_run] = await journal.runs(JOB, limit=1)
    overview = await get(http, url + "api/overview")
    assert overview.status == 200 and overview.headers["Content-Type"].startswith(
        "application/json"
    )
    document = overview.json()
    assert document["schema_version"] == 1  # as every JSON output of the tool
    assert document["journal"] == str(workdir / "journal.db") and document["shared"] is False
    [job] = document["jobs"]
    assert {"schema_version": 1, **job} == (await get(http, url + f"api/jobs/{JOB}")).json()
    assert (await get(http, url + "api/jobs")).json() == {"schema_version": 1, "jobs": [JOB]}

    assert job["states"] == {s.value: states.get(s.value, 0) for s in EntryState}
    assert job["states"]["done"] == len(good) and job["states"]["failed"] == 1
    assert job["bytes_total"] == sum(e.source_size or 0 for e in entries.values())
    assert job["bytes_done"] == 4 * (3 * MiB // 2) and job["rate"] == 0
    assert job["last_run"]["id"] == last_run.id and job["last_run"]["outcome"] == "partial"
    assert job["last_run"]["finished_at"] == last_run.finished_at
    [worker] = job["workers"]
    assert (worker["state"], worker["holds"]) == ("finished", [])
    [failure] = job["failures"]
    entry = entries[(refused, TARGET)]
    assert failure["image"] == "no-download" and failure["target"] == TARGET
    assert failure["reason"] == entry.last_error and "403" in failure["reason"]
    assert failure["step"] == entry.failed_step is not None
    assert failure["attempts"] == entry.attempts == 1

    # Samples: several while the bytes moved, the last with every byte of the run.
    assert job["samples"] == len(samples) >= 2
    assert samples[-1].bytes_done == 4 * (3 * MiB // 2)
    throughput = (await get(http, url + f"api/jobs/{JOB}/throughput")).json()
    series = throughput["series"]
    lows = [series["start"] + i * series["bucket_seconds"] for i in range(len(series["total"]))]
    highs = [*lows[1:], series["end"]]
    charted = sum(v * (h - lo) for v, lo, h in zip(series["total"], lows, highs, strict=True))
    assert abs(charted - samples[-1].bytes_done) < 1024, charted

    chart = await get(http, url + f"api/jobs/{JOB}/chart.svg")
    assert chart.headers["Content-Type"].startswith("image/svg+xml")
    svg = ET.fromstring(chart.body)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.get("data-samples") == str(len(samples))
    assert svg.find("{http://www.w3.org/2000/svg}polygon") is not None
    assert "<script" not in chart.text and "style=" not in chart.text

    page = await get(http, url)
    assert page.headers["Content-Type"].startswith("text/html")
    assert '<script src="static/app.js"' in page.text and "<script>" not in page.text
    assets = [await get(http, url + f"static/{name}") for name in ("app.js", "app.css", "icon.svg")]
    kinds = [a.headers["Content-Type"].split(";")[0] for a in assets]
    assert kinds == ["text/javascript", "text/css", "image/svg+xml"]
    head = await get(http, url + "api/overview", method="HEAD")
    assert head.status == 200 and head.body == b""
    return [overview, page, chart, head, *assets]


async def check_refusals(http: aiohttp.ClientSession, url: str) -> list[Answer]:
    """Bad paths, other methods and a foreign Host get a short 4xx."""
    answers = []
    for path in ("nope", "static/nope.js", "static/..%2F..%2Fetc%2Fpasswd", "api/jobs/ghost"):
        answer = await get(http, url + path)
        assert answer.status == 404, (path, answer.status)
        assert len(answer.text) < 200 and answer.text.strip(), answer.text
        answers.append(answer)
    assert "no job named 'ghost'" in answers[-1].text
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("api/overview", "nope", ""):
            answer = await get(http, url + path, method=method)
            assert answer.status == 405, (method, path, answer.status)
            assert answer.headers["Allow"] == "GET, HEAD"
            answers.append(answer)
    rebound = await get(http, url + "api/overview", headers={"Host": "evil.example:8077"})
    assert rebound.status == 403 and "loopback" in rebound.text
    return [*answers, rebound]
