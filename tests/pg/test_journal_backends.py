"""The Journal's semantics, checked on both backends: SQLite and a real PostgreSQL.

Each test runs twice (``backend`` is parametrised): what the engine sees must not depend on
where the journal lives.  PostgreSQL-only behaviour (several connections and processes,
connection loss, migrations) is in ``test_pg_journal``.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from transfer.errors import LeaseLost
from transfer.journal import Journal
from transfer.journal.records import STEPS, ItemKey, JournalEntry

JOB = "job1"
KEY = "dst/KR2"
Factory = Callable[[], Journal]


async def add_entry(journal: Journal, source_id: str, target_id: str | None = "t") -> JournalEntry:
    return await journal.ensure_entry(
        JOB,
        source_id,
        KEY,
        source_name=f"name-{source_id}",
        source_checksum="c" * 32,
        source_size=123,
        target_id=target_id,
        generation=0,
    )


async def publish(journal: Journal, worker: str, sources: list[str]) -> int:
    """Plan a job as its planner would: one entry per item, then publish them in order."""
    ticket = await journal.join_plan(JOB, worker, lease_seconds=30)
    assert ticket.planner
    for source_id in sources:
        await add_entry(journal, source_id)
    assert await journal.publish_plan(ticket, [(s, KEY) for s in sources]) == len(sources)
    return ticket.plan_id


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
            for index in range(20):
                tg.start_soon(work, index)

        entries = await journal.entries(JOB)
        assert len(entries) == 20
        assert {e.last_step for e in entries.values()} == {STEPS[-1]}
        assert await journal.state_counts(JOB) == {"done": 20}
        steps = await journal.steps(JOB, "s07", KEY)
        assert [s.step for s in steps] == list(STEPS) and all(s.ok for s in steps)


async def test_reset_job_forgets_entries_steps_and_plans_but_not_runs(backend: Factory) -> None:
    async with backend() as journal:
        run_id = await journal.start_run(JOB, "w")
        other_run = await journal.start_run("job2", "w")
        await publish(journal, "w", ["s1"])
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
        assert await journal.plan_status(JOB) is None
        assert await journal.claim(JOB, "w", limit=5, lease_seconds=30) == []
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


# -- work sharing --------------------------------------------------------------------------


async def test_one_planner_others_wait_and_join(backend: Factory) -> None:
    async with backend() as journal:
        first = await journal.join_plan(JOB, "a", lease_seconds=30)
        assert first.planner and first.worker == "a"
        status = await journal.plan_status(JOB)
        assert status is not None and status.planner == "a" and status.ready_at is None
        # Nothing to claim while the plan is being made.
        assert await journal.claim(JOB, "a", limit=5, lease_seconds=30) == []
        joined: list[bool] = []

        async def contender(worker: str) -> None:
            ticket = await journal.join_plan(JOB, worker, lease_seconds=30, poll_interval=0.02)
            assert ticket.plan_id == first.plan_id
            joined.append(ticket.planner)

        async with anyio.create_task_group() as tg:
            tg.start_soon(contender, "b")
            tg.start_soon(contender, "c")
            await anyio.sleep(0.2)
            assert joined == []  # still waiting for the plan
            assert await journal.renew_plan(first)
            for source_id in ("s1", "s2"):
                await add_entry(journal, source_id)
            assert await journal.publish_plan(first, [("s1", KEY), ("s2", KEY), ("s1", KEY)]) == 2
        assert joined == [False, False]
        status = await journal.plan_status(JOB)
        assert status is not None
        assert (status.plan_id, status.items, status.open, status.held) == (first.plan_id, 2, 2, 0)
        assert status.ready_at is not None
        # Published: a worker arriving now joins the same plan rather than planning again.
        late = await journal.join_plan(JOB, "d", lease_seconds=30)
        assert (late.plan_id, late.planner) == (first.plan_id, False)
        # Publishing twice is refused: the plan is no longer being planned.
        assert not await journal.renew_plan(first)
        with pytest.raises(LeaseLost, match="no longer a's to publish"):
            await journal.publish_plan(first, [])


async def test_claims_hand_out_each_item_once_in_plan_order(backend: Factory) -> None:
    async with backend() as journal:
        sources = [f"s{i:02}" for i in range(12)][::-1]  # the planner's order, not sorted
        plan_id = await publish(journal, "a", sources)
        first = await journal.claim(JOB, "a", limit=3, lease_seconds=30, plan_id=plan_id)
        assert first == [(s, KEY) for s in sources[:3]]
        claimed: dict[ItemKey, str] = dict.fromkeys(first, "a")

        async def worker(name: str) -> None:
            while items := await journal.claim(JOB, name, limit=2, lease_seconds=30):
                for item in items:
                    assert item not in claimed
                    claimed[item] = name
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for name in ("b", "c", "d"):
                tg.start_soon(worker, name)
        assert sorted(claimed) == sorted((s, KEY) for s in sources)
        entries = await journal.entries(JOB)
        assert {k: e.lease_owner for k, e in entries.items()} == claimed
        assert all(e.lease_expires is not None for e in entries.values())
        assert await journal.claim(JOB, "e", limit=5, lease_seconds=30) == []
        assert await journal.claim(JOB, "a", limit=0, lease_seconds=30) == []
        with pytest.raises(ValueError, match="positive number of seconds"):
            await journal.claim(JOB, "a", limit=1, lease_seconds=0)
        status = await journal.plan_status(JOB, plan_id)
        assert status is not None and (status.open, status.held) == (12, 12)


async def test_release_returns_unfinished_items_only(backend: Factory) -> None:
    async with backend() as journal:
        plan_id = await publish(journal, "a", ["s1", "s2", "s3"])
        items = await journal.claim(JOB, "a", limit=3, lease_seconds=30, plan_id=plan_id)
        await journal.update_entry(JOB, "s1", KEY, state="done")
        await journal.update_entry(JOB, "s2", KEY, state="running", last_step="create")
        await journal.release(JOB, "b", items)  # not b's to release: nothing happens
        assert await journal.claim(JOB, "b", limit=3, lease_seconds=30) == []
        await journal.release(JOB, "a", items)
        entries = await journal.entries(JOB)
        assert all(e.lease_owner is None for e in entries.values())
        # s1 is done; s2 (interrupted mid-way) and s3 (never started) are claimable again.
        again = await journal.claim(JOB, "b", limit=5, lease_seconds=30, plan_id=plan_id)
        assert sorted(again) == [("s2", KEY), ("s3", KEY)]
        assert (await journal.entries(JOB))[("s2", KEY)].last_step == "create"


async def test_an_expired_lease_is_taken_over_and_its_renewal_fails(backend: Factory) -> None:
    async with backend() as journal:
        plan_id = await publish(journal, "a", ["s1", "s2", "s3"])
        held_by_a = await journal.claim(JOB, "a", limit=2, lease_seconds=1.0, plan_id=plan_id)
        assert held_by_a == [("s1", KEY), ("s2", KEY)]
        await journal.update_entry(JOB, "s1", KEY, state="running", last_step="upload")
        # While a's leases are live, b only gets what a does not hold.
        assert await journal.claim(JOB, "b", limit=5, lease_seconds=30) == [("s3", KEY)]
        assert await journal.renew(JOB, "a", [("s2", KEY)], 1.0) == {("s2", KEY)}
        await anyio.sleep(1.3)  # a stops renewing: it died, or hangs
        stale = (await journal.entries(JOB))[("s1", KEY)]
        assert (stale.lease_owner, stale.lease_expires, stale.state) == (None, None, "running")
        taken = await journal.claim(JOB, "b", limit=5, lease_seconds=30, plan_id=plan_id)
        assert sorted(taken) == held_by_a
        # a learns it lost them, and must stop; b holds them and resumes from the journal.
        assert await journal.renew(JOB, "a", held_by_a, 30) == set()
        assert await journal.renew(JOB, "b", [*held_by_a, ("s3", KEY)], 30) == {
            *held_by_a,
            ("s3", KEY),
        }
        entry = (await journal.entries(JOB))[("s1", KEY)]
        assert (entry.lease_owner, entry.last_step) == ("b", "upload")
        await journal.release(JOB, "a", held_by_a)  # a late release by a changes nothing
        assert (await journal.entries(JOB))[("s1", KEY)].lease_owner == "b"


async def test_failed_items_wait_for_the_next_plan(backend: Factory) -> None:
    async with backend() as journal:
        first = await publish(journal, "a", ["s1", "s2"])
        items = await journal.claim(JOB, "a", limit=2, lease_seconds=30, plan_id=first)
        await journal.update_entry(JOB, "s1", KEY, state="failed", last_error="ServerError 503")
        await journal.update_entry(JOB, "s2", KEY, state="done")
        await journal.release(JOB, "a", items)
        # Not claimable again in the plan they failed in, by anyone: no run loops on them.
        assert await journal.claim(JOB, "b", limit=5, lease_seconds=30) == []
        status = await journal.plan_status(JOB)
        assert status is not None and (status.open, status.held) == (0, 0)
        # The plan is exhausted, so the next worker plans anew; re-planned items are pending.
        ticket = await journal.join_plan(JOB, "b", lease_seconds=30)
        assert ticket.planner and ticket.plan_id != first
        assert await journal.publish_plan(ticket, [("s1", KEY), ("s2", KEY)]) == 2
        entries = await journal.entries(JOB)
        assert {k[0]: (e.state, e.last_error) for k, e in entries.items()} == {
            "s1": ("pending", "ServerError 503"),
            "s2": ("pending", None),
        }
        # An older plan hands out nothing once a newer one is published.
        assert await journal.claim(JOB, "b", limit=5, lease_seconds=30, plan_id=first) == []
        assert len(await journal.claim(JOB, "b", limit=5, lease_seconds=30)) == 2


async def test_a_dead_planner_is_replaced(backend: Factory) -> None:
    async with backend() as journal:
        dead = await journal.join_plan(JOB, "a", lease_seconds=0.3)
        assert dead.planner
        with anyio.fail_after(10):
            replacement = await journal.join_plan(JOB, "b", lease_seconds=30, poll_interval=0.05)
        assert replacement.planner and replacement.plan_id != dead.plan_id
        assert not await journal.renew_plan(dead)
        await add_entry(journal, "s1")
        with pytest.raises(LeaseLost):
            await journal.publish_plan(dead, [("s1", KEY)])
        assert await journal.publish_plan(replacement, [("s1", KEY)]) == 1


async def test_publishing_unknown_items_publishes_nothing(backend: Factory) -> None:
    async with backend() as journal:
        ticket = await journal.join_plan(JOB, "a", lease_seconds=30)
        await add_entry(journal, "s1")
        await journal.update_entry(JOB, "s1", KEY, state="done")
        with pytest.raises(LookupError, match=r"no entry for job1 s2 -> dst/KR2 \(and 1 more\)"):
            await journal.publish_plan(ticket, [("s1", KEY), ("s2", KEY), ("s3", KEY)])
        assert (await journal.entries(JOB))[("s1", KEY)].state == "done"  # rolled back
        status = await journal.plan_status(JOB)
        assert status is not None and status.ready_at is None
        assert await journal.publish_plan(ticket, [("s1", KEY)]) == 1


async def test_an_abandoned_plan_is_replanned_but_a_worked_one_is_joined(
    backend: Factory,
) -> None:
    async with backend() as journal:
        ticket = await journal.join_plan(JOB, "a", lease_seconds=0.5)
        for source_id in ("s1", "s2"):
            await add_entry(journal, source_id)
        await journal.publish_plan(ticket, [("s1", KEY), ("s2", KEY)])
        await journal.claim(JOB, "a", limit=1, lease_seconds=30)
        await anyio.sleep(0.7)
        # Open items, and a live lease: someone works this plan, join it.
        joined = await journal.join_plan(JOB, "b", lease_seconds=0.5)
        assert (joined.plan_id, joined.planner) == (ticket.plan_id, False)
        await journal.release(JOB, "a", [("s1", KEY)])
        # Open items but nobody working them (every worker stopped): plan afresh, since the
        # sources may have changed since.
        fresh = await journal.join_plan(JOB, "b", lease_seconds=30)
        assert fresh.planner and fresh.plan_id != ticket.plan_id
        # Until the new plan is out, the published one still hands out its items.
        status = await journal.plan_status(JOB, ticket.plan_id)
        assert status is not None and status.open == 2
        assert await journal.claim(JOB, "a", limit=1, lease_seconds=30, plan_id=ticket.plan_id)
        latest = await journal.plan_status(JOB)
        assert latest is not None and (latest.plan_id, latest.ready_at) == (fresh.plan_id, None)
