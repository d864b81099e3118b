"""``bench`` as a user runs it: real child processes against the emulator with known faults
(a per-connection bandwidth, a per-request latency), clouds from a clouds.yaml under a temporary
HOME.  The figures must come within 15% of what the faults imply, and after every test a plain
HTTP listing of both sides shows nothing left behind: after a signal too, and after a SIGKILL
once ``bench --cleanup`` has run."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pexpect
import pytest
import pytest_asyncio

from tests.conftest import token
from tests.copy.helpers import child_env, listing, run, start, write_clouds_yaml
from tests.emulator.helpers import Api
from tests.engine.helpers import REPO, SRC, MiB, Outcome, finish, kill, new_emulator
from transfer.emulator import Emulator

pytestmark = pytest.mark.asyncio(loop_scope="module")

SIDES = ("nhn:KR1", "nhn:KR2")
LINE = ("bench", "--from", SIDES[0], "--to", SIDES[1], "--no-progress")
TOLERANCE = 0.15
CAP = 2 * MiB  # bytes/s per connection
RUN_LINE = re.compile(r"image-transfer: bench ([0-9a-f]{12}): ")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with new_emulator(seed=20) as emulator:
        yield emulator


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def home(tmp_path: Path, emu: Emulator) -> Path:
    write_clouds_yaml(tmp_path, emu)
    emu.set_faults(bandwidth=None, latency=0.0)
    return tmp_path


async def held(emu: Emulator, http: aiohttp.ClientSession) -> dict[str, set[str]]:
    """The ids of the images the src tenant has in each region, listed over HTTP."""
    return {
        region: {image["id"] for image in await listing(emu, http, region, SRC)}
        for region in ("KR1", "KR2")
    }


def near(value: float | None, expected: float) -> bool:
    return value is not None and abs(value - expected) <= TOLERANCE * expected


def figures(report: dict[str, Any]) -> dict[tuple[str, int], float | None]:
    return {(m["kind"], m["transfers"]): m["bytes_per_second"] for m in report["measurements"]}


async def test_throughput_is_the_per_connection_cap_times_the_transfers_then_nothing_is_left(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    before = await held(emu, http)
    emu.set_faults(bandwidth=CAP)
    report_path, chart = home / "bench.json", home / "bench.svg"
    done = await run(
        home,
        *LINE,
        *("--sizes", "1M", "--transfers", "1,4", "--max-duration", "4s"),
        "--json",
        str(report_path),
        "--chart",
        str(chart),
    )
    assert done.code == 0, done.out + done.err
    report = json.loads(report_path.read_text())
    assert report["schema_version"] == 1
    found = figures(report)
    wanted = {(kind, n): n * CAP for kind in ("download", "upload", "copy") for n in (1, 4)}
    off = {
        key: (found.get(key), rate) for key, rate in wanted.items() if not near(found[key], rate)
    }
    assert off == {}, done.err
    copies = [m for m in report["measurements"] if m["kind"] == "copy"]
    assert all(m["images"] >= m["transfers"] and m["failed"] == 0 for m in copies)
    # The table a user reads: one row per transfers value, the copy's figure in it.
    rows = {line.split()[0]: line for line in done.out.splitlines() if line.strip()}
    assert "MiB/s" in rows["1"] and "MiB/s" in rows["4"]
    assert "knee: 4 transfers" in done.out and "still gaining" in done.out
    assert chart.read_text().count("<polyline") == 3
    assert await held(emu, http) == before


async def test_p50_latency_is_the_latency_set_and_latency_is_named_as_the_limit(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    before = await held(emu, http)
    emu.set_faults(latency=0.05)
    report_path = home / "bench.json"
    line = ("--sizes", "256K", "--count", "1", "--transfers", "1", "--max-duration", "1s")
    done = await run(home, *LINE, *line, "--json", str(report_path))
    assert done.code == 0, done.out + done.err
    report = json.loads(report_path.read_text())
    calls = {(lat["side"], lat["call"]): lat["p50"] for lat in report["latency"]}
    assert set(calls) == {
        ("source", "token"),
        ("source", "list"),
        ("source", "show"),
        ("source", "first-byte"),
        ("target", "token"),
        ("target", "list"),
        ("target", "create"),
        ("target", "show"),
    }
    assert {call: p50 for call, p50 in calls.items() if not near(p50, 0.05)} == {}
    assert report["limit"]["side"] == "latency", report["limit"]
    assert re.search(
        r"limit: latency \(each image waits for 3 round trips of about 5\d ms", done.out
    )
    assert await held(emu, http) == before


async def test_bwlimit_caps_every_measurement_of_all_transfers_together(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    before = await held(emu, http)
    report_path = home / "bench.json"
    done = await run(
        home,
        *LINE,
        # Images of a second each at the shared 4 MiB/s: a copy's own round trips (create,
        # the verifying GET) stay a small part of its time, also on a busy machine.
        *("--sizes", "2M", "--transfers", "2", "--max-duration", "2s", "--bwlimit", "4M"),
        *("--json", str(report_path)),
    )
    assert done.code == 0, done.out + done.err
    found = figures(json.loads(report_path.read_text()))
    assert {key: rate for key, rate in found.items() if not near(rate, 4 * MiB)} == {}
    assert await held(emu, http) == before


async def read_until(proc: asyncio.subprocess.Process, text: str, seen: list[str]) -> None:
    """Read the child's stderr until a line holds ``text`` (every line read goes to ``seen``)."""
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, "the child ended before printing " + repr(text) + ":\n" + "".join(seen)
        seen.append(line)
        if text in line:
            return


