"""One bench, from the test images to the cleanup.

``Bench.run`` opens the two clouds, makes (or finds) the pool of source images, times the
single calls, then, for each transfers value in turn, measures the download alone, the upload
alone and the full copy, each within its share of ``max_duration`` (what is left, over the
measurements left).  Each moves at least one whole image per transfer, so a cap too short for
the images is run over, and the report says so.  Whatever happens (an error, a
signal through ``stop``), it ends by deleting everything it made, on both sides, shielded from
cancellation.
"""

from __future__ import annotations

import fnmatch
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import anyio

from transfer.bench import figures
from transfer.bench.copying import copy_job, delete_copies, measure_copy
from transfer.bench.figures import Kind, Latency, Measurement, Verdict
from transfer.bench.latency import source_latencies, target_latencies, token_latency
from transfer.bench.ledger import Ledger, Side, Swept, sweep
from transfer.bench.markers import is_bench_image
from transfer.bench.moves import Work, measure_downloads, measure_uploads, upload_synthetic
from transfer.cloud.sessions import Clouds, open_clouds
from transfer.config.settings import Config, Endpoint, HttpSettings, JobConfig
from transfer.engine.results import Progress
from transfer.errors import ConfigError
from transfer.models import Image
from transfer.streams import TokenBucket, human_bytes

#: Seconds the final cleanup may take before it gives up (and says what is left).
CLEANUP_TIMEOUT = 300.0


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    run_id: str
    sizes: tuple[int, ...]  # of the synthetic images (and of the upload measurement)
    count: int  # synthetic images of each size
    images: str | None  # a name glob: existing source images instead of synthetic ones
    transfers: tuple[int, ...]  # ascending
    max_duration: float  # seconds for all the measurements
    max_bytes: int  # at most this much in one cloud without asking
    bwlimit: float | None  # bytes/s for all transfers together


class Watch(Protocol):
    """How the bench shows itself (the command line's display)."""

    def phase(self, label: str, progress: Progress | None) -> AbstractAsyncContextManager[None]: ...

    def say(self, line: str) -> None: ...

    async def confirm(self, question: str) -> bool: ...


@dataclass
class BenchReport:
    run_id: str
    source: str
    target: str
    max_duration: float
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    pool: list[Image] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)
    cleanup: list[Swept] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0  # the throughput measurements took

    @property
    def overran(self) -> bool:
        """Whether the measurements ran well past ``max_duration`` (one image per transfer
        took longer than their shares)."""
        return self.seconds > 1.1 * self.max_duration + 1.0

    @property
    def pool_bytes(self) -> int:
        return sum(image.size or 0 for image in self.pool)

    @property
    def knee(self) -> tuple[int | None, str]:
        return figures.knee(figures.curve(self.measurements)[1])

    @property
    def verdict(self) -> Verdict:
        mean = self.pool_bytes / len(self.pool) if self.pool else 0.0
        return figures.limit(self.measurements, self.latencies, self.knee[0], mean)

    @property
    def left_behind(self) -> list[tuple[str, str]]:
        return [(s.key, image_id) for s in self.cleanup for image_id, _ in s.failed] + [
            (s.key, image_id) for s in self.cleanup for image_id in s.protected
        ]


