"""The full verified copy, measured on the engine itself: for each transfers value, one job
over the bench's source images (``bench-RUN_ID-tN``, its journal in the bench's temporary
folder), planned and run by the code ``image-transfer run`` uses (``plan_for_run``,
``run_plan``, under ``run_job``), so the figure is the engine's: create, stream, the verifying
GET, with ``transfers`` slots, drawing on the bench's one ``--bwlimit`` bucket (already in use
by the measurements before it, so that no fresh burst flatters the copy).

The window closes as ``max_duration`` closes a run (the images in flight finish, no new one
starts), but never before every slot has had an image.  The copies are deleted at once after.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

import anyio

from transfer.bench.figures import Kind, Measurement
from transfer.bench.ledger import Side, Swept, delete_all
from transfer.bench.markers import job_name
from transfer.cloud.sessions import Clouds
from transfer.config.settings import (
    Config,
    CopyConfig,
    JobConfig,
    JournalConfig,
    SelectConfig,
    SpoolMode,
)
from transfer.engine.planning import plan_for_run
from transfer.engine.results import Outcome, Progress
from transfer.engine.runner import run_plan
from transfer.journal import open_journal
from transfer.metadata import MARKER_JOB
from transfer.models import Image
from transfer.streams import TokenBucket

#: Copies that carry nothing a bench could not delete: private, unprotected, no members.
BENCH_COPY = CopyConfig(
    protected=False,
    visibility=False,
    members=False,
    accept=False,
    share_with=(),
    member_map=MappingProxyType({}),
)


def copy_job(
    base: JobConfig, run_id: str, pool: Sequence[Image], transfers: int, work: Path
) -> JobConfig:
    """The engine job of one copy measurement: the pool's images, ``transfers`` slots, one
    attempt each (a bench reports failures rather than hiding them behind retries)."""
    return dataclasses.replace(
        base,
        name=job_name(run_id, transfers),
        transfers=transfers,
        checkers=max(8, transfers),
        retries=1,
        spool=SpoolMode.OFF,
        spool_dir=work / "spool",
        max_duration=None,
        prune=False,
        select=SelectConfig(ids=tuple(image.id for image in pool)),
        copy=BENCH_COPY,
    )


async def measure_copy(
    config: Config,
    job: JobConfig,
    clouds: Clouds,
    *,
    window: float,
    progress: Progress,
    work: Path,
    bucket: TokenBucket | None,
) -> Measurement:
    """Run ``job`` on the engine for about ``window`` seconds; the whole images it copied and
    verified, over the time from the first one's start to the last one's end."""
    m = Measurement(Kind.COPY, job.transfers)
    config = dataclasses.replace(config, journal=JournalConfig(path=work / "journal.db"))
    stop = anyio.Event()
    wanted = min(job.transfers, len(job.select.ids))

    async def close_window() -> None:
        await anyio.sleep(window)
        while progress.images_done + len(progress.active) < wanted:  # noqa: ASYNC110
            await anyio.sleep(0.02)  # the engine's counters have no event to wait on
        stop.set()

    span = _Span(progress)
    async with open_journal(config.journal) as journal:
        plan, ticket = await plan_for_run(config, job, clouds, journal, "bench")
        async with anyio.create_task_group() as tg:
            tg.start_soon(close_window)
            tg.start_soon(span.follow)
            summary = await run_plan(
                plan, journal=journal, bucket=bucket, progress=progress, stop=stop, ticket=ticket
            )
            tg.cancel_scope.cancel()
    span.look(time.monotonic())
    results = summary.results
    copied = [r for r in results if r.outcome is Outcome.COPIED]
    failed = [r for r in results if r.outcome is Outcome.FAILED]
    m.images = len(copied)
    m.bytes = sum(r.image_bytes for r in copied)
    m.seconds = span.seconds if copied else 0.0
    m.failed = len(failed)
    m.error = next((r.error for r in failed if r.error), None)
    m.transient = all(r.retryable for r in failed)
    return m


class _Span:
    """From the first image's start (its slot taken) to the last image's end, read off the
    engine's progress counters: the run's own set-up and wind-up (its journal records, the
    listings) are no part of the link's figure."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.first: float | None = None
        self.last: float | None = None
        self.done = 0

    def look(self, now: float) -> None:
        if self.first is None and (self.progress.active or self.progress.images_done):
            self.first = now
        if self.progress.images_done != self.done:
            self.done, self.last = self.progress.images_done, now

    async def follow(self) -> None:
        while True:
            self.look(time.monotonic())
            await anyio.sleep(0.005)

    @property
    def seconds(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return self.last - self.first


async def delete_copies(target: Side, job: JobConfig) -> Swept:
    """Delete the copies ``job`` made on ``target`` (found by the engine's job marker)."""
    swept = Swept(target.key)
    ids = [
        image.id
        async for image in target.client.list_images(
            owner=target.tenant, image_transfer_job=job.name
        )
        if image.raw.get(MARKER_JOB) == job.name and image.owner == target.tenant
    ]
    await delete_all(target, ids, swept)
    return swept