async def test_sigterm_mid_measurement_deletes_what_it_made_and_exits_130(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    before = await held(emu, http)
    emu.set_faults(bandwidth=CAP)
    proc = await start(home, *LINE, "--sizes", "2M", "--transfers", "2", "--max-duration", "3s")
    seen: list[str] = []
    await read_until(proc, "bench: upload", seen)
    await asyncio.sleep(0.3)  # uploads under way: images on both sides
    proc.send_signal(signal.SIGTERM)
    done = await finish(proc, 30)
    assert done.code == 130, "".join(seen) + done.err
    assert "SIGTERM: stopping; deleting what the bench created" in done.err
    assert "nothing left behind" in done.err
    assert await held(emu, http) == before


async def test_a_killed_bench_leaves_images_that_cleanup_finds_by_their_marker_only(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    before = await held(emu, http)
    emu.set_faults(bandwidth=CAP)
    proc = await start(home, *LINE, "--sizes", "2M", "--transfers", "2", "--max-duration", "3s")
    seen: list[str] = []
    await read_until(proc, "bench: upload", seen)
    await asyncio.sleep(0.3)
    await kill(proc)
    run_id = next(m.group(1) for line in seen if (m := RUN_LINE.search(line)))
    emu.set_faults(bandwidth=None)
    left = await held(emu, http)
    assert left["KR1"] - before["KR1"] and left["KR2"] - before["KR2"]  # both sides hold some

    # Another bench's image, and an image no bench made that a glob would match.
    other = await emu.seed_image(
        "KR2",
        SRC.tenant_id,
        size=1000,
        name="bench-0123456789ab-1MiB-00",
        image_transfer_bench="0123456789ab",
    )
    mine = await emu.seed_image("KR2", SRC.tenant_id, size=1000, name=f"bench-{run_id}-x")

    one: Outcome = await run(home, *LINE, "--cleanup", "--run", run_id)
    assert one.code == 0, one.out + one.err
    assert await held(emu, http) == {
        "KR1": before["KR1"],
        "KR2": before["KR2"] | {other, mine},
    }
    every = await run(home, *LINE, "--cleanup")
    assert every.code == 0, every.out + every.err
    assert "deleted 1 images of every bench run" in every.out
    assert await held(emu, http) == {"KR1": before["KR1"], "KR2": before["KR2"] | {mine}}
    await emu_delete(emu, http, mine)


async def emu_delete(
    emu: Emulator, http: aiohttp.ClientSession, image_id: str, region: str = "KR2"
) -> None:
    api = Api(http, emu.regions[region], await token(emu, SRC, http))
    assert (await api.call("DELETE", f"/v2/images/{image_id}")).status == 204


async def test_usage_errors_say_what_is_wrong_and_create_nothing(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    before = await held(emu, http)
    missing = await run(home, "bench", "--from", SIDES[0])
    assert missing.code == 2 and "bench: --to CLOUD:REGION is required" in missing.err
    same = await run(home, "bench", "--from", SIDES[0], "--to", SIDES[0])
    assert same.code == 2 and "expected a target other than the source" in same.err
    stray = await run(home, *LINE, "--run", "0123456789ab")
    assert stray.code == 2 and "--run: only with --cleanup" in stray.err
    big = await run(home, *LINE, "--sizes", "2M", "--count", "3", "--max-bytes", "5M")
    assert big.code == 2, big.err
    assert "more than --max-bytes 5.0 MiB" in big.err and "give --yes" in big.err
    assert "Traceback" not in missing.err + same.err + stray.err + big.err
    assert await held(emu, http) == before


async def test_existing_images_are_read_and_left_as_they_were(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    ids = [
        await emu.seed_image("KR1", SRC.tenant_id, size=300_000, fill_seed=n, name=f"golden-{n}")
        for n in range(2)
    ]
    before = await held(emu, http)
    records = {i: emu.image_record("KR1", i) for i in ids}
    report_path = home / "bench.json"
    done = await run(
        home,
        *LINE,
        *("--images", "golden-*", "--transfers", "2", "--max-duration", "1s"),
        *("--json", str(report_path)),
    )
    assert done.code == 0, done.out + done.err
    report = json.loads(report_path.read_text())
    assert sorted(image["id"] for image in report["images"]) == sorted(ids)
    assert not report["synthetic"]
    assert {m["kind"] for m in report["measurements"] if m["bytes"]} == {
        "download",
        "upload",
        "copy",
    }
    assert {i: emu.image_record("KR1", i) for i in ids} == records  # not a field changed
    assert await held(emu, http) == before
    for image_id in ids:
        await emu_delete(emu, http, image_id, region="KR1")


def answer_on_a_terminal(home: Path, answer: str) -> tuple[int | None, str]:
    """``bench`` over --max-bytes in a pseudo-terminal, answering its question with ``answer``."""
    child: pexpect.spawn[str] = pexpect.spawn(
        sys.executable,
        ["-m", "transfer", *LINE, "--sizes", "1M", "--count", "3", "--max-bytes", "2M"],
        cwd=str(REPO),
        env=child_env(home),
        encoding="utf-8",
        timeout=30,
    )
    child.expect(r"Go ahead\? \[y/N\] ")
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, str(child.before)


async def test_on_a_terminal_it_asks_before_holding_more_than_max_bytes(
    emu: Emulator, http: aiohttp.ClientSession, home: Path
) -> None:
    before = await held(emu, http)
    code, said = await asyncio.to_thread(answer_on_a_terminal, home, "n")
    assert code == 2, said
    assert "not confirmed (give --yes, or fewer or smaller images)" in said
    assert await held(emu, http) == before
