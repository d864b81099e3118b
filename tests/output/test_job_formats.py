"""``plan``, ``status`` and ``verify`` for scripts: ``-f json|csv|value``, ``--column``, the
JSON documents' ``schema_version`` and the report's spellings.  Real child processes against
one emulator for the module: a job planned, then run once, then read in every format."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import token
from tests.emulator.helpers import Api
from tests.engine.helpers import (
    DST,
    JOB,
    SRC,
    Outcome,
    cli,
    copies,
    environment,
    job_toml,
    new_emulator,
    seed_many,
    write_config,
)
from transfer.emulator import Emulator

pytestmark = pytest.mark.asyncio(loop_scope="module")

TARGET_KEYS = ("src/KR2", "dst/KR1")


@dataclass(frozen=True)
class Ran:
    emu: Emulator
    config: Path
    sources: list[str]
    planned: Outcome  # `plan -f json` before the run


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ran(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ran]:
    async with new_emulator(seed=18) as emu:
        sources = await seed_many(emu, [1000, 0, 3000])
        config = write_config(tmp_path_factory.mktemp("formats"), emu, job_toml())
        planned = await cli("plan", "-c", str(config), "-f", "json", env=environment())
        done = await cli("run", "-c", str(config), "--no-progress", env=environment())
        assert done.code == 0, done.err
        yield Ran(emu, config, sources, planned)


async def job(ran: Ran, *args: str) -> Outcome:
    result = await cli(*args[:1], "-c", str(ran.config), *args[1:], env=environment())
    assert "Traceback" not in result.err
    return result


async def test_plan_json_has_a_schema_version_and_the_reports_spellings(ran: Ran) -> None:
    before = json.loads(ran.planned.out)
    assert ran.planned.code == 0 and before["schema_version"] == 1
    [planned] = before["jobs"]
    assert planned["job"] == JOB and planned["targets"] == list(TARGET_KEYS)
    assert {(i["code"], i["action"]) for i in planned["items"]} == {("+", "copy")}
    assert {(i["source_id"], i["target"]) for i in planned["items"]} == {
        (s, t) for s in ran.sources for t in TARGET_KEYS
    }
    assert planned["counts"]["copy"] == 6

    after = await job(ran, "plan", "--json")  # --json: the same as -f json
    assert after.code == 0
    [again] = json.loads(after.out)["jobs"]
    assert {(i["code"], i["action"]) for i in again["items"]} == {("=", "in-sync")}
    assert again["counts"] == {
        "copy": 0,
        "repair": 0,
        "update": 0,
        "in-sync": 6,
        "target-only": 0,
    }
    assert all(i["target_id"] for i in again["items"])
    assert "in_sync" not in after.out

    value = await job(ran, "plan", "-f", "value", "--column", "action", "--column", "source_id")
    assert sorted(value.out.splitlines()) == sorted(f"in-sync {s}" for s in ran.sources * 2)
    # The openstack CLI's -c COLUMN, beside -c FILE (the job's helper gives -c CONFIG first).
    short = await job(ran, "plan", "-f", "value", "-c", "action", "-c", "source_id")
    assert short.code == 0, short.err
    assert sorted(short.out.splitlines()) == sorted(value.out.splitlines())


async def test_status_as_csv_and_json(ran: Ran) -> None:
    jobs = await job(ran, "status", "-f", "csv")
    assert jobs.code == 0, jobs.err
    [row] = list(csv.DictReader(io.StringIO(jobs.out)))
    assert (row["job"], row["done"], row["failed"], row["bytes_done"]) == (JOB, "6", "0", "8000")
    assert row["last_outcome"] == "ok"

    items = await job(
        ran, "status", "--images", "-f", "csv", "--column", "source_id", "--column", "state"
    )
    rows = list(csv.reader(io.StringIO(items.out)))
    assert rows[0] == ["source_id", "state"]
    assert sorted(rows[1:]) == sorted([s, "done"] for s in ran.sources * 2)

    document = await job(ran, "status", "--images", "--json")
    data = json.loads(document.out)
    assert data["schema_version"] == 1
    [status] = data["jobs"]
    assert status["states"] == {"pending": 0, "running": 0, "done": 6, "failed": 0}
    [last] = status["runs"]
    assert last["counts"]["copied"] == 6 and last["counts"]["in-sync"] == 0
    assert "in_sync" not in document.out
    assert {(i["source_id"], i["target"]) for i in status["items"]} == {
        (s, t) for s in ran.sources for t in TARGET_KEYS
    }

    wrong = await job(ran, "status", "--column", "state")
    assert wrong.code == 2
    assert "--column state: not a column of status (without --images)" in wrong.err


async def test_verify_json_and_value(ran: Ran) -> None:
    clean = await job(ran, "verify", "--json")
    assert clean.code == 0, clean.err
    data = json.loads(clean.out)
    assert data["schema_version"] == 1
    [verified] = data["jobs"]
    assert (verified["pairs"], verified["verified"], verified["differ"]) == (6, 6, 0)
    assert {i["result"] for i in verified["items"]} == {"verified"}

    # One copy changed behind the job's back: verify says which, and exits 1.
    [copy] = copies(ran.emu, "KR1", DST.tenant_id)[ran.sources[0]]
    async with aiohttp.ClientSession() as http:
        api = Api(http, ran.emu.regions["KR1"], await token(ran.emu, DST, http))
        change = [{"op": "replace", "path": "/build", "value": "tampered"}]
        assert (await api.patch(copy["id"], change)).status == 200
    try:
        dirty = await job(ran, "verify", "-f", "value", "--column", "result", "--column", "target")
        assert dirty.code == 1
        assert sorted(dirty.out.splitlines()) == sorted(
            ["differs dst/KR1"] + ["verified dst/KR1"] * 2 + ["verified src/KR2"] * 3
        )
    finally:
        async with aiohttp.ClientSession() as http:
            api = Api(http, ran.emu.regions["KR1"], await token(ran.emu, DST, http))
            change = [{"op": "replace", "path": "/build", "value": "0"}]
            assert (await api.patch(copy["id"], change)).status == 200
    assert SRC.password not in dirty.out + dirty.err


async def test_an_unknown_column_of_plan_is_a_usage_error(ran: Ran) -> None:
    wrong = await job(ran, "plan", "--column", "sourceid")
    assert wrong.code == 2
    assert "unknown column 'sourceid'; known columns: job, code, action" in wrong.err