class Bench:
    def __init__(
        self, config: Config, job: JobConfig, settings: BenchSettings, watch: Watch
    ) -> None:
        self.config, self.job, self.settings, self.watch = config, job, settings, watch
        self.ledger = Ledger()
        self.report = BenchReport(
            settings.run_id, job.source.key, job.targets[0].key, settings.max_duration
        )
        self._scope: anyio.CancelScope | None = None
        # No burst: after an idle spell (the latency calls) a short measurement would be
        # flattered by one.
        self._bucket = TokenBucket(settings.bwlimit, burst=64 * 1024) if settings.bwlimit else None

    def stop(self) -> None:
        """Stop measuring (a signal): what was made is deleted, then ``run`` returns."""
        self.report.interrupted = True
        if self._scope is not None:
            self._scope.cancel()

    def http(self) -> HttpSettings:
        widest = max(self.settings.transfers)
        return HttpSettings(
            requests_per_second=self.job.request_rate, pool_per_host=max(16, 2 * widest + 4)
        )

    async def run(self) -> BenchReport:
        async with open_clouds(self.config, self.http()) as clouds:
            source = await open_side(clouds, "source", self.job.source)
            target = await open_side(clouds, "target", self.job.targets[0])
            try:
                with anyio.CancelScope() as self._scope:
                    if not self.report.interrupted:
                        await self._measure(clouds, source, target)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
                    await self._clean(source, target)
        return self.report

    async def _clean(self, source: Side, target: Side) -> None:
        self.watch.say(f"bench {self.settings.run_id}: deleting what it created")
        for side in (target, source):
            swept = await sweep(side, self.settings.run_id, self.ledger)
            self.report.cleanup.append(swept)
            left = len(swept.failed) + len(swept.protected)
            self.watch.say(
                f"  {side.key}: deleted {len(swept.deleted)} images"
                + (f", {left} left (see below)" if left else ", nothing left behind")
            )

    async def _measure(self, clouds: Clouds, source: Side, target: Side) -> None:
        pool = await self._pool(source, target)
        self.report.pool = pool
        await self._latencies(source, target, pool)
        with tempfile.TemporaryDirectory(prefix="image-transfer-bench-") as folder:
            await self._throughputs(clouds, source, target, pool, Path(folder))

    async def _pool(self, source: Side, target: Side) -> list[Image]:
        s = self.settings
        if s.images is not None:
            found = await _existing(source, s.images)
            await self._check_bytes(0, _target_bytes(s, found))
            self.watch.say(
                f"bench: {len(found)} existing images matching {s.images!r} in {source.key} "
                f"({human_bytes(sum(i.size or 0 for i in found))}), read only"
            )
            return found
        sizes = [size for size in s.sizes for _ in range(s.count)]
        await self._check_bytes(sum(sizes), _target_bytes(s, sizes))
        progress = Progress()
        work = Work(source, self._bucket, progress)
        made: list[Image] = []
        limiter = anyio.CapacityLimiter(max(s.transfers))

        async def one(n: int, size: int) -> None:
            async with limiter:
                what = f"{human_bytes(size).replace(' ', '').replace('.0', '')}-{n:02d}"
                made.append(await upload_synthetic(work, self.ledger, s.run_id, what, size))

        label = f"creating {len(sizes)} synthetic images in {source.key}"
        async with self.watch.phase(label, progress), anyio.create_task_group() as tg:
            for n, size in enumerate(sizes):
                tg.start_soon(one, n, size)
        return [await source.client.get_image(image.id) for image in made]

    async def _check_bytes(self, at_source: int, at_target: int) -> None:
        limit, s = self.settings.max_bytes, self.settings
        over = [
            f"{human_bytes(n)} in {key}"
            for key, n in ((self.job.source.key, at_source), (self.job.targets[0].key, at_target))
            if n > limit
        ]
        if not over:
            return
        question = (
            f"bench {s.run_id} would hold up to {' and '.join(over)} at once, more than "
            f"--max-bytes {human_bytes(limit)}"
        )
        if not await self.watch.confirm(question):
            raise ConfigError(f"{question}: not confirmed (give --yes, or fewer or smaller images)")

    async def _latencies(self, source: Side, target: Side, pool: Sequence[Image]) -> None:
        http = self.http()
        clouds = self.config.clouds
        async with self.watch.phase("timing single calls", None):
            found = [
                await token_latency("source", clouds[self.job.source.cloud], http),
                *await source_latencies(source, pool),
                await token_latency("target", clouds[self.job.targets[0].cloud], http),
                *await target_latencies(target, self.ledger, self.settings.run_id),
            ]
        self.report.latencies = found

    async def _throughputs(
        self, clouds: Clouds, source: Side, target: Side, pool: Sequence[Image], folder: Path
    ) -> None:
        s = self.settings
        sizes = [image.size or 0 for image in pool]
        started = time.monotonic()
        deadline = started + s.max_duration
        left = 3 * len(s.transfers)
        for transfers in s.transfers:
            kinds: list[tuple[Kind, Callable[[float, Progress], Awaitable[Measurement]]]] = [
                (Kind.DOWNLOAD, self._downloads(source, pool, transfers)),
                (Kind.UPLOAD, self._uploads(target, sizes, transfers)),
                (Kind.COPY, self._copies(clouds, target, pool, transfers, folder)),
            ]
            for kind, measure in kinds:
                window, left = max(deadline - time.monotonic(), 0.0) / left, left - 1
                progress = Progress()
                label = f"{kind}, {transfers} transfer{'s' if transfers > 1 else ''} at once"
                async with self.watch.phase(label, progress):
                    m = await measure(window, progress)
                self.report.measurements.append(m)
                self.watch.say(_line(m))
        self.report.seconds = time.monotonic() - started

    def _downloads(
        self, source: Side, pool: Sequence[Image], transfers: int
    ) -> Callable[[float, Progress], Awaitable[Measurement]]:
        async def measure(window: float, progress: Progress) -> Measurement:
            work = Work(source, self._bucket, progress)
            return await measure_downloads(work, pool, transfers, window)

        return measure

    def _uploads(
        self, target: Side, sizes: Sequence[int], transfers: int
    ) -> Callable[[float, Progress], Awaitable[Measurement]]:
        async def measure(window: float, progress: Progress) -> Measurement:
            work = Work(target, self._bucket, progress)
            return await measure_uploads(
                work, sizes, transfers, window, ledger=self.ledger, run_id=self.settings.run_id
            )

        return measure

    def _copies(
        self, clouds: Clouds, target: Side, pool: Sequence[Image], transfers: int, folder: Path
    ) -> Callable[[float, Progress], Awaitable[Measurement]]:
        async def measure(window: float, progress: Progress) -> Measurement:
            job = copy_job(self.job, self.settings.run_id, pool, transfers, folder)
            try:
                return await measure_copy(
                    self.config,
                    job,
                    clouds,
                    window=window,
                    progress=progress,
                    work=folder,
                    bucket=self._bucket,
                )
            finally:
                with anyio.CancelScope(shield=True):
                    await delete_copies(target, job)

        return measure


