"""The work queue (plans and leases) of the PostgreSQL journal: how several workers share one
job.  These tests use one connection; several connections and processes are in
``test_pg_journal``."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from tests.pg.helpers import JOB, KEY, add_entry, epochs, keys
from transfer.errors import LeaseLost
from transfer.journal.postgres import PgJournal
from transfer.journal.records import ItemKey

Factory = Callable[[], PgJournal]


async def publish(journal: PgJournal, worker: str, sources: list[str]) -> int:
    """Plan a job as its planner would: one entry per item, then publish them in order."""
    queue = journal.work_queue
    ticket = await queue.join_plan(JOB, worker, lease_seconds=30)
    assert ticket.planner
    for source_id in sources:
        await add_entry(journal, source_id)
    assert await queue.publish_plan(ticket, [(s, KEY) for s in sources]) == len(sources)
    return ticket.plan_id


def test_a_journal_has_one_work_queue(pg_journal: Factory) -> None:
    journal = pg_journal()
    assert journal.work_queue is journal.work_queue


async def test_one_planner_others_wait_and_join(pg_journal: Factory) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        first = await queue.join_plan(JOB, "a", lease_seconds=30)
        assert first.planner and first.worker == "a"
        status = await queue.plan_status(JOB)
        assert status is not None and status.planner == "a" and status.ready_at is None
        # Nothing to claim while the plan is being made.
        assert await queue.claim(JOB, "a", limit=5, lease_seconds=30) == []
        joined: list[bool] = []

        async def contender(worker: str) -> None:
            ticket = await queue.join_plan(JOB, worker, lease_seconds=30, poll_interval=0.02)
            assert ticket.plan_id == first.plan_id
            joined.append(ticket.planner)

        async with anyio.create_task_group() as tg:
            tg.start_soon(contender, "b")
            tg.start_soon(contender, "c")
            await anyio.sleep(0.2)
            assert joined == []  # still waiting for the plan
            assert await queue.renew_plan(first)
            for source_id in ("s1", "s2"):
                await add_entry(journal, source_id)
            assert await queue.publish_plan(first, [("s1", KEY), ("s2", KEY), ("s1", KEY)]) == 2
        assert joined == [False, False]
        status = await queue.plan_status(JOB)
        assert status is not None
        assert (status.plan_id, status.items, status.open, status.held) == (first.plan_id, 2, 2, 0)
        assert status.ready_at is not None
        # Published: a worker arriving now joins the same plan rather than planning again.
        late = await queue.join_plan(JOB, "d", lease_seconds=30)
        assert (late.plan_id, late.planner) == (first.plan_id, False)
        # Publishing twice is refused: the plan is no longer being planned.
        assert not await queue.renew_plan(first)
        with pytest.raises(LeaseLost, match="no longer a's to publish"):
            await queue.publish_plan(first, [])


async def test_claims_hand_out_each_item_once_in_plan_order(pg_journal: Factory) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        sources = [f"s{i:02}" for i in range(12)][::-1]  # the planner's order, not sorted
        plan_id = await publish(journal, "a", sources)
        first = keys(await queue.claim(JOB, "a", limit=3, lease_seconds=30, plan_id=plan_id))
        assert first == [(s, KEY) for s in sources[:3]]
        claimed: dict[ItemKey, str] = dict.fromkeys(first, "a")

        async def worker(name: str) -> None:
            while items := keys(await queue.claim(JOB, name, limit=2, lease_seconds=30)):
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
        assert await queue.claim(JOB, "e", limit=5, lease_seconds=30) == []
        assert await queue.claim(JOB, "a", limit=0, lease_seconds=30) == []
        with pytest.raises(ValueError, match="positive number of seconds"):
            await queue.claim(JOB, "a", limit=1, lease_seconds=0)
        status = await queue.plan_status(JOB, plan_id)
        assert status is not None and (status.open, status.held) == (12, 12)


async def test_release_returns_unfinished_items_only(pg_journal: Factory) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        plan_id = await publish(journal, "a", ["s1", "s2", "s3"])
        items = epochs(await queue.claim(JOB, "a", limit=3, lease_seconds=30, plan_id=plan_id))
        await journal.update_entry(JOB, "s1", KEY, state="done")
        await journal.update_entry(JOB, "s2", KEY, state="running", last_step="create")
        await queue.release(JOB, "b", items)  # not b's to release: nothing happens
        assert await queue.claim(JOB, "b", limit=3, lease_seconds=30) == []
        await queue.release(JOB, "a", items)
        entries = await journal.entries(JOB)
        assert all(e.lease_owner is None for e in entries.values())
        # s1 is done; s2 (interrupted mid-way) and s3 (never started) are claimable again.
        again = keys(await queue.claim(JOB, "b", limit=5, lease_seconds=30, plan_id=plan_id))
        assert sorted(again) == [("s2", KEY), ("s3", KEY)]
        assert (await journal.entries(JOB))[("s2", KEY)].last_step == "create"


async def test_an_expired_lease_is_taken_over_and_its_renewal_fails(pg_journal: Factory) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        plan_id = await publish(journal, "a", ["s1", "s2", "s3"])
        claims_a = await queue.claim(JOB, "a", limit=2, lease_seconds=1.0, plan_id=plan_id)
        held_by_a = keys(claims_a)
        assert held_by_a == [("s1", KEY), ("s2", KEY)]
        await journal.update_entry(JOB, "s1", KEY, state="running", last_step="upload")
        # While a's leases are live, b only gets what a does not hold.
        claims_b = await queue.claim(JOB, "b", limit=5, lease_seconds=30)
        assert keys(claims_b) == [("s3", KEY)]
        a_s2 = {("s2", KEY): epochs(claims_a)[("s2", KEY)]}
        assert await queue.renew(JOB, "a", a_s2, 1.0) == {("s2", KEY)}
        await anyio.sleep(1.3)  # a stops renewing: it died, or hangs
        stale = (await journal.entries(JOB))[("s1", KEY)]
        assert (stale.lease_owner, stale.lease_expires, stale.state) == (None, None, "running")
        taken = await queue.claim(JOB, "b", limit=5, lease_seconds=30, plan_id=plan_id)
        assert sorted(keys(taken)) == held_by_a
        # Each claim is a new epoch, and these were takeovers.
        assert all(t.epoch > epochs(claims_a)[t.key] and t.taken_over for t in taken)
        # a learns it lost them, and must stop; b holds them and resumes from the journal.
        assert await queue.renew(JOB, "a", epochs(claims_a), 30) == set()
        assert await queue.renew(JOB, "b", epochs([*taken, *claims_b]), 30) == {
            *held_by_a,
            ("s3", KEY),
        }
        entry = (await journal.entries(JOB))[("s1", KEY)]
        assert (entry.lease_owner, entry.last_step) == ("b", "upload")
        await queue.release(JOB, "a", epochs(claims_a))  # a late release by a changes nothing
        assert (await journal.entries(JOB))[("s1", KEY)].lease_owner == "b"


async def test_failed_items_wait_for_the_next_plan(pg_journal: Factory) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        first = await publish(journal, "a", ["s1", "s2"])
        items = epochs(await queue.claim(JOB, "a", limit=2, lease_seconds=30, plan_id=first))
        await journal.update_entry(JOB, "s1", KEY, state="failed", last_error="ServerError 503")
        await journal.update_entry(JOB, "s2", KEY, state="done")
        await queue.release(JOB, "a", items)
        # Not claimable again in the plan they failed in, by anyone: no run loops on them.
        assert await queue.claim(JOB, "b", limit=5, lease_seconds=30) == []
        status = await queue.plan_status(JOB)
        assert status is not None and (status.open, status.held) == (0, 0)
        # The plan is exhausted, so the next worker plans anew; re-planned items are pending.
        ticket = await queue.join_plan(JOB, "b", lease_seconds=30)
        assert ticket.planner and ticket.plan_id != first
        assert await queue.publish_plan(ticket, [("s1", KEY), ("s2", KEY)]) == 2
        entries = await journal.entries(JOB)
        assert {k[0]: (e.state, e.last_error) for k, e in entries.items()} == {
            "s1": ("pending", "ServerError 503"),
            "s2": ("pending", None),
        }
        # An older plan hands out nothing once a newer one is published.
        assert await queue.claim(JOB, "b", limit=5, lease_seconds=30, plan_id=first) == []
        assert len(await queue.claim(JOB, "b", limit=5, lease_seconds=30)) == 2


async def test_a_dead_planner_is_replaced(pg_journal: Factory) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        dead = await queue.join_plan(JOB, "a", lease_seconds=0.3)
        assert dead.planner
        with anyio.fail_after(10):
            replacement = await queue.join_plan(JOB, "b", lease_seconds=30, poll_interval=0.05)
        assert replacement.planner and replacement.plan_id != dead.plan_id
        assert not await queue.renew_plan(dead)
        await add_entry(journal, "s1")
        with pytest.raises(LeaseLost):
            await queue.publish_plan(dead, [("s1", KEY)])
        assert await queue.publish_plan(replacement, [("s1", KEY)]) == 1


async def test_publishing_unknown_items_publishes_nothing(pg_journal: Factory) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        ticket = await queue.join_plan(JOB, "a", lease_seconds=30)
        await add_entry(journal, "s1")
        await journal.update_entry(JOB, "s1", KEY, state="done")
        with pytest.raises(LookupError, match=r"no entry for job1 s2 -> dst/KR2 \(and 1 more\)"):
            await queue.publish_plan(ticket, [("s1", KEY), ("s2", KEY), ("s3", KEY)])
        assert (await journal.entries(JOB))[("s1", KEY)].state == "done"  # rolled back
        status = await queue.plan_status(JOB)
        assert status is not None and status.ready_at is None
        assert await queue.publish_plan(ticket, [("s1", KEY)]) == 1


async def test_an_abandoned_plan_is_replanned_but_a_worked_one_is_joined(
    pg_journal: Factory,
) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        ticket = await queue.join_plan(JOB, "a", lease_seconds=0.5)
        for source_id in ("s1", "s2"):
            await add_entry(journal, source_id)
        await queue.publish_plan(ticket, [("s1", KEY), ("s2", KEY)])
        claimed = await queue.claim(JOB, "a", limit=1, lease_seconds=30)
        await anyio.sleep(0.7)
        # Open items, and a live lease: someone works this plan, join it.
        joined = await queue.join_plan(JOB, "b", lease_seconds=0.5)
        assert (joined.plan_id, joined.planner) == (ticket.plan_id, False)
        await queue.release(JOB, "a", epochs(claimed))
        # Open items but nobody working them (every worker stopped): plan afresh, since the
        # sources may have changed since.
        fresh = await queue.join_plan(JOB, "b", lease_seconds=30)
        assert fresh.planner and fresh.plan_id != ticket.plan_id
        # Until the new plan is out, the published one still hands out its items.
        status = await queue.plan_status(JOB, ticket.plan_id)
        assert status is not None and status.open == 2
        assert await queue.claim(JOB, "a", limit=1, lease_seconds=30, plan_id=ticket.plan_id)
        latest = await queue.plan_status(JOB)
        assert latest is not None and (latest.plan_id, latest.ready_at) == (fresh.plan_id, None)


async def test_reset_job_forgets_the_plans(pg_journal: Factory) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        await publish(journal, "w", ["s1"])
        await journal.reset_job(JOB)
        assert await queue.plan_status(JOB) is None
        assert await queue.claim(JOB, "w", limit=5, lease_seconds=30) == []


async def test_a_stale_holders_writes_are_refused_once_another_claimed_the_item(
    pg_journal: Factory,
) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        plan_id = await publish(journal, "a", ["s1"])
        run_id = await journal.start_run(JOB, "a")
        [stale] = await queue.claim(JOB, "a", limit=1, lease_seconds=0.3, plan_id=plan_id)
        await journal.step_started(JOB, "s1", KEY, "create", run_id, fence=stale.epoch)
        await anyio.sleep(0.5)  # a is paused past its lease
        [fresh] = await queue.claim(JOB, "b", limit=1, lease_seconds=30, plan_id=plan_id)
        assert fresh.epoch > stale.epoch and fresh.taken_over and fresh.takeovers == 1
        assert (fresh.target_id, fresh.generation) == ("t", 0)  # the plan's identity, as is
        # a wakes up: each of its writes is refused, and nothing of them is kept.
        with pytest.raises(LeaseLost, match="taken over by another worker"):
            await journal.update_entry(JOB, "s1", KEY, fence=stale.epoch, generation=7)
        with pytest.raises(LeaseLost):
            await journal.step_started(JOB, "s1", KEY, "upload", run_id, fence=stale.epoch)
        with pytest.raises(LeaseLost):
            await journal.step_finished(
                JOB, "s1", KEY, "create", run_id, ok=True, fence=stale.epoch
            )
        entry = (await journal.entries(JOB))[("s1", KEY)]
        assert (entry.generation, entry.last_step, entry.lease_owner) == (0, None, "b")
        assert [s.step for s in await journal.steps(JOB, "s1", KEY)] == ["create"]
        # b's writes, with its own token, go through.
        await journal.update_entry(JOB, "s1", KEY, fence=fresh.epoch, state="done")
        assert (await journal.entries(JOB))[("s1", KEY)].state == "done"


async def test_an_item_whose_leases_keep_running_out_is_failed_not_handed_out_forever(
    pg_journal: Factory,
) -> None:
    async with pg_journal() as journal:
        queue = journal.work_queue
        plan_id = await publish(journal, "a", ["s1", "s2"])
        # s2 is released each time (its worker stopped cleanly): never a takeover.
        for worker in ("a", "b", "c"):
            claims = await queue.claim(
                JOB, worker, limit=2, lease_seconds=0.2, plan_id=plan_id, max_takeovers=1
            )
            s2 = {k: e for k, e in epochs(claims).items() if k[0] == "s2"}
            await queue.release(JOB, worker, s2)
            await anyio.sleep(0.3)  # the worker holding s1 dies
        # s1: claimed by a, taken over once by b (the limit), then failed instead of given to c.
        assert keys(claims) == [("s2", KEY)]
        assert not claims[0].taken_over and claims[0].takeovers == 0
        entry = (await journal.entries(JOB))[("s1", KEY)]
        assert entry.state == "failed" and entry.lease_owner is None
        assert entry.last_error is not None and "taken over more than 1 times" in entry.last_error
        status = await queue.plan_status(JOB, plan_id)
        assert status is not None and (status.open, status.failed) == (1, 1)
