"""The live page in a real browser (headless Chromium): ``serve`` watches the journal while a
migration that the emulator slows down runs beside it.  The page must redraw its chart and its
tables at least twice while the run goes on, without a reload and without any error or CSP
violation in the browser; once the run is over, its counts must be the journal's, and the image
whose download the cloud refuses must be listed with the reason the journal gives.

The screenshot (taken mid-run) is kept in the test's folder, and copied where
``IMAGE_TRANSFER_SCREENSHOT`` says (``docs/live-page.png`` for the README)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import aiohttp

from tests.engine.helpers import (
    JOB,
    SRC,
    MiB,
    environment,
    finish,
    job_toml,
    seed_many,
    start_cli,
    write_config,
)
from tests.engine.helpers import emulator_fixture as _emulator_fixture
from tests.web.browser import chromium, keep_screenshot, require_browser
from tests.web.helpers import announced, stop
from transfer.emulator import Emulator
from transfer.journal.records import EntryState
from transfer.journal.sqlite import SqliteJournal

emu = _emulator_fixture(seed=43)
TARGET = "src/KR2"
# Redrawn twice (after the first drawing) while a worker holds a transfer.
UPDATED_TWICE_WHILE_HOLDING = """() => {
  const job = document.querySelector("section.job");
  if (!job) return false;
  const chart = job.querySelector(".chart-box");
  return Number(job.dataset.version) >= 3 && Number(chart.dataset.version) >= 3
    && chart.querySelector("svg polygon.total") !== null
    && job.querySelectorAll("tr[data-worker][data-source]").length > 0;
}"""
FAILED_WHILE_HOLDING = """() => document.querySelectorAll("tr.failed").length > 0
  && document.querySelectorAll("tr[data-worker][data-source]").length > 1"""
COUNTS = """() => Object.fromEntries([...document.querySelectorAll("section.job .count")]
  .map((c) => [c.dataset.state, Number(c.querySelector("b").textContent)]))"""


async def test_the_page_redraws_itself_during_a_run_and_ends_with_the_journals_counts(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    require_browser()
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    await seed_many(emu, [2 * MiB] * 8, prefix="golden")
    await emu.seed_image(
        "KR1", SRC.tenant_id, size=MiB, fill_seed=5, name="0-no-download",
        nhncloud_allow_download="false",
    )  # fmt: skip
    config = write_config(
        tmp_path, emu, job_toml(targets=(("src", "KR2"),), transfers=2, retries=1)
    )
    emu.set_faults(bandwidth=MiB)  # two transfers of 2 s each at a time: about 8 s
    serve = await start_cli("serve", "-c", str(config), "--listen", "127.0.0.1:0")
    run = None
    problems: list[str] = []

    def note(problem: str) -> None:
        problems.append(problem)

    try:
        url = await announced(serve)
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: note(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: note(str(e)))
            await page.goto(url)
            run = await start_cli("run", "-c", str(config), "--no-progress", env=environment())
            await page.wait_for_function(UPDATED_TWICE_WHILE_HOLDING, timeout=30_000)
            with contextlib.suppress(PlaywrightTimeout):  # the screenshot shows more then
                await page.wait_for_function(FAILED_WHILE_HOLDING, timeout=6_000)
            shot = tmp_path / "live-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            ran = await finish(run, within=60)
            assert ran.code == 1, ran.err  # the refused image failed, the rest were copied
            async with SqliteJournal(tmp_path / "journal.db") as journal:
                states = await journal.state_counts(JOB)
                entries = await journal.entries(JOB)
            wanted = {s.value: states.get(s.value, 0) for s in EntryState}
            await page.wait_for_function(
                f"() => ({COUNTS})().done === {wanted['done']}", timeout=15_000
            )
            shown = await page.evaluate(COUNTS)
            failed = await page.locator("tr.failed").all_inner_texts()
    finally:
        if run is not None and run.returncode is None:
            run.kill()
        await stop(serve)
    assert shown == wanted and wanted["done"] == 8 and wanted["failed"] == 1
    [refused] = [e for e in entries.values() if e.state == EntryState.FAILED]
    assert refused.last_error is not None and "403" in refused.last_error
    [row] = failed
    assert "0-no-download" in row and TARGET in row and refused.last_error in row, row
    assert problems == []  # no script error, no CSP violation
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    keep_screenshot(shot)
