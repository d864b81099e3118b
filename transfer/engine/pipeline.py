"""The pipeline of one (source image, target) pair: its steps in order, each journaled, under the
job's per-image retry budget.

``create -> upload -> verify -> tags -> properties -> share -> accept -> protect`` (the steps
themselves are ``transfer.engine.steps``).  The journal records each step's start and end before
the next step begins, so a run killed at any line resumes from what was finished; every step is
idempotent, so running the pipeline again converges instead of duplicating.

What is written when, so that an image costs few commits and loses nothing: a step's end and
the next step's start are one transaction (``step_finished(then=...)``), and so are the last
step's end and the entry's ``done``; what a step learns for the journal (a new generation, the
upload's hashes) and the attempt count go with the item's next journal write
(``ItemState.pending``), which always comes before the next request that changes a target.  A
restart thus finds a state the separate writes could have left too (before or after them all),
never one in between.  A private copy with tags costs 10 commits on a journal of its own
(``tests/engine/test_commits.py``), fewer where images share commits (SQLite's group commit).

A failed attempt is retried when its error says another attempt may help
(``TransferError.image_retryable``), after the job's ``retry_backoff`` (exponential, full
jitter, at least any ``Retry-After``; the scheduler lends the image's transfer slot to another
image meanwhile), and the retry re-examines the target from scratch, bytes included.  Within
an attempt the data steps run in the image's transfer slot and the metadata steps among the
job's checkers (``slots.Lanes``): once the verify's GET has proven the bytes, the slot moves the
next image's.  A target
Glance is still settling is waited out without counting an attempt.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

import anyio

from transfer.cloud.client import ImageClient
from transfer.engine.feeds import DirectFeed, Feed, in_flight_algorithms
from transfer.engine.listing import Target
from transfer.engine.planning import record_entry
from transfer.engine.results import SUCCESS_BY_CODE, ItemResult, Outcome
from transfer.engine.slots import Lanes
from transfer.engine.steps import ItemState, Steps
from transfer.errors import (
    IntegrityError,
    JournalError,
    LeaseLost,
    NotFound,
    RequestTooLarge,
    StorageFull,
    TargetDiscarded,
    TargetSettled,
    TransferError,
    Unsettled,
)
from transfer.journal.records import Claim, EntryState, Step
from transfer.log import get_logger
from transfer.metadata import DesiredTarget
from transfer.planner import Code, PlanItem

log = get_logger("transfer.engine.pipeline")

#: How many fresh generations one attempt may make before giving up (each needs a delete).
MAX_GENERATIONS_PER_ATTEMPT = 3
#: How many times one attempt waits out a target Glance was still settling.
MAX_SETTLES_PER_ATTEMPT = 5
#: The steps that move and prove the bytes, then those that bring the metadata in line.
DATA_STEPS = (Step.CREATE, Step.UPLOAD, Step.VERIFY)
METADATA_STEPS = (Step.TAGS, Step.PROPERTIES, Step.SHARE, Step.ACCEPT, Step.PROTECT)
#: Each step with the one after it (whose start its end journals), or None for the last.
DATA_CHAIN: tuple[tuple[Step, Step | None], ...] = tuple(
    zip(DATA_STEPS, (*DATA_STEPS[1:], METADATA_STEPS[0]), strict=True)
)
METADATA_CHAIN: tuple[tuple[Step, Step | None], ...] = tuple(
    zip(METADATA_STEPS, (*METADATA_STEPS[1:], None), strict=True)
)


async def _sleep(seconds: float) -> bool:
    await anyio.sleep(seconds)
    return True


class Pipeline:
    """Runs the steps for the items of one job run."""

    def __init__(
        self,
        *,
        steps: Steps,
        run_id: int,
        source: ImageClient,
        pause: Callable[[float], Awaitable[bool]] | None = None,
    ) -> None:
        self.steps = steps
        #: How an image waits between attempts: ``pause(seconds)`` returns False when the run
        #: stopped meanwhile (the scheduler's, which lends the image's slot to another).
        self.pause = pause or _sleep
        self.job = steps.job
        self.journal = steps.journal
        self.run_id = run_id
        self.source = source

    async def run_item(
        self,
        item: PlanItem,
        target: Target,
        desired: DesiredTarget,
        feed: Feed | None = None,
        *,
        claim: Claim | None = None,
        pause: Callable[[float], Awaitable[bool]] | None = None,
        lanes: Lanes | None = None,
    ) -> ItemResult:
        """Bring one target in line with its source, with the job's per-image retry budget.

        ``feed`` gives the bytes (default: a download of the source for every attempt); the
        feed learns, after each attempt, that this target's first chance is over.

        With a ``claim`` (from a shared journal) the item's journal entry exists and the
        claim's target identity is the one to work on; every journal write carries its epoch,
        and once one is refused (another worker took the item over) this worker stops at once:
        no more writes, no clean-up, the item is handed over.  ``pause`` is how the item waits
        between attempts (default: the pipeline's).  ``lanes`` is where each part of an
        attempt runs: the data steps in the image's transfer slot, the metadata steps among the
        job's checkers (default: anywhere).
        """
        src = item.source
        assert src is not None
        if feed is None:
            feed = DirectFeed(self.source, src, in_flight_algorithms(self.job.verify, src))
        started = time.monotonic()
        if claim is None:
            entry = await record_entry(self.journal, self.job.name, item, target_id=item.target_id)
            target_id, generation, attempts = entry.target_id, entry.generation, entry.attempts
        else:
            target_id, generation, attempts = claim.target_id, claim.generation, claim.attempts
        st = ItemState(
            source=src,
            target=target,
            desired=desired,
            target_id=target_id or self.steps.target_id(src, target.key, generation),
            generation=generation,
            result=ItemResult.of(item),
            log=log.bind(job=self.job.name, image=src.id, target=target.key),
            feed=feed,
            fence=claim.epoch if claim is not None else None,
        )
        try:
            if target_id is None:
                st.pending["target_id"] = st.target_id  # with the first step's start
            if claim is not None and claim.taken_over:
                if st.pending:
                    await self._update(st)
                # A holder that lost the item may have left a target beside the journal's.
                await self.steps.remove_orphans(st)
            error = await self._attempts(
                st,
                attempts,
                data_needed=item.code in (Code.COPY, Code.REPAIR),
                pause=pause or self.pause,
                lanes=lanes or Lanes(None, None),
            )
            st.result.seconds = time.monotonic() - started
            st.result.target_id = st.target_id
            if error is None:
                await self._succeeded(st, item.code)
            else:
                await self._failed(st, error)
        except LeaseLost as exc:
            self._handed_over(st, str(exc))
        except JournalError as exc:
            if st.fence is None:
                raise
            # A shared journal out of reach: the lease runs out (or is released) and the item
            # is claimed again, by this worker or another, from what was journaled.
            self._handed_over(st, str(exc))
        return st.result

    def _handed_over(self, st: ItemState, reason: str) -> None:
        st.result.outcome = Outcome.HANDED_OVER
        st.result.error = reason
        st.result.target_id = st.target_id
        st.log.warning("handed over", reason=reason)

    async def _attempts(
        self,
        st: ItemState,
        attempts_before: int,
        *,
        data_needed: bool,
        pause: Callable[[float], Awaitable[bool]],
        lanes: Lanes,
    ) -> TransferError | None:
        """Up to ``retries`` attempts, spaced by the job's backoff; the last error, or None
        once one succeeded."""
        last_error: TransferError | None = None
        for attempt in range(1, self.job.retries + 1):
            waited = last_error is None or await self._wait_before(st, attempt, last_error, pause)
            if not waited:
                return last_error  # stopped (a signal, the deadline) while waiting
            st.result.attempts = attempt
            st.result.failed_step = None
            # Journaled with the attempt's first write, before its first change to a target.
            st.pending.update(state=EntryState.RUNNING, attempts=attempts_before + attempt)
            try:
                await self._settling(st, data_needed=data_needed, lanes=lanes)
            except (LeaseLost, JournalError):
                raise  # nothing more to write: the pipeline's caller decides
            except TransferError as exc:
                last_error = exc
                retry = exc.image_retryable and not exc.fatal
                st.log.warning("attempt failed", attempt=attempt, error=str(exc), will_retry=retry)
                await self._update(st, last_error=str(exc), failed_step=st.result.failed_step)
                if not retry:
                    return last_error
                # A retry re-examines the target from scratch, bytes included.
                data_needed = True
            else:
                return None
        return last_error

    async def _settling(self, st: ItemState, *, data_needed: bool, lanes: Lanes) -> None:
        """One attempt; a target that Glance was still settling is waited out (in the steps)
        and the attempt run again from its settled status, without counting one more."""
        for _ in range(MAX_SETTLES_PER_ATTEMPT):
            try:
                try:
                    await self._attempt(st, data_needed=data_needed, lanes=lanes)
                finally:
                    st.feed.release(st.target.key)
                return
            except TargetSettled:
                data_needed = True
        raise Unsettled(
            f"target {st.target_id} was still changing after {MAX_SETTLES_PER_ATTEMPT} waits"
        )

    async def _wait_before(
        self,
        st: ItemState,
        attempt: int,
        error: TransferError,
        pause: Callable[[float], Awaitable[bool]],
    ) -> bool:
        """The backoff before attempt ``attempt``; False when the run stopped meanwhile."""
        retry_after = getattr(error, "retry_after", None)
        seconds = self.job.retry_backoff.delay(attempt - 1, random.random(), retry_after)
        st.log.info("waiting before the next attempt", attempt=attempt, seconds=round(seconds, 2))
        started = time.monotonic()
        going_on = await pause(seconds)
        st.result.waited += time.monotonic() - started
        return going_on

    async def _succeeded(self, st: ItemState, code: Code) -> None:
        outcome = SUCCESS_BY_CODE.get(code, Outcome.IN_SYNC)
        if outcome is Outcome.UPDATED and st.uploaded:
            outcome = Outcome.REPAIRED
        st.result.outcome = outcome
        st.result.failed_step = None  # a step that failed on the way was overcome
        st.result.image_bytes = (st.source.size or 0) if st.uploaded else 0
        if st.pending or st.started != _DONE:  # else the last step's end recorded it
            await self._update(st, **self._done(st))
        st.log.info("done", outcome=outcome, bytes=st.result.bytes)

    async def _failed(self, st: ItemState, error: TransferError) -> None:
        reason = str(error)
        if isinstance(error, RequestTooLarge | StorageFull):
            # Whose store is full, said in words: the status alone reads like a bug of ours.
            reason = (
                f"target {st.target.key} ({st.target_id}): storage full or quota reached: {error}"
            )
        st.result.outcome = Outcome.FAILED
        st.result.error = reason
        st.result.retryable = error.transient
        failure = {"failed_step": st.result.failed_step, "retryable": error.transient}
        await self._update(st, state=EntryState.FAILED, last_error=reason, **failure)
        await self._remove_empty_target(st)
        st.log.error("failed", error=str(error))

    @staticmethod
    def _done(st: ItemState) -> dict[str, object]:
        """The entry of a pair whose target is done."""
        return {
            "state": EntryState.DONE,
            "last_error": None,
            "failed_step": None,
            "target_id": st.target_id,
            "generation": st.generation,
        }

    async def _update(self, st: ItemState, **fields: object) -> None:
        """Set entry fields, with any still pending, in one write."""
        await self.journal.update_entry(
            self.job.name, st.source.id, st.target.key, fence=st.fence, **_take(st), **fields
        )

    async def _remove_empty_target(self, st: ItemState) -> None:
        """Delete a target that never got data, so a failed image leaves no empty ``queued``
        image in the user's tenant; the next run finds its id gone and uses a new generation."""
        client = st.target.client
        try:
            image = await client.get_image(st.target_id)
            if image.status != "queued" or image.protected:
                return
            await client.delete_image(image.id)
        except NotFound:
            return
        except TransferError as exc:
            st.result.warnings.append(f"empty target {st.target_id} left in place: {exc}")
            return
        st.result.warnings.append(f"deleted empty target {st.target_id}")
        st.log.info("deleted empty target", target_id=st.target_id)

    # -- one attempt -------------------------------------------------------------------------

    async def _attempt(self, st: ItemState, *, data_needed: bool, lanes: Lanes) -> None:
        generations = 0
        while True:
            try:
                if data_needed:
                    for step, then in DATA_CHAIN:
                        # Only the upload holds a transfer slot; the create and the GET that
                        # verifies move no bytes, and run among the checkers.
                        uploading = step is Step.UPLOAD
                        await self._step(
                            st,
                            step,
                            then,
                            before_run=lanes.data if uploading else lanes.metadata,
                            before_end=lanes.metadata if uploading else None,
                        )
                else:
                    await lanes.metadata()
                    st.created = st.fresh = False
                    st.image = await st.target.client.get_image(st.target_id)
                    if st.image.status != "active":
                        # The target changed under us since planning: copy it properly.
                        data_needed = True
                        continue
                for step, then in METADATA_CHAIN:
                    await self._step(st, step, then)
                return
            except TargetDiscarded as restart:
                generations += 1
                if generations > MAX_GENERATIONS_PER_ATTEMPT:
                    raise IntegrityError(
                        f"gave up after {generations} replacement targets; the last: {restart}"
                    ) from None
                data_needed = True

    async def _step(
        self,
        st: ItemState,
        step: Step,
        then: Step | None,
        *,
        before_run: Callable[[], Awaitable[None]] | None = None,
        before_end: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """One step, its start and its end journaled (a failure's reason with it); on success
        its end and the start of the step ``then`` in one transaction (or, for the last step,
        its end and the entry's ``done``), with any fields pending.  ``before_run`` is awaited
        once its start is journaled (the lane it runs in), ``before_end`` between a success
        and the journaling of it."""
        where = (self.job.name, st.source.id, st.target.key, step, self.run_id)
        if st.started != step:
            await self.journal.step_started(*where, fence=st.fence, fields=_take(st) or None)
        st.started = None
        if before_run is not None:
            await before_run()
        try:
            detail = await self.steps.of(step)(st)
        except (LeaseLost, JournalError):
            raise  # the item is no longer this worker's to write
        except TransferError as exc:
            st.result.failed_step = step
            error = str(exc)
            if isinstance(exc, TargetDiscarded):
                error = "target discarded; a new generation follows"
            await self.journal.step_finished(
                *where, ok=False, error=error, fence=st.fence, fields=_take(st) or None
            )
            raise
        if before_end is not None:
            await before_end()
        fields = _take(st)
        if then is None:
            fields.update(self._done(st))
        await self.journal.step_finished(
            *where, ok=True, detail=detail, fence=st.fence, then=then, fields=fields
        )
        st.started = _DONE if then is None else then


#: ``ItemState.started`` once the last step's end recorded the entry as done.
_DONE = "done"


def _take(st: ItemState) -> dict[str, object]:
    """The item's pending entry fields, handed to the write that takes them."""
    fields, st.pending = st.pending, {}
    return fields