async def open_side(clouds: Clouds, role: str, endpoint: Endpoint) -> Side:
    session = await clouds.session(endpoint.cloud)
    client = await session.image_client(endpoint.region)
    return Side(role, endpoint.key, client, await session.tenant_id())


async def _existing(source: Side, glob: str) -> list[Image]:
    """The active images of the source whose name matches ``glob`` (none a bench made)."""
    found: list[Image] = []
    images: AsyncIterator[Image] = source.client.list_images(status="active")
    async with aclosing(images):  # type: ignore[type-var]
        async for image in images:
            if (
                fnmatch.fnmatchcase(image.name or "", glob)
                and image.size
                and not is_bench_image(image)
            ):
                found.append(image)
    if not found:
        raise ConfigError(f"--images {glob!r}: no active image of {source.key} has such a name")
    return found


def _target_bytes(s: BenchSettings, pool: Sequence[Image] | Sequence[int]) -> int:
    """The most the target holds at once: the copies of the whole pool, or the uploads in
    flight (each deleted once in)."""
    sizes = [p if isinstance(p, int) else (p.size or 0) for p in pool]
    return max(sum(sizes), max(s.transfers) * max(sizes, default=0))


def _line(m: Measurement) -> str:
    if m.rate is None:
        why = m.error or "nothing moved"
        return f"  {m.kind} x{m.transfers}: no figure ({why})"
    failed = f", {m.failed} failed: {m.error}" if m.failed else ""
    return (
        f"  {m.kind} x{m.transfers}: {figures.human_rate(m.rate)} "
        f"({m.images} images, {human_bytes(m.bytes)} in {m.seconds:.2f} s{failed})"
    )
