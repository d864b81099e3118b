"""Who works which item, and when: the two schedulers of a run, and what they share.

- ``ItemRunner`` runs items through the pipeline: one metadata item alone, or every target
  of one source image at once, reading the source once for all of them (``FeedChooser``).
  One item's failure never stops the others; a fatal error stops the run.
- ``LocalScheduler``: this host works the whole plan.  ``transfers`` workers take source
  groups (the pairs that move bytes), ``checkers`` workers take metadata-only items; a stop
  lets running items finish and starts no new one.
- ``ClaimingScheduler``: a journal shared by several workers.  ``transfers`` workers claim
  items from the published plan (``WorkQueue.claim``), each under a lease that ``LeaseKeeper``
  renews; an item whose lease was lost is cancelled, and one whose worker died is claimed
  again once its lease runs out.

Like rclone's checkers and transfers, or s3transfer's executor per kind of work: the pools are
named, bounded and fed from one queue each.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Collection, Mapping, Sequence

import anyio
import structlog

from transfer.engine.feeds import Feed, FeedChooser
from transfer.engine.pipeline import Pipeline
from transfer.engine.planning import JobPlan, by_source, item_key
from transfer.engine.results import ActiveTransfer, ItemResult, Outcome, Progress
from transfer.engine.spool import SpoolArea
from transfer.errors import LeaseLost, TransferError
from transfer.journal import Journal, WorkQueue
from transfer.journal.records import EntryState, ItemKey, PlanTicket
from transfer.planner import Code, PlanItem

log = structlog.get_logger("transfer.engine.schedule")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseKeeper:
    """The items this worker holds under leases, renewed in the background.

    An item whose renewal fails was taken over by another worker: the work on it is cancelled
    (its ``ItemRunner`` turns that into a ``LeaseLost`` failure) and never written again.
    """

    def __init__(self, queue: WorkQueue, *, job: str, worker: str, lease_seconds: float) -> None:
        self.queue = queue
        self.job = job
        self.worker = worker
        self.lease_seconds = lease_seconds
        self._held: dict[ItemKey, anyio.CancelScope | None] = {}

    def hold(self, keys: Collection[ItemKey]) -> None:
        self._held.update(dict.fromkeys(keys))

    def drop(self, keys: Collection[ItemKey]) -> None:
        for key in keys:
            self._held.pop(key, None)

    def watch(self, key: ItemKey, scope: anyio.CancelScope) -> None:
        """Cancel ``scope`` if the lease on ``key`` is lost (a no-op for items not held)."""
        if key in self._held:
            self._held[key] = scope

    async def renew_forever(self) -> None:
        while True:
            await anyio.sleep(self.lease_seconds / 3)
            keys = set(self._held)
            if not keys:
                continue
            kept = await self.queue.renew(self.job, self.worker, keys, self.lease_seconds)
            for key in keys - kept:
                log.warning("lease lost", job=self.job, image=key[0], target=key[1])
                scope = self._held.get(key)
                if scope is not None:
                    scope.cancel()


class ItemRunner:
    """Runs plan items through the pipeline and collects their results."""

    def __init__(
        self,
        *,
        plan: JobPlan,
        pipeline: Pipeline,
        chooser: FeedChooser,
        area: SpoolArea,
        progress: Progress,
        stop: anyio.Event,
        leases: LeaseKeeper | None = None,
    ) -> None:
        self.plan = plan
        self.pipeline = pipeline
        self.chooser = chooser
        self.area = area
        self.progress = progress
        self.stop = stop
        self.leases = leases
        self.results: list[ItemResult] = []

    def record(self, result: ItemResult) -> None:
        self.results.append(result)
        self.progress.finished(result)

    async def run_item(self, item: PlanItem, feed: Feed | None) -> ItemResult:
        """One item through the pipeline; its trouble (the journal's, or a bug's) is its own."""
        assert item.source is not None
        name = item.source.name or item.source.id
        key = item_key(item)
        self.progress.active[key] = ActiveTransfer(
            name=name, target=item.target_key, total=item.source.size or 0
        )
        try:
            with anyio.CancelScope() as scope:
                if self.leases is not None:
                    self.leases.watch(key, scope)
                result = await self.pipeline.run_item(
                    item,
                    self.plan.targets[item.target_key],
                    self.plan.desired[key],
                    feed,
                )
            if scope.cancelled_caught:
                raise LeaseLost(f"another worker took over {name} -> {item.target_key}")
        except Exception as exc:
            if not isinstance(exc, TransferError):
                log.exception("internal error", image=item.source.id, target=item.target_key)
            result = ItemResult.failure(item, exc)
            if isinstance(exc, TransferError) and exc.fatal:
                self.stop.set()
        finally:
            self.progress.active.pop(key, None)
            if feed is not None:
                feed.release(item.target_key)  # never hold the image's other targets up
        self.record(result)
        return result

    async def run_group(self, group: Sequence[PlanItem]) -> None:
        """Every target of one source image at once, from one feed of its bytes."""
        source = group[0].source
        assert source is not None
        outcomes: list[ItemResult] = []

        async def one(item: PlanItem, feed: Feed) -> None:
            outcomes.append(await self.run_item(item, feed))

        try:
            regions = {i.target_key: self.plan.targets[i.target_key].region for i in group}
            async with (
                self.chooser.feed(source, regions) as feed,
                anyio.create_task_group() as tg,
            ):
                for item in group:
                    tg.start_soon(one, item, feed)
        except Exception as exc:
            log.exception("internal error", image=source.id)
            done = {r.target_key for r in outcomes}
            for item in group:
                if item.target_key not in done:
                    outcomes.append(ItemResult.failure(item, exc))
                    self.record(outcomes[-1])
        if all(r.outcome is not Outcome.FAILED for r in outcomes):
            # Every target has the bytes: the spool has served its purpose.
            await quietly(self.area.remove(source.id), "cannot remove the spool", source.id)


class LocalScheduler:
    """This host works every item of the plan (see the module docstring)."""

    def __init__(
        self, runner: ItemRunner, work: Sequence[PlanItem], *, transfers: int, checkers: int
    ) -> None:
        self.runner = runner
        self.groups = by_source([i for i in work if i.code in (Code.COPY, Code.REPAIR)])
        self.metadata = [i for i in work if i.code is Code.UPDATE]
        self.transfers = transfers
        self.checkers = checkers

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(min(self.transfers, len(self.groups))):
                tg.start_soon(self._transfer)
            for _ in range(min(self.checkers, len(self.metadata))):
                tg.start_soon(self._check)

    async def _transfer(self) -> None:
        while self.groups and not self.runner.stop.is_set():
            await self.runner.run_group(self.groups.pop(0))

    async def _check(self) -> None:
        while self.metadata and not self.runner.stop.is_set():
            await self.runner.run_item(self.metadata.pop(0), None)

    @property
    def not_started(self) -> int:
        """Items a stop left for the next run."""
        return sum(len(g) for g in self.groups) + len(self.metadata)

    @property
    def waiting_sources(self) -> set[str]:
        """Source images a stop left unstarted (their spools are kept for the next run)."""
        return {i.source.id for g in self.groups for i in g if i.source is not None}


class ClaimingScheduler:
    """This worker works the items it claims from a shared plan (see the module docstring)."""

    not_started = 0  # what this worker leaves, another worker (or the next run) claims
    waiting_sources: frozenset[str] = frozenset()

    def __init__(
        self,
        runner: ItemRunner,
        work: Sequence[PlanItem],
        *,
        journal: Journal,
        ticket: PlanTicket,
        worker: str,
        lease_seconds: float,
        in_sync: Collection[ItemKey],
    ) -> None:
        queue = journal.work_queue
        if queue is None:
            raise ValueError(f"{journal!r} hands out no work: it is not shared by workers")
        self.runner = runner
        self.journal = journal
        self.ticket = ticket
        self.leases = LeaseKeeper(
            queue, job=runner.plan.job.name, worker=worker, lease_seconds=lease_seconds
        )
        # The runner reports each item's cancel scope, so that a lost lease stops its work.
        runner.leases = self.leases
        self.by_key: Mapping[ItemKey, PlanItem] = {item_key(i): i for i in work}
        self.in_sync = in_sync

    async def run(self) -> None:
        async with anyio.create_task_group() as outer:
            outer.start_soon(self.leases.renew_forever)
            async with anyio.create_task_group() as tg:
                for _ in range(self.runner.plan.job.transfers):
                    tg.start_soon(self._claim_and_work)
            outer.cancel_scope.cancel()

    async def _claim_and_work(self) -> None:
        queue, job = self.leases.queue, self.leases.job
        targets = len(self.runner.plan.job.targets)
        while not self.runner.stop.is_set():
            keys = await queue.claim(
                job,
                self.leases.worker,
                limit=max(1, targets),
                lease_seconds=self.leases.lease_seconds,
                plan_id=self.ticket.plan_id,
            )
            if not keys:
                status = await queue.plan_status(job, self.ticket.plan_id)
                if status is None or status.open == 0:
                    return
                # Others hold the rest: wait, and take over whatever a dead worker leaves.
                await anyio.sleep(min(self.leases.lease_seconds / 4, 2.0))
                continue
            self.leases.hold(keys)
            try:
                await self._work(keys)
            finally:
                self.leases.drop(keys)
                await queue.release(job, self.leases.worker, keys)

    async def _work(self, keys: Sequence[ItemKey]) -> None:
        for key in keys:
            if key not in self.by_key:
                # Finished by a worker that died before saying so (this worker's own listing
                # shows it in sync), or not selected by this worker's config.
                done = key in self.in_sync
                await self.journal.update_entry(
                    self.leases.job,
                    *key,
                    state=EntryState.DONE if done else EntryState.FAILED,
                    last_error=None if done else "not in the plan of worker " + self.leases.worker,
                )
        mine = [self.by_key[k] for k in keys if k in self.by_key]
        for group in by_source([i for i in mine if i.code is not Code.UPDATE]):
            await self.runner.run_group(group)
        for item in mine:
            if item.code is Code.UPDATE:
                await self.runner.run_item(item, None)


async def quietly(work: Awaitable[object], what: str, image: str | None) -> None:
    """Spool housekeeping: a failure is logged, never a reason to fail a finished run."""
    try:
        await work
    except (OSError, TransferError) as exc:
        log.warning(what, image=image, error=str(exc))
