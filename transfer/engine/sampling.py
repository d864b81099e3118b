"""The samples a run writes into the journal while it goes on (``transfer.journal.samples``):
its ``Progress`` counters, and the transfers it holds with their bytes, every ``every``
seconds while they change, and once at the end.

A subscriber, like the live display: it reads ``Progress`` and never touches the pipeline.  A
sample that cannot be written is logged and skipped; it never fails the run.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from transfer.engine.results import Progress
from transfer.errors import TransferError
from transfer.journal import Journal
from transfer.journal.samples import HeldTransfer, Sample
from transfer.log import get_logger

log = get_logger("transfer.engine.sampling")

#: Seconds between two samples of a run that is moving bytes.
SAMPLE_SECONDS = 2.0


class Sampler:
    """Writes one run's samples (see the module docstring)."""

    def __init__(
        self, journal: Journal, progress: Progress, *, job: str, run_id: int, worker: str
    ) -> None:
        self.journal = journal
        self.progress = progress
        self.job = job
        self.run_id = run_id
        self.worker = worker
        self.written = 0
        self._last: Sample | None = None

    def take(self) -> Sample:
        """The run's counters now."""
        p = self.progress
        now = time.monotonic()
        active = tuple(
            HeldTransfer(
                source_id=key[0],
                target=key[1],
                name=t.name,
                done=t.done,
                total=t.total,
                seconds=max(0.0, now - t.started),
            )
            for key, t in sorted(p.active.items())
        )
        return Sample(
            job=self.job,
            run_id=self.run_id,
            worker=self.worker,
            bytes_done=p.bytes_done,
            bytes_total=p.bytes_total,
            images_done=p.images_done,
            images_failed=p.images_failed,
            images_total=p.images_total,
            active=active,
        )

    async def write(self) -> bool:
        """Record a sample if anything changed since the last one (a run that has done
        nothing yet writes none); whether one was written."""
        sample = self.take()
        if not _changed(self._last, sample):
            return False
        try:
            await self.journal.record_sample(sample)
        except TransferError as exc:
            log.warning("cannot record a sample", job=self.job, error=str(exc))
            return False
        self._last = sample
        self.written += 1
        return True

    async def run_forever(self, every: float) -> None:
        while True:
            await anyio.sleep(every)
            await self.write()


def _changed(last: Sample | None, sample: Sample) -> bool:
    if last is None:
        # Nothing to chart before the first image starts, or in a run with nothing to do.
        return bool(sample.bytes_done or sample.images_done or sample.active)

    # The seconds of a held transfer always grow: compare what it moved.
    def moved(s: Sample) -> tuple[object, ...]:
        return (
            s.bytes_done,
            s.bytes_total,
            s.images_done,
            s.images_failed,
            s.images_total,
            tuple((t.source_id, t.target, t.done) for t in s.active),
        )

    return moved(last) != moved(sample)


@asynccontextmanager
async def sampling(sampler: Sampler, every: float | None) -> AsyncIterator[None]:
    """Samples every ``every`` seconds while the body runs, and a last one when it ends
    (nothing at all when ``every`` is None)."""
    if every is None:
        yield
        return
    async with anyio.create_task_group() as tg:
        tg.start_soon(sampler.run_forever, every)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
    with anyio.CancelScope(shield=True):
        await sampler.write()
