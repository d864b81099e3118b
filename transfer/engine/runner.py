"""Running a planned job: the run's record in the journal, its scheduler, its deadline and its
bandwidth timetable.

``run_plan`` executes a plan once: it records the run, marks the pairs found in sync as done,
hands the rest to a scheduler (``LocalScheduler`` on one host, ``ClaimingScheduler`` when a
shared journal hands out the items), tidies the spool and records how the run ended.
While it runs, its counters go into the journal every ``sample_every`` seconds (None: never)
for the live page of ``image-transfer serve`` (``transfer.engine.sampling``).
``run_job`` is what ``image-transfer run`` calls: ``run_plan`` under the job's ``max_duration``
and ``bwlimit`` timetable, stopped by the caller's ``stop`` event (SIGINT, SIGTERM) as well.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio

from transfer.bandwidth import follow_timetable
from transfer.config.settings import LeaseSettings
from transfer.engine.feeds import FeedChooser
from transfer.engine.pipeline import Pipeline
from transfer.engine.planning import JobPlan, OnItems, item_key, record_entry
from transfer.engine.results import ItemResult, Outcome, Progress, RunSummary
from transfer.engine.sampling import SAMPLE_SECONDS, Sampler, sampling
from transfer.engine.schedule import (
    ClaimingScheduler,
    ItemRunner,
    LocalScheduler,
    default_worker_id,
    quietly,
)
from transfer.engine.spool import SpoolArea
from transfer.engine.steps import Steps
from transfer.journal import Journal
from transfer.journal.records import EntryState, ItemKey, JournalEntry, PlanTicket
from transfer.planner import WORK_CODES, Code, PlanItem
from transfer.streams import TokenBucket


async def run_plan(
    plan: JobPlan,
    *,
    journal: Journal,
    worker: str | None = None,
    bucket: TokenBucket | None = None,
    progress: Progress | None = None,
    stop: anyio.Event | None = None,
    clean_spool: bool = False,
    ticket: PlanTicket | None = None,
    terms: LeaseSettings | None = None,
    deadline: anyio.Event | None = None,
    sample_every: float | None = SAMPLE_SECONDS,
) -> RunSummary:
    """Execute a plan; returns when every item is done, failed or (after ``stop``) not started.

    ``deadline`` is set (with ``stop``) when the job's ``max_duration`` stopped it: the run is
    then recorded as a deadline stop rather than an interruption.

    ``clean_spool`` removes every spool file of the job at the end, even those kept so that
    the next run can resume the images that failed.

    With a ``ticket`` (a journal shared by several workers, see ``plan_for_run``) this worker
    takes only the items it claims from the published plan, holds each under a lease (on
    ``terms``) that a background task renews, and hands over an item whose lease it lost; an
    item whose worker died is claimed again once its lease runs out.  Only the planner records
    the pairs found in sync: the others' listings came later, and the items are the holders'.
    """
    job = plan.job
    worker = worker or default_worker_id()
    progress = progress or Progress()
    stop = stop or anyio.Event()
    started, began = time.monotonic(), datetime.now(UTC)
    area = SpoolArea(
        root=plan.spool_dir or Path("spool"),
        job=job.name,
        journal=journal,
        reserve=plan.spool_reserve,
    )
    run_id = await journal.start_run(job.name, worker)
    commits_before = journal.commits
    entries = await journal.entries(job.name)
    runner = _item_runner(plan, journal, run_id, area, entries, bucket, progress, stop)
    scheduler = _scheduler(runner, journal=journal, ticket=ticket, worker=worker, terms=terms)

    take = _intake(runner, scheduler, journal, entries, ticket)
    sampler = Sampler(journal, progress, job=job.name, run_id=run_id, worker=worker)
    async with sampling(sampler, sample_every):
        await take(plan.items)
        listing_error = await _work(plan, scheduler, take, stop)

    # Keep the spools of images a target still needs (failed, or not started after a stop);
    # a plan cut short does not know every image that needs one.
    keep = {r.source_id for r in runner.results if r.outcome is Outcome.FAILED}
    keep |= scheduler.waiting_sources
    if plan.complete:
        await quietly(area.tidy(keep, clean=clean_spool), "cannot tidy the spool", None)

    interrupted = not plan.complete or (
        stop.is_set() and (scheduler.not_started > 0 or ticket is not None)
    )
    summary = RunSummary(
        job=job.name,
        run_id=run_id,
        results=runner.results,
        plan=plan.items,
        started=started,
        ended=time.monotonic(),
        started_at=began,
        ended_at=datetime.now(UTC),
        interrupted=interrupted,
        deadline=interrupted and deadline is not None and deadline.is_set(),
        not_started=scheduler.not_started,
        failed_elsewhere=scheduler.failed_elsewhere,
        journal_commits=journal.commits - commits_before,
    )
    await journal.finish_run(run_id, summary.outcome, summary.journal_summary())
    if listing_error is not None:
        raise listing_error
    return summary


def _scheduler(
    runner: ItemRunner,
    *,
    journal: Journal,
    ticket: PlanTicket | None,
    worker: str,
    terms: LeaseSettings | None,
) -> LocalScheduler | ClaimingScheduler:
    """This host's scheduler of the work (fed by ``add`` as the plan is made), or (with a
    ``ticket``) a claimer of the shared plan."""
    plan = runner.plan
    job = plan.job
    if ticket is None:
        return LocalScheduler(
            runner, (), transfers=job.transfers, checkers=job.checkers, more=not plan.complete
        )
    if not plan.complete:
        raise ValueError("a shared plan is published whole: it cannot be streamed")
    return ClaimingScheduler(
        runner,
        plan.items,
        journal=journal,
        ticket=ticket,
        worker=worker,
        terms=terms or LeaseSettings(),
    )


def _intake(
    runner: ItemRunner,
    scheduler: LocalScheduler | ClaimingScheduler,
    journal: Journal,
    entries: Mapping[ItemKey, JournalEntry],
    ticket: PlanTicket | None,
) -> OnItems:
    """What the run does with newly planned items: those in sync are done (recorded by this
    host, or by the shared plan's planner), the rest counted and given to the scheduler."""
    job = runner.plan.job.name
    progress = runner.progress

    async def take(items: list[PlanItem]) -> None:
        for item in items:
            if item.code is Code.IN_SYNC and item.source is not None:
                if ticket is None or ticket.planner:
                    await _record_in_sync(journal, job, item, entries.get(item_key(item)))
                target_id = item.target.id if item.target else item.target_id
                runner.results.append(
                    ItemResult.of(item, target_id=target_id, outcome=Outcome.IN_SYNC)
                )
        work = [i for i in items if i.code in WORK_CODES]
        progress.images_total += len(work)
        progress.bytes_total += sum(
            (i.source.size or 0) for i in work if i.source and i.code is not Code.UPDATE
        )
        if isinstance(scheduler, LocalScheduler):
            scheduler.add(work)

    return take


async def _work(
    plan: JobPlan,
    scheduler: LocalScheduler | ClaimingScheduler,
    take: OnItems,
    stop: anyio.Event,
) -> Exception | None:
    """Run the scheduler while the plan's source is listed and planned (``take`` gets each
    source's items).  A stop ends the listing too.  When the listing fails, the images under
    way finish, no new one starts, and the listing's error is returned."""
    pending = plan.pending
    if pending is None:
        await scheduler.run()
        return None
    assert isinstance(scheduler, LocalScheduler)
    failure: list[Exception] = []

    async def listing(scope: anyio.CancelScope) -> None:
        try:
            with scope:
                await pending.run(take)
        except Exception as exc:
            failure.append(exc)
        finally:
            scheduler.close(abandon=bool(failure))

    async def on_stop(scope: anyio.CancelScope) -> None:
        await stop.wait()
        scope.cancel()

    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(listing, scope)
        tg.start_soon(on_stop, scope)
        await scheduler.run()
        tg.cancel_scope.cancel()
    return failure[0] if failure else None


def _item_runner(
    plan: JobPlan,
    journal: Journal,
    run_id: int,
    area: SpoolArea,
    entries: Mapping[ItemKey, JournalEntry],
    bucket: TokenBucket | None,
    progress: Progress,
    stop: anyio.Event,
) -> ItemRunner:
    """The pipeline of this run, and the feeds of its sources, as one ``ItemRunner``."""
    job = plan.job
    return ItemRunner(
        plan=plan,
        pipeline=Pipeline(
            steps=Steps(
                job=job,
                journal=journal,
                source_region=job.source.region,
                bucket=bucket,
                on_bytes=progress.add_bytes,
            ),
            run_id=run_id,
            source=plan.source_client,
        ),
        chooser=FeedChooser(
            mode=job.spool, verify=job.verify, client=plan.source_client, area=area, entries=entries
        ),
        area=area,
        progress=progress,
        stop=stop,
    )


@dataclass
class JobRun:
    """What ``run_job`` gives back: the run's summary, and whether its deadline cut it short."""

    summary: RunSummary
    deadline: bool = False


async def run_job(
    plan: JobPlan,
    *,
    journal: Journal,
    stop: anyio.Event,
    worker: str | None = None,
    progress: Progress | None = None,
    clean_spool: bool = False,
    ticket: PlanTicket | None = None,
    terms: LeaseSettings | None = None,
    on_deadline: Callable[[], None] | None = None,
) -> JobRun:
    """``run_plan`` under the job's bandwidth timetable and ``max_duration``.

    ``stop`` (set by a signal) stops this job and any other; the deadline only this one.  When
    the deadline passes, ``on_deadline`` is called, running images finish and no new one
    starts.  A deadline that passes after every image was already under way does not count.
    """
    job = plan.job
    job_stop = anyio.Event()
    bucket = TokenBucket(None) if job.bwlimit is not None else None
    reached = anyio.Event()

    async def relay() -> None:
        await stop.wait()
        job_stop.set()

    async def deadline(seconds: float) -> None:
        await anyio.sleep(seconds)
        reached.set()
        if on_deadline is not None:
            on_deadline()
        job_stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(relay)
        if job.max_duration is not None:
            tg.start_soon(deadline, job.max_duration)
        if bucket is not None and job.bwlimit is not None:
            tg.start_soon(follow_timetable, job.bwlimit, bucket)
        summary = await run_plan(
            plan,
            journal=journal,
            worker=worker,
            bucket=bucket,
            progress=progress,
            stop=job_stop,
            clean_spool=clean_spool,
            ticket=ticket,
            terms=terms,
            deadline=reached,
        )
        tg.cancel_scope.cancel()
    return JobRun(summary=summary, deadline=summary.deadline)


async def _record_in_sync(
    journal: Journal, job: str, item: PlanItem, entry: JournalEntry | None
) -> None:
    """A pair found in sync is done, whatever a killed run last wrote about it (``running``)
    or whether the journal knew it at all: the journal must agree with the clouds."""
    assert item.source is not None and item.target is not None
    if entry is not None and entry.state == EntryState.DONE and entry.target_id == item.target.id:
        return
    await record_entry(journal, job, item, target_id=item.target.id)
    await journal.update_entry(job, *item_key(item), state=EntryState.DONE, last_error=None)
