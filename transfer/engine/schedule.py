"""Who works which item, and when: the two schedulers of a run, and what they share.

- ``ItemRunner`` runs items through the pipeline: one metadata item alone, or every target
  of one source image at once, reading the source once for all of them (``FeedChooser``).
  One item's failure never stops the others; a fatal error stops the run.
- ``LocalScheduler``: this host works the whole plan.  Source groups (the pairs that move
  bytes) start as transfer slots free up, each getting ready (its creates) ahead of its slot;
  ``checkers`` workers take metadata-only items; a stop lets running items finish and starts
  no new one.
- ``ClaimingScheduler``: a journal shared by several workers.  ``transfers`` workers claim
  items from the published plan (``WorkQueue.claim``), each under a lease that
  ``transfer.engine.leases.LeaseKeeper`` renews; an item is worked on the target identity the
  journal holds (``adopted``), an item whose lease was lost is cancelled and handed over, and
  one whose worker died is claimed again once its lease runs out.

Like rclone's checkers and transfers, or s3transfer's executor per kind of work: the pools are
named, bounded and fed from one queue each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import ParamSpec, TypeVar

import anyio

from transfer.cloud.transport import CALL_GUARD
from transfer.config.settings import LeaseSettings
from transfer.engine.feeds import Feed, FeedChooser
from transfer.engine.leases import ItemLease, LeaseKeeper
from transfer.engine.pipeline import Pipeline
from transfer.engine.planning import JobPlan, by_source, item_key
from transfer.engine.prefetch import prefetching
from transfer.engine.results import ActiveTransfer, ItemResult, Outcome, Progress
from transfer.engine.slots import ImageSlot, Lanes, TransferSlots
from transfer.engine.spool import SpoolArea
from transfer.errors import JournalError, LeaseLost, TransferError
from transfer.journal import Journal
from transfer.journal.records import Claim, EntryState, ItemKey, PlanTicket
from transfer.log import get_logger
from transfer.planner import Code, PlanItem

log = get_logger("transfer.engine.schedule")
_T = TypeVar("_T")
_P = ParamSpec("_P")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
        #: Every step that moves no bytes (a create, the GET that verifies, the metadata
        #: steps), of copies and updates alike, runs holding one of these (``Lanes``).
        self.checkers = anyio.CapacityLimiter(plan.job.checkers)
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

    async def run_item(
        self, item: PlanItem, feed: Feed | None, slot: ImageSlot | None = None
    ) -> ItemResult:
        """One item through the pipeline; its trouble (the journal's, or a bug's) is its own.

        An item claimed from a shared journal runs under its lease: the lease guards its calls
        that change a cloud, and its loss (or a renewal that does not come in time) cancels
        the work, which is then the item's new holder's to finish."""
        assert item.source is not None
        name = item.source.name or item.source.id
        key = item_key(item)
        lease = self.leases.get(key) if self.leases is not None else None
        active = ActiveTransfer(name=name, target=item.target_key, total=item.source.size or 0)
        guarded = CALL_GUARD.set(lease)
        lanes = Lanes(
            slot.target() if slot is not None else None,
            self.checkers,
            on_start=lambda: self.progress.active.__setitem__(key, active),
        )
        try:
            with anyio.CancelScope() as scope:
                if lease is not None:
                    lease.watch(scope)
                result = await self.pipeline.run_item(
                    item,
                    self.plan.targets[item.target_key],
                    self.plan.desired[key],
                    feed,
                    claim=lease.claim if lease is not None else None,
                    pause=self._pause(lanes),
                    lanes=lanes,
                )
            if scope.cancelled_caught:
                why = "lost" if lease is not None and lease.lost else "not renewed in time"
                log.warning("handed over", image=item.source.id, target=item.target_key, lease=why)
                result = ItemResult.of(
                    item,
                    outcome=Outcome.HANDED_OVER,
                    error=f"the lease on {name} -> {item.target_key} was {why}: another worker "
                    "finishes it",
                )
        except Exception as exc:
            if not isinstance(exc, TransferError):
                log.exception("internal error", image=item.source.id, target=item.target_key)
            result = ItemResult.failure(item, exc)
            if isinstance(exc, TransferError) and exc.fatal:
                self.stop.set()
        finally:
            lanes.leave()
            CALL_GUARD.reset(guarded)
            self.progress.active.pop(key, None)
            if feed is not None:
                feed.release(item.target_key)  # never hold the image's other targets up
        self.record(result)
        return result

    def _pause(self, lanes: Lanes) -> Callable[[float], Awaitable[bool]]:
        """How one target waits between its attempts: out of its image's transfer slot and
        the checkers (the next attempt takes what it needs), until the time is up or the run
        stops (then False)."""

        async def pause(seconds: float) -> bool:
            lanes.leave()
            with anyio.move_on_after(seconds):
                await self.stop.wait()
            return not self.stop.is_set()

        return pause

    async def run_group(self, group: Sequence[PlanItem], slot: ImageSlot | None = None) -> None:
        """Every target of one source image at once, from one feed of its bytes, in the
        image's transfer ``slot``."""
        source = group[0].source
        assert source is not None
        outcomes: list[ItemResult] = []

        async def one(item: PlanItem, feed: Feed) -> None:
            outcomes.append(await self.run_item(item, feed, slot))

        try:
            regions = {i.target_key: self.plan.targets[i.target_key].region for i in group}
            async with (
                self.chooser.feed(source, regions) as base,
                prefetching(base) as feed,
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
        if all(r.outcome not in (Outcome.FAILED, Outcome.HANDED_OVER) for r in outcomes):
            # Every target has the bytes: the spool has served its purpose.
            await quietly(self.area.remove(source.id), "cannot remove the spool", source.id)


class LocalScheduler:
    """This host works every item of the plan (see the module docstring).

    A plan still being listed hands its items over as they are planned (``add``) and says
    when there are no more (``close``); until then the scheduler waits for work.
    """

    failed_elsewhere = 0  # no other worker

    def __init__(
        self,
        runner: ItemRunner,
        work: Sequence[PlanItem],
        *,
        transfers: int,
        checkers: int,
        more: bool = False,
    ) -> None:
        self.runner = runner
        self.groups: list[list[PlanItem]] = []
        self.metadata: list[PlanItem] = []
        self.slots = TransferSlots(transfers)
        self.checkers = checkers
        self._checking = 0  # checker tasks running
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = not more
        self._more = anyio.Event()
        self.add(work)

    def add(self, work: Sequence[PlanItem]) -> None:
        """More items to work (every target of a source together)."""
        self.groups += by_source([i for i in work if i.code in (Code.COPY, Code.REPAIR)])
        self.metadata += [i for i in work if i.code is Code.UPDATE]
        self._start_checkers()
        self._more.set()

    def close(self, *, abandon: bool = False) -> None:
        """No more items will come; with ``abandon``, none of those waiting starts either
        (the next run plans them again)."""
        if abandon:
            self.groups.clear()
            self.metadata.clear()
        self._closed = True
        self._more.set()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._start_checkers()
            while await self._has_work():
                ready = anyio.Event()
                tg.start_soon(self._transfer, ready)
                await ready.wait()
            self._tg = None

    def _start_checkers(self) -> None:
        while self._tg is not None and self._checking < min(self.checkers, len(self.metadata)):
            self._checking += 1
            self._tg.start_soon(self._check)

    async def _has_work(self) -> bool:
        """Whether an image waits (after waiting for the plan to give one): False once the
        run stops, or the plan is done and nothing is left."""
        while not self.groups and not self._closed and not self.runner.stop.is_set():
            self._more = anyio.Event()
            async with anyio.create_task_group() as tg:

                async def on_stop() -> None:
                    await self.runner.stop.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(on_stop)
                await self._more.wait()
                tg.cancel_scope.cancel()
        return bool(self.groups) and not self.runner.stop.is_set()

    async def _transfer(self, ready: anyio.Event) -> None:
        """The next image, once a slot is free (``ready``: it has one, or there is none)."""
        try:
            # Its creates are made while the slots move other images' bytes.
            async with self.slots.image(ahead=True) as slot:
                if not self.groups or self.runner.stop.is_set():
                    return
                group = self.groups.pop(0)
                ready.set()
                await self.runner.run_group(group, slot)
        finally:
            ready.set()

    async def _check(self) -> None:
        try:
            while self.metadata and not self.runner.stop.is_set():
                await self.runner.run_item(self.metadata.pop(0), None)
        finally:
            self._checking -= 1

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
        items: Sequence[PlanItem],
        *,
        journal: Journal,
        ticket: PlanTicket,
        worker: str,
        terms: LeaseSettings,
    ) -> None:
        queue = journal.work_queue
        if queue is None:
            raise ValueError(f"{journal!r} hands out no work: it is not shared by workers")
        self.runner = runner
        self.journal = journal
        self.ticket = ticket
        self.leases = LeaseKeeper(queue, job=runner.plan.job.name, worker=worker, terms=terms)
        self.slots = TransferSlots(runner.plan.job.transfers)
        # The runner runs each claimed item under its lease.
        runner.leases = self.leases
        #: This worker's own view of every pair of a source (work and in sync alike; not the
        #: ``-`` duplicates, which share their pair's key).
        self.own: Mapping[ItemKey, PlanItem] = {
            item_key(i): i for i in items if i.source is not None and i.code is not Code.EXTRA
        }
        self.failed_elsewhere = 0

    async def run(self) -> None:
        async with anyio.create_task_group() as outer:
            outer.start_soon(self.leases.renew_forever)
            async with anyio.create_task_group() as tg:
                while not self.runner.stop.is_set():
                    ready = anyio.Event()
                    outcome: list[bool] = []
                    tg.start_soon(self._claim_and_work, ready, outcome)
                    await ready.wait()
                    if outcome == [False]:
                        break  # the plan has nothing open left
            outer.cancel_scope.cancel()
        queue = self.leases.queue
        status = await self._journal(queue.plan_status, self.leases.job, self.ticket.plan_id)
        if status is not None:
            mine = sum(1 for r in self.runner.results if r.outcome is Outcome.FAILED)
            self.failed_elsewhere = max(0, status.failed - mine)

    async def _claim_and_work(self, ready: anyio.Event, outcome: list[bool]) -> None:
        """Once a transfer slot is free, claim the next items and work them in it; ``ready``
        is set once the claim is made (``outcome``: whether there may be more to claim)."""
        queue, job = self.leases.queue, self.leases.job
        targets = len(self.runner.plan.job.targets)
        try:
            async with self.slots.image() as slot:
                if self.runner.stop.is_set():  # stopped while this waited for a slot
                    outcome.append(False)
                    return
                leases = await self._journal(
                    self.leases.claim, max(1, targets), self.ticket.plan_id
                )
                if not leases:
                    if leases is not None:
                        status = await self._journal(queue.plan_status, job, self.ticket.plan_id)
                        if status is not None and status.open == 0:
                            outcome.append(False)
                            return
                        # Others hold the rest: wait, and take over what a dead worker leaves.
                        await anyio.sleep(min(self.leases.terms.lease_seconds / 4, 0.5))
                    outcome.append(True)
                    return
                outcome.append(True)
                ready.set()
                try:
                    await self._work(leases, slot)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.leases.release(leases)
        finally:
            ready.set()

    async def _journal(
        self, call: Callable[_P, Awaitable[_T]], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T | None:
        """A work-queue call; None when the journal cannot be reached right now (the caller
        tries again), a ``JournalError`` once it has been silent for two leases (every image
        this worker held is another's by then)."""
        limit = 2 * self.leases.terms.lease_seconds
        last_error = self.leases.renew_error or f"journal {self.journal!r}: no answer"
        if not self.leases.journal_silent:  # else the renewals probe it, one call at a time
            try:
                return await call(*args, **kwargs)
            except JournalError as exc:
                last_error = str(exc)
        silence = self.leases.silence
        if silence > limit:
            raise JournalError(
                f"{last_error}; the journal has not answered for {silence:.0f} s, longer than "
                "two leases: this worker stops, and the others take over its images"
            )
        log.warning("journal unreachable", error=last_error, seconds=round(silence, 1))
        await anyio.sleep(min(2.0, self.leases.terms.renew))
        return None

    async def _work(self, leases: Sequence[ItemLease], slot: ImageSlot) -> None:
        work: list[PlanItem] = []
        for lease in leases:
            own = self.own.get(lease.key)
            if own is None or (own.code is Code.IN_SYNC and own.target_id == lease.claim.target_id):
                # Not selected by this worker's config; or finished by a worker that died
                # before saying so (this worker's own listing shows it in sync).
                done = own is not None
                with contextlib.suppress(LeaseLost):
                    await self.journal.update_entry(
                        self.leases.job,
                        *lease.key,
                        fence=lease.epoch,
                        state=EntryState.DONE if done else EntryState.FAILED,
                        last_error=None
                        if done
                        else f"not in the plan of worker {self.leases.worker}",
                    )
                continue
            work.append(adopted(own, lease.claim))
        for group in by_source([i for i in work if i.code is not Code.UPDATE]):
            await self.runner.run_group(group, slot)
        for item in work:
            if item.code is Code.UPDATE:
                await self.runner.run_item(item, None, slot)


def adopted(own: PlanItem, claim: Claim) -> PlanItem:
    """This worker's plan item for a claimed pair, with the target identity the journal holds:
    the plan fixed it, and only the item's holders change it (a journaled new generation).
    A worker whose own listing shows another target (or none: the journaled one may not be
    created yet) copies into the journaled one, adopting it if it exists."""
    if own.target_id == claim.target_id and own.generation == claim.generation:
        return own
    if own.target is not None and own.target.id == claim.target_id:
        return dataclasses.replace(own, generation=claim.generation)
    return dataclasses.replace(
        own,
        code=Code.COPY,
        target=None,
        target_id=claim.target_id,
        generation=claim.generation,
        reasons=(*own.reasons, "adopting the journal's target"),
    )


async def quietly(work: Awaitable[object], what: str, image: str | None) -> None:
    """Spool housekeeping: a failure is logged, never a reason to fail a finished run."""
    try:
        await work
    except (OSError, TransferError) as exc:
        log.warning(what, image=image, error=str(exc))
