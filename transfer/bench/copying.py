"""The full verified copy, measured on the engine itself: for each transfers value, one job
over the bench's source images (``bench-RUN_ID-tN``, its journal in the bench's temporary
folder), planned and run by the code ``image-transfer run`` uses (``plan_for_run``,
``run_job``), so the figure is the engine's: create, stream, the verifying GET, with
``transfers`` slots and the ``--bwlimit`` timetable.

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
from transfer.engine.runner import run_job
from transfer.journal import open_journal
from transfer.metadata import MARKER_JOB
from transfer.models import Image

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
) -> Measurement:
    """Run ``job`` on the engine for about ``window`` seconds; the whole images it copied and
    verified, over the time of the run."""
    m = Measurement(Kind.COPY, job.transfers)
    config = dataclasses.replace(config, journal=JournalConfig(path=work / "journal.db"))
    stop = anyio.Event()
    wanted = min(job.transfers, len(job.select.ids))

    async def close_window() -> None:
        await anyio.sleep(window)
        while progress.images_done + len(progress.active) < wanted:  # noqa: ASYNC110
            await anyio.sleep(0.02)  # the engine's counters have no event to wait on
        stop.set()

    async with open_journal(config.journal) as journal:
        plan, ticket = await plan_for_run(config, job, clouds, journal, "bench")
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(close_window)
            ran = await run_job(plan, journal=journal, stop=stop, progress=progress, ticket=ticket)
            tg.cancel_scope.cancel()
    results = ran.summary.results
    copied = [r for r in results if r.outcome is Outcome.COPIED]
    failed = [r for r in results if r.outcome is Outcome.FAILED]
    m.images = len(copied)
    m.bytes = sum(r.image_bytes for r in copied)
    m.seconds = ran.summary.ended - started if copied else 0.0
    m.failed = len(failed)
    m.error = next((r.error for r in failed if r.error), None)
    m.transient = all(r.retryable for r in failed)
    return m


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
