"""One page for every worker: three ``image-transfer run`` processes share one job through a
PostgreSQL journal (``tests.hosts``' harness: the emulator as a process, capped bandwidth), and
one ``serve`` on that journal shows all three, each with the items it holds under its lease,
never one item in two workers' hands; at the end, the journal's counts.  In a browser too
(when Chromium is there), the page lists the three workers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from tests.engine.helpers import start_cli
from tests.hosts.cluster import JOB, WORKERS, Cluster, pg_unavailable_reason
from tests.pg.conftest import _unavailable
from tests.web.browser import CHROMIUM, chromium
from tests.web.helpers import announced, get, safe_answer_problems, stop


async def test_one_page_shows_three_workers_of_a_shared_journal_and_what_each_holds(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    reason = pg_unavailable_reason()
    if reason is not None:
        _unavailable(reason)
    async with Cluster(tmp_path, 7, images=24) as cluster:
        serve = await start_cli("serve", "-c", str(cluster.config), "--listen", "127.0.0.1:0")
        try:
            url = await announced(serve)
            workers = await cluster.start_workers(WORKERS)
            held: dict[str, set[str]] = {name: set() for name in WORKERS}
            deadline = time.monotonic() + 90
            while not all(held.values()) and time.monotonic() < deadline:
                job = (await get(http, url + f"api/jobs/{JOB}")).json()
                owners: dict[str, str] = {}
                for worker in job["workers"]:
                    for hold in worker["holds"]:
                        if hold["lease_expires"] is not None:
                            held[worker["worker"]].add(hold["source_id"])
                            other = owners.setdefault(hold["source_id"], worker["worker"])
                            assert other == worker["worker"], f"{hold} held by {other} too"
                await asyncio.sleep(0.15)
            outcomes = await cluster.wait_workers(workers)
            verdict = await cluster.verdict(outcomes, must_succeed=WORKERS)
            assert verdict.failures() == [], verdict.report()
            overview = await get(http, url + "api/overview")
            rows = await browser_rows(url)
        finally:
            served = await stop(serve)
    assert served.code == 0, served.err
    assert {name: bool(ids) for name, ids in held.items()} == dict.fromkeys(WORKERS, True)
    sources = {s.id for s in cluster.sources}
    assert set().union(*held.values()) <= sources
    document = overview.json()
    assert document["shared"] is True and document["journal"].startswith("postgresql://")
    [final] = document["jobs"]
    assert final["states"]["done"] == len(sources) == final["entries"]
    assert sorted(w["worker"] for w in final["workers"]) == sorted(WORKERS)
    assert {w["state"] for w in final["workers"]} == {"finished"}
    assert safe_answer_problems(overview) == []
    assert rows is None or sorted(rows) == sorted(WORKERS)


async def browser_rows(url: str) -> list[str] | None:
    """The workers the page lists in a browser (None without Chromium: the API is the test)."""
    if not CHROMIUM.exists():
        return None
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(url)
        await page.wait_for_selector("section.job table tr[data-worker]")
        rows = page.locator("section.job tr[data-worker]:not([data-source])")
        names = await rows.evaluate_all("(rows) => rows.map((row) => row.dataset.worker)")
        return [str(name) for name in names]
