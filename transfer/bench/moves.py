"""Download alone and upload alone, with N transfers at once.

Each of the N workers moves whole images, one after another, until its measurement's window
closes (it then starts no new one, as ``max_duration`` does in a run); every worker moves at
least one.  The figure is the bytes of the whole images moved over the time from the first
request to the end of the last image: the per-image requests (the create of an upload, the
answer's first byte of a download) are in it, as they are in a copy.  Whole images and their
ends are counted, never bytes handed to a socket, which a send buffer would swallow ahead of
the link.

Downloads go nowhere (the bytes are counted and dropped, nothing is hashed); uploads send
random bytes into images created for the purpose, each deleted once its upload is in.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream

from transfer.bench.figures import Kind, Measurement
from transfer.bench.ledger import Ledger, Side
from transfer.bench.markers import MARKER, image_name
from transfer.bench.synthetic import random_body
from transfer.engine.results import ActiveTransfer, Progress
from transfer.errors import TransferError
from transfer.models import Image
from transfer.streams import TokenBucket


@dataclass(frozen=True)
class Work:
    """What a measurement's workers share: the side, the limit, the display's counters."""

    side: Side
    bucket: TokenBucket | None
    progress: Progress


def synthetic_fields(run_id: str, what: str) -> dict[str, Any]:
    """The create body of a bench image: raw random bytes, marked with the run."""
    return {
        "id": str(uuid.uuid4()),
        "name": image_name(run_id, what),
        "disk_format": "raw",
        "container_format": "bare",
        "os_type": "linux",
        "visibility": "private",
        MARKER: run_id,
    }


async def upload_synthetic(work: Work, ledger: Ledger, run_id: str, what: str, size: int) -> Image:
    """Create a marked image on ``work.side`` and upload ``size`` random bytes into it."""
    client = work.side.client
    image = await client.create_image(synthetic_fields(run_id, what))
    ledger.add(work.side, image.id)
    with _Shown(work, image.id, image.name or image.id, size) as counted:
        await client.upload_image(
            image.id, random_body(size, bucket=work.bucket), size=size, progress=counted
        )
    return image


async def download(work: Work, image: Image) -> int:
    """Read ``image``'s body to the end and drop it; the bytes read."""
    got = 0
    with _Shown(work, image.id, image.name or image.id, image.size or 0) as counted:
        async with work.side.client.download_image(image.id) as body:
            async for chunk in body.chunks():
                if work.bucket is not None:
                    await work.bucket.consume(len(chunk))
                got += len(chunk)
                counted(len(chunk))
    return got


class _Shown:
    """An image in the progress display while it moves (the context gives the byte counter)."""

    def __init__(self, work: Work, image_id: str, name: str, size: int) -> None:
        self.progress = work.progress
        self.key = (image_id, work.side.key)
        self.name, self.size = name, size

    def __enter__(self) -> Callable[[int], None]:
        self.progress.images_total += 1
        self.progress.bytes_total += self.size
        self.progress.active[self.key] = ActiveTransfer(self.name, self.key[1], self.size)
        return lambda n: self.progress.add_bytes(*self.key, n)

    def __exit__(self, kind: object, *rest: object) -> None:
        self.progress.active.pop(self.key, None)
        self.progress.images_done += 1
        if kind is not None:
            self.progress.images_failed += 1


async def _workers(
    m: Measurement, window: float, move: Callable[[int], Awaitable[int]]
) -> Measurement:
    """Run ``m.transfers`` workers, each calling ``move(n)`` (the n-th image of the
    measurement: its byte count) until ``window`` seconds have passed; ``m`` filled in."""
    numbers = itertools.count()
    started = time.monotonic()
    closes = started + window
    ended = started

    async def worker() -> None:
        nonlocal ended
        first = True
        while first or time.monotonic() < closes:
            first = False
            try:
                moved = await move(next(numbers))
            except TransferError as exc:
                if exc.fatal:
                    raise
                m.failed += 1
                m.error = m.error or str(exc)
                m.transient = m.transient and exc.transient
                return  # one failure ends this worker: a broken link is not hammered
            m.images += 1
            m.bytes += moved
            ended = max(ended, time.monotonic())

    async with anyio.create_task_group() as tg:
        for _ in range(m.transfers):
            tg.start_soon(worker)
    m.seconds = ended - started
    return m


async def measure_downloads(
    work: Work, pool: Sequence[Image], transfers: int, window: float
) -> Measurement:
    """Download alone: the pool's images in turn, ``transfers`` at once."""

    async def move(n: int) -> int:
        return await download(work, pool[n % len(pool)])

    return await _workers(Measurement(Kind.DOWNLOAD, transfers), window, move)


async def measure_uploads(
    work: Work,
    sizes: Sequence[int],
    transfers: int,
    window: float,
    *,
    ledger: Ledger,
    run_id: str,
) -> Measurement:
    """Upload alone: create + upload of random images of ``sizes`` in turn, ``transfers`` at
    once; each is deleted (off the clock) once its upload is in."""
    send, receive = anyio.create_memory_object_stream[str](max_buffer_size=1 << 16)

    async def move(n: int) -> int:
        size = sizes[n % len(sizes)]
        image = await upload_synthetic(work, ledger, run_id, f"upload-t{transfers}-{n}", size)
        await send.send(image.id)
        return size

    async with anyio.create_task_group() as tg:
        tg.start_soon(_deleter, work.side, ledger, receive)
        async with send:
            m = await _workers(Measurement(Kind.UPLOAD, transfers), window, move)
    return m


async def _deleter(side: Side, ledger: Ledger, ids: ObjectReceiveStream[str]) -> None:
    async with ids:
        async for image_id in ids:
            # A failure leaves it in the ledger: the bench's final sweep tries it again.
            with contextlib.suppress(TransferError):
                await ledger.delete(side, image_id)
