"""How many commits a copy costs per image on a PostgreSQL journal, one worker working the
job's published plan one image at a time: the planner's entry, the claim, the steps (each
end with the next start), the release, and the plan's own writes spread over its images; the
copies are exact.  ``journal.commits`` is the counter the benchmark reads.  The run's samples
(``transfer.engine.sampling``: one commit each) are counted apart.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.engine.helpers import (
    SRC,
    Target,
    copy_problems,
    emulator_fixture,
    environment,
    job_toml,
    write_config,
)
from tests.pg.conftest import PgDatabase
from transfer.cloud.sessions import open_clouds
from transfer.config.loader import load_config
from transfer.config.settings import HttpSettings
from transfer.emulator import Emulator
from transfer.engine.planning import plan_for_run
from transfer.engine.runner import run_plan
from transfer.journal.postgres import PgJournal

FAST = HttpSettings(attempts=4, backoff_base=0.01, backoff_cap=0.1, retry_total=10.0)
#: The bound for a private copy with tags on a shared journal, the run's own writes included
#: (13.2 measured; 23.2 before a step's end and the next one's start were one transaction).
MAX_COMMITS_PER_IMAGE = 14

emu = emulator_fixture(seed=29)


async def test_a_private_copy_with_tags_costs_at_most_14_commits_on_postgresql(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path, pg_db: PgDatabase
) -> None:
    n = 5
    sources = [
        await emu.seed_image(
            "KR1", SRC.tenant_id, size=64 * 1024, fill_seed=800 + i, name=f"p-{i}", tags=["a"]
        )
        for i in range(n)
    ]
    path = write_config(tmp_path, emu, job_toml(targets=(("src", "KR2"),), transfers=1))
    path.write_text(path.read_text().replace('path = "journal.db"', f'url = "{pg_db.url}"'))
    config = load_config(path, environ=environment())
    job = config.jobs["move"]
    async with PgJournal(pg_db.url) as journal, open_clouds(config, FAST) as clouds:
        before = journal.commits
        plan, ticket = await plan_for_run(config, job, clouds, journal, "w1")
        summary = await run_plan(plan, journal=journal, worker="w1", ticket=ticket)
        samples = len(await journal.samples("move"))
        assert samples >= 1  # the last one, at the end of the run
        per_image = (journal.commits - before - samples) / n
    assert summary.failed == [], [r.error for r in summary.failed]
    assert len(summary.results) == n
    assert per_image <= MAX_COMMITS_PER_IMAGE, per_image
    assert await copy_problems(emu, http, sources, (Target("src/KR2", "KR2", SRC),)) == []
