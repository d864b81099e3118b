"""How many journal commits a copy costs per image: a private copy with tags is 10 on an SQLite
journal of its own when images go one at a time (the entry; the first step's start with the
attempt; one per step's end, each with the next step's start; the last with ``done``), and
fewer when images run side by side (they share commits); the copies are still exact and the
journal still says what was done.  ``journal.commits`` is the counter the benchmark reads.

The run's samples (``transfer.engine.sampling``: at most one commit each, every two seconds
while bytes move, and one at the end) come on top, and are counted apart.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.engine.helpers import (
    DST,
    SRC,
    Target,
    copy_problems,
    emulator_fixture,
    environment,
    job_toml,
    journal_problems,
    write_config,
)
from transfer.cloud.sessions import open_clouds
from transfer.config.loader import load_config
from transfer.config.settings import HttpSettings
from transfer.emulator import Emulator
from transfer.engine.planning import build_plan
from transfer.engine.runner import run_plan
from transfer.journal.sqlite import SqliteJournal

FAST = HttpSettings(attempts=4, backoff_base=0.01, backoff_cap=0.1, retry_total=10.0)
KR2 = (Target("src/KR2", "KR2", SRC),)
#: The bound for a private copy with tags, one image at a time (20 before a step's end and the
#: next one's start were one transaction).
MAX_COMMITS_PER_IMAGE = 10

emu = emulator_fixture(seed=23)


async def commits_per_image(config_path: Path, job: str = "move") -> tuple[float, int]:
    """Run ``job`` once on its SQLite journal; the commits its images cost, per image (the
    run's own start and end, and its samples, left out), and how many images it worked."""
    config = load_config(config_path, environ=environment())
    async with (
        SqliteJournal(config.journal.path) as journal,
        open_clouds(config, FAST) as clouds,
    ):
        plan = await build_plan(config, config.jobs[job], clouds, journal)
        before = journal.commits
        summary = await run_plan(plan, journal=journal)
        assert summary.failed == [], [r.error for r in summary.failed]
        worked = len(summary.results)
        samples = len(await journal.samples(job))
        assert samples >= 1  # the last one, at the end of the run
        return (journal.commits - before - 2 - samples) / worked, worked


async def test_a_private_copy_with_tags_costs_at_most_10_commits_and_fewer_side_by_side(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    n = 6
    sources = [
        await emu.seed_image(
            "KR1", SRC.tenant_id, size=64 * 1024, fill_seed=700 + i, name=f"c-{i}", tags=["a", "b"]
        )
        for i in range(n)
    ]
    one_dir, many_dir = tmp_path / "one", tmp_path / "many"
    one_dir.mkdir()
    many_dir.mkdir()
    one = write_config(one_dir, emu, job_toml(targets=(("src", "KR2"),), transfers=1))
    alone, worked = await commits_per_image(one)
    assert worked == n
    assert alone <= MAX_COMMITS_PER_IMAGE, alone
    assert await copy_problems(emu, http, sources, KR2) == []
    assert await journal_problems(one_dir, sources, KR2) == []

    # The same copy into another tenant, eight images at a time: they share commits.
    many = write_config(many_dir, emu, job_toml(targets=(("dst", "KR1"),), transfers=8))
    together, worked = await commits_per_image(many)
    assert worked == n
    assert together < alone, (together, alone)
    assert await copy_problems(emu, http, sources, (Target("dst/KR1", "KR1", DST),)) == []
