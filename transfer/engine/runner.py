"""Running a plan: the worker pools, the claims and leases, the journal's run record."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable
from pathlib import Path

import anyio
import structlog

from transfer.engine.feeds import Feed, FeedChooser
from transfer.engine.pipeline import Pipeline
from transfer.engine.planning import JobPlan, by_source, item_key
from transfer.engine.results import ActiveTransfer, ItemResult, Progress, RunSummary
from transfer.engine.spool import SpoolArea
from transfer.errors import LeaseLost, TransferError
from transfer.journal import Journal
from transfer.journal.records import ItemKey, JournalEntry, PlanTicket
from transfer.planner import Code, PlanItem
from transfer.streams import TokenBucket

log = structlog.get_logger("transfer.engine.runner")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
    lease_seconds: float = 30.0,
) -> RunSummary:
    """Execute a plan; returns when every item is done, failed or (after ``stop``) not started.

    ``clean_spool`` removes every spool file of the job at the end, even those kept so that
    the next run can resume the images that failed.

    With a ``ticket`` (a journal shared by several workers, see ``join_and_plan``) this worker
    takes only the items it claims from the published plan, holds each under a lease that a
    background task renews, and abandons an item whose lease it lost; an item whose worker died
    is claimed again once its lease runs out.
    """
    job = plan.job
    progress = progress or Progress()
    stop = stop or anyio.Event()
    started = time.monotonic()
    area = SpoolArea(root=plan.spool_dir or Path("spool"), job=job.name, journal=journal)
    if job.spool != "off":
        _ = area.reserve  # a bad IMAGE_TRANSFER_SPOOL_RESERVE is a usage error, before any work
    run_id = await journal.start_run(job.name, worker or default_worker_id())
    pipeline = Pipeline(
        job=job,
        journal=journal,
        run_id=run_id,
        source=plan.source_client,
        source_region=job.source.region,
        bucket=bucket,
        on_bytes=progress.add_bytes,
    )
    work = [i for i in plan.items if i.code in (Code.COPY, Code.REPAIR, Code.UPDATE)]
    data_items = [i for i in work if i.code in (Code.COPY, Code.REPAIR)]
    meta_items = [i for i in work if i.code is Code.UPDATE]
    groups = by_source(data_items)
    results: list[ItemResult] = []
    held: dict[ItemKey, anyio.CancelScope | None] = {}  # claimed items (shared journals only)
    entries = await journal.entries(job.name)
    chooser = FeedChooser(
        mode=job.spool,
        verify=job.verify,
        client=plan.source_client,
        area=area,
        entries=entries,
    )
    for item in plan.items:
        if item.code is Code.IN_SYNC and item.source is not None:
            await _record_in_sync(journal, job.name, item, entries.get(item_key(item)))
            results.append(
                ItemResult(
                    code=item.code,
                    target_key=item.target_key,
                    source_id=item.source.id,
                    source_name=item.source.name or item.source.id,
                    target_id=item.target.id if item.target else item.target_id,
                    outcome="in-sync",
                )
            )
    progress.images_total = len(work)
    progress.bytes_total = sum((i.source.size or 0) for i in data_items if i.source)

    def failed(item: PlanItem, exc: BaseException) -> ItemResult:
        assert item.source is not None
        return ItemResult(
            code=item.code,
            target_key=item.target_key,
            source_id=item.source.id,
            source_name=item.source.name or item.source.id,
            outcome="failed",
            error=str(exc) if isinstance(exc, TransferError) else f"internal error: {exc!r}",
        )

    def finished(result: ItemResult) -> None:
        results.append(result)
        progress.images_done += 1
        if result.outcome == "failed":
            progress.images_failed += 1

    async def run_one(item: PlanItem, feed: Feed | None) -> ItemResult:
        assert item.source is not None
        name = item.source.name or item.source.id
        key = (item.source.id, item.target_key)
        progress.active[key] = ActiveTransfer(
            name=name, target=item.target_key, total=item.source.size or 0
        )
        try:
            with anyio.CancelScope() as scope:
                if key in held:
                    held[key] = scope
                result = await pipeline.run_item(
                    item,
                    plan.targets[item.target_key],
                    plan.desired[(item.source.id, item.target_key)],
                    feed,
                )
            if scope.cancelled_caught:
                raise LeaseLost(f"another worker took over {name} -> {item.target_key}")
        except Exception as exc:
            # One image's trouble (the journal, or a bug) never stops the others.
            if not isinstance(exc, TransferError):
                log.exception("internal error", image=item.source.id, target=item.target_key)
            result = failed(item, exc)
            if isinstance(exc, TransferError) and exc.fatal:
                stop.set()
        finally:
            progress.active.pop(key, None)
            if feed is not None:
                feed.release(item.target_key)  # never hold the image's other targets up
        finished(result)
        return result

    async def run_group(group: list[PlanItem]) -> None:
        source = group[0].source
        assert source is not None
        outcomes: list[ItemResult] = []

        async def one(item: PlanItem, feed: Feed) -> None:
            outcomes.append(await run_one(item, feed))

        try:
            regions = {i.target_key: plan.targets[i.target_key].region for i in group}
            async with chooser.feed(source, regions) as feed, anyio.create_task_group() as tg:
                for item in group:
                    tg.start_soon(one, item, feed)
        except Exception as exc:
            log.exception("internal error", image=source.id)
            done = {r.target_key for r in outcomes}
            for item in group:
                if item.target_key not in done:
                    outcomes.append(failed(item, exc))
                    finished(outcomes[-1])
        if all(r.outcome != "failed" for r in outcomes):
            # Every target has the bytes: the spool has served its purpose.
            await _quietly(area.remove(source.id), "cannot remove the spool", source.id)

    async def data_loop() -> None:
        while groups and not stop.is_set():
            await run_group(groups.pop(0))

    async def meta_loop() -> None:
        while meta_items and not stop.is_set():
            await run_one(meta_items.pop(0), None)

    worker_id = worker or default_worker_id()
    by_key = {item_key(i): i for i in work}
    in_sync = {item_key(i) for i in plan.items if i.code is Code.IN_SYNC and i.source}

    queue = journal.work_queue

    async def claimed_loop(plan_id: int) -> None:
        assert queue is not None
        while not stop.is_set():
            keys = await queue.claim(
                job.name,
                worker_id,
                limit=max(1, len(job.targets)),
                lease_seconds=lease_seconds,
                plan_id=plan_id,
            )
            if not keys:
                status = await queue.plan_status(job.name, plan_id)
                if status is None or status.open == 0:
                    return
                # Others hold the rest: wait, and take over whatever a dead worker leaves.
                await anyio.sleep(min(lease_seconds / 4, 2.0))
                continue
            held.update(dict.fromkeys(keys))
            try:
                for key in keys:
                    if key not in by_key:
                        # Finished by a worker that died before saying so (this worker's own
                        # listing shows it in sync), or not selected by this worker's config.
                        done = key in in_sync
                        await journal.update_entry(
                            job.name,
                            *key,
                            state="done" if done else "failed",
                            last_error=None if done else "not in the plan of worker " + worker_id,
                        )
                mine = [by_key[k] for k in keys if k in by_key]
                for group in by_source([i for i in mine if i.code is not Code.UPDATE]):
                    await run_group(group)
                for item in mine:
                    if item.code is Code.UPDATE:
                        await run_one(item, None)
            finally:
                for key in keys:
                    held.pop(key, None)
                await queue.release(job.name, worker_id, keys)

    async def renew_leases() -> None:
        assert queue is not None
        while True:
            await anyio.sleep(lease_seconds / 3)
            keys = set(held)
            if not keys:
                continue
            kept = await queue.renew(job.name, worker_id, keys, lease_seconds)
            for key in keys - kept:
                log.warning("lease lost", job=job.name, image=key[0], target=key[1])
                scope = held.get(key)
                if scope is not None:
                    scope.cancel()

    if ticket is not None:
        async with anyio.create_task_group() as outer:
            outer.start_soon(renew_leases)
            async with anyio.create_task_group() as tg:
                for _ in range(job.transfers):
                    tg.start_soon(claimed_loop, ticket.plan_id)
            outer.cancel_scope.cancel()
        groups.clear()
        meta_items.clear()
    else:
        async with anyio.create_task_group() as tg:
            for _ in range(min(job.transfers, len(groups))):
                tg.start_soon(data_loop)
            for _ in range(min(job.checkers, len(meta_items))):
                tg.start_soon(meta_loop)

    # Keep the spools of images a target still needs (failed, or not started after a stop).
    keep = {r.source_id for r in results if r.outcome == "failed"}
    keep |= {i.source.id for g in groups for i in g if i.source is not None}
    await _quietly(area.tidy(keep, clean=clean_spool), "cannot tidy the spool", None)

    not_started = sum(len(g) for g in groups) + len(meta_items)
    interrupted = stop.is_set() and (not_started > 0 or ticket is not None)
    summary = RunSummary(
        job=job.name,
        run_id=run_id,
        results=results,
        plan=plan.items,
        started=started,
        ended=time.monotonic(),
        interrupted=interrupted,
        not_started=not_started,
    )
    await journal.finish_run(
        run_id,
        summary.outcome,
        {
            "copied": summary.count("copied"),
            "repaired": summary.count("repaired"),
            "updated": summary.count("updated"),
            "in_sync": summary.count("in-sync"),
            "failed": len(summary.failed),
            "bytes": summary.bytes,
            "not_started": not_started,
        },
    )
    return summary


async def _quietly(work: Awaitable[object], what: str, image: str | None) -> None:
    """Spool housekeeping: a failure is logged, never a reason to fail a finished run."""
    try:
        await work
    except (OSError, TransferError) as exc:
        log.warning(what, image=image, error=str(exc))


async def _record_in_sync(
    journal: Journal, job: str, item: PlanItem, entry: JournalEntry | None
) -> None:
    """A pair found in sync is done, whatever a killed run last wrote about it (``running``)
    or whether the journal knew it at all: the journal must agree with the clouds."""
    assert item.source is not None and item.target is not None
    if entry is not None and entry.state == "done" and entry.target_id == item.target.id:
        return
    src = item.source
    await journal.ensure_entry(
        job,
        src.id,
        item.target_key,
        source_name=src.name or "",
        source_checksum=src.checksum,
        source_size=src.size,
        target_id=item.target.id,
        generation=item.generation,
    )
    await journal.update_entry(job, src.id, item.target_key, state="done", last_error=None)
