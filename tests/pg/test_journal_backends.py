"""The Journal's semantics, checked on both backends: SQLite and a real PostgreSQL.

Each test runs twice (``backend`` is parametrised): what the engine sees must not depend on
where the journal lives.  The work queue, which only PostgreSQL has, is in ``test_work_queue``;
other PostgreSQL-only behaviour (several connections and processes, connection loss,
migrations) in ``test_pg_journal``.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from tests.pg.helpers import JOB, KEY, add_entry
from transfer.journal import Journal
from transfer.journal.records import STEPS, EntryState, Step

Factory = Callable[[], Journal]


async def test_everything_written_survives_close_and_reopen(backend: Factory) -> None:
    async with backend() as journal:
        run_id = await journal.start_run(JOB, "host:1")
        created = await add_entry(journal, "s1")
        assert (created.state, created.last_step, created.attempts) == ("pending", None, 0)
        assert created.updated_at.endswith("Z") and created.lease_owner is None
        await journal.step_started(JOB, "s1", KEY, "create", run_id)
        await journal.step_finished(JOB, "s1", KEY, "create", run_id, ok=True, detail={"id": "t"})
        await journal.step_started(JOB, "s1", KEY, "upload", run_id)
        await journal.step_finished(
            JOB, "s1", KEY, "upload", run_id, ok=False, error="ServerError 503"
        )
        await journal.update_entry(JOB, "s1", KEY, attempts=1, bytes_done=100, md5="m" * 32)
        await journal.finish_run(run_id, "partial", {"failed": 1, "bytes": 5 * 2**40})

    async with backend() as journal:
        entries = await journal.entries(JOB)
        assert list(entries) == [("s1", KEY)]
        got = entries[("s1", KEY)]
        assert (got.state, got.last_step, got.last_error) == (
            "running",
            "create",
            "ServerError 503",
        )
        assert (got.attempts, got.bytes_done, got.md5) == (1, 100, "m" * 32)
        steps = await journal.steps(JOB, "s1", KEY)
        assert [(s.step, s.ok, s.error) for s in steps] == [
            ("create", True, None),
            ("upload", False, "ServerError 503"),
        ]
        assert steps[0].detail == {"id": "t"} and steps[0].finished_at is not None
        assert steps[1].detail == {}
        [run] = await journal.runs(JOB)
        assert (run.id, run.worker, run.outcome, run.summary) == (
            run_id,
            "host:1",
            "partial",
            {"failed": 1, "bytes": 5 * 2**40},
        )
        assert run.finished_at is not None and run.finished_at >= run.started_at
        assert await journal.jobs() == [JOB]
        assert await journal.state_counts(JOB) == {"running": 1}


async def test_new_target_id_resets_progress_but_not_history(backend: Factory) -> None:
    async with backend() as journal:
        run_id = await journal.start_run(JOB, "w")
        await add_entry(journal, "s1", "old")
        await journal.step_started(JOB, "s1", KEY, "upload", run_id)
        await journal.step_finished(JOB, "s1", KEY, "upload", run_id, ok=True)
        await journal.update_entry(JOB, "s1", KEY, bytes_done=123, md5="m", attempts=2)
        same = await add_entry(journal, "s1", "old")
        assert (same.last_step, same.bytes_done, same.md5) == ("upload", 123, "m")
        kept = await add_entry(journal, "s1", None)  # no id given: nothing to reset
        assert (kept.target_id, kept.last_step) == ("old", "upload")
        fresh = await journal.ensure_entry(
            JOB,
            "s1",
            KEY,
            source_name="renamed",
            source_checksum="c" * 32,
            source_size=123,
            target_id="new",
            generation=1,
        )
        assert (fresh.target_id, fresh.generation, fresh.source_name) == ("new", 1, "renamed")
        assert (fresh.last_step, fresh.bytes_done, fresh.md5, fresh.state) == (
            None,
            0,
            None,
            "pending",
        )
        assert fresh.attempts == 2
        assert len(await journal.steps(JOB, "s1", KEY)) == 1


async def test_bad_calls_are_refused_and_leave_nothing_behind(backend: Factory) -> None:
    async with backend() as journal:
        run_id = await journal.start_run(JOB, "w")
        with pytest.raises(LookupError, match="no entry for job1 nope -> dst/KR2"):
            await journal.update_entry(JOB, "nope", KEY, state="done")
        with pytest.raises(LookupError):
            await journal.step_started(JOB, "nope", KEY, "create", run_id)
        with pytest.raises(LookupError, match="no run 999"):
            await journal.finish_run(999, "ok", {})
        await add_entry(journal, "s1")
        with pytest.raises(ValueError, match="not journal entry fields: job"):
            await journal.update_entry(JOB, "s1", KEY, job="other")
        with pytest.raises(ValueError, match="not journal entry fields: lease_owner"):
            await journal.update_entry(JOB, "s1", KEY, lease_owner="me")
        with pytest.raises(ValueError, match="unknown entry state"):
            await journal.update_entry(JOB, "s1", KEY, state="exploded")
        with pytest.raises(ValueError, match="unknown step 'teleport'"):
            await journal.step_started(JOB, "s1", KEY, "teleport", run_id)
        # The refused step start wrote no step and did not mark the entry running.
        assert await journal.steps(JOB, "nope", KEY) == []
        assert (await journal.entries(JOB))[("s1", KEY)].state == "pending"
        [run] = await journal.runs(JOB)
        assert run.outcome is None


async def test_concurrent_writers_from_many_tasks(backend: Factory) -> None:
    async with backend() as journal:
        run_id = await journal.start_run(JOB, "w")

        async def work(index: int) -> None:
            source_id = f"s{index:02}"
            await add_entry(journal, source_id)
            for step in STEPS:
                await journal.step_started(JOB, source_id, KEY, step, run_id)
                await journal.step_finished(JOB, source_id, KEY, step, run_id, ok=True)
            await journal.update_entry(JOB, source_id, KEY, state="done")

        async with anyio.create_task_group() as tg:
            for index in range(40):
                tg.start_soon(work, index)

        entries = await journal.entries(JOB)
        assert len(entries) == 40
        assert {e.last_step for e in entries.values()} == {STEPS[-1]}
        assert await journal.state_counts(JOB) == {"done": 40}
        steps = await journal.steps(JOB, "s07", KEY)
        assert [s.step for s in steps] == list(STEPS) and all(s.ok for s in steps)


async def test_reset_job_forgets_entries_and_steps_but_not_runs(backend: Factory) -> None:
    async with backend() as journal:
        run_id = await journal.start_run(JOB, "w")
        other_run = await journal.start_run("job2", "w")
        await add_entry(journal, "s1")
        await journal.step_started(JOB, "s1", KEY, "create", run_id)
        await journal.ensure_entry(
            "job2",
            "s1",
            KEY,
            source_name=None,
            source_checksum=None,
            source_size=None,
            target_id=None,
            generation=0,
        )
        await journal.step_started("job2", "s1", KEY, "create", other_run)
        await journal.reset_job(JOB)
        assert await journal.entries(JOB) == {}
        assert await journal.steps(JOB, "s1", KEY) == []
        assert len(await journal.entries("job2")) == 1
        assert [r.id for r in await journal.runs()] == [other_run, run_id]
        assert [r.id for r in await journal.runs(JOB)] == [run_id]
        # Sorted byte-wise whatever the database's locale.
        await journal.start_run("Job0", "w")
        assert await journal.jobs() == ["Job0", JOB, "job2"]


async def test_spool_records_per_host(backend: Factory) -> None:
    async with backend() as journal:
        for host in ("h2", "h1"):
            await journal.save_spool(
                JOB,
                "s1",
                host,
                path=f"/spool/{host}/s1",
                source_checksum="c" * 32,
                size=10 * 2**40,
                bytes_done=2**35,
                complete=False,
            )
        await journal.save_spool(
            JOB, "s1", "h1", path="/spool/h1/s1", source_checksum=None, size=1, bytes_done=1,
            complete=True,
        )  # fmt: skip
        both = await journal.spools(JOB)
        assert [(s.host, s.bytes_done, s.complete) for s in both] == [
            ("h1", 1, True),
            ("h2", 2**35, False),
        ]
        assert both[1].size == 10 * 2**40 and both[1].updated_at.endswith("Z")
        assert [s.host for s in await journal.spools(JOB, "h2")] == ["h2"]
        await journal.forget_spool(JOB, "s1", "h2")
        assert [s.host for s in await journal.spools(JOB)] == ["h1"]
        await journal.reset_job(JOB)
        assert await journal.spools(JOB) == []


async def test_not_opened_is_a_clear_error(backend: Factory) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await backend().jobs()


async def test_steps_and_states_may_be_given_as_enums_and_are_stored_as_text(
    backend: Factory,
) -> None:
    async with backend() as journal:
        run_id = await journal.start_run(JOB, "w")
        await add_entry(journal, "s1")
        await journal.step_started(JOB, "s1", KEY, Step.UPLOAD, run_id)
        await journal.step_finished(JOB, "s1", KEY, Step.UPLOAD, run_id, ok=True)
        await journal.update_entry(JOB, "s1", KEY, state=EntryState.DONE, last_step=Step.VERIFY)
    async with backend() as journal:
        entry = (await journal.entries(JOB))[("s1", KEY)]
        [step] = await journal.steps(JOB, "s1", KEY)
        values = (entry.state, entry.last_step, step.step)
        assert values == ("done", "verify", "upload")
        assert all(type(value) is str for value in values)
        assert await journal.state_counts(JOB) == {"done": 1}
