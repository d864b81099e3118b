"""Image bytes in motion: writing and hashing uploads off the event loop, pacing a connection
to a bandwidth, resolving ``Range`` headers, and the deterministic bytes of seeded images.

Memory stays flat whatever the image size: bytes move in pieces of at most ``CHUNK``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


@dataclass(frozen=True)
class Digest:
    size: int
    md5: str
    sha512: str


class UploadSink:
    """Receives one upload's bytes into a partial file, hashing them on the way.

    Three lanes (file write, md5, sha512) run in worker threads side by side, each taking the
    pieces in order (see ``LanePipeline``); hashlib and file writes release the GIL, so they
    overlap with each other and with the event loop receiving the next piece.  ``discard`` may
    be called from any thread at any time: the lock makes it wait for a write under way, and
    every later write is ignored, so a failed upload never leaves a partial file behind.
    """

    def __init__(self, part_path: Path, final_path: Path) -> None:
        self._part = part_path
        self._final = final_path
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._discarded = False
        self._md5 = hashlib.md5()
        self._sha512 = hashlib.sha512()
        self.size = 0

    def open(self) -> None:
        with self._lock:
            if not self._discarded:
                self._part.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self._part, "wb")  # noqa: SIM115 - closed by commit/discard

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._file is None:
                return
            self._file.write(data)
            self.size += len(data)

    @property
    def lanes(self) -> tuple[Callable[[bytes], None], ...]:
        return (self._write, self._md5.update, self._sha512.update)

    def commit(self) -> Digest:
        """Close the file and move it into place; the hashes of every byte written."""
        with self._lock:
            if self._file is None:
                raise RuntimeError("upload was discarded")
            self._file.close()
            self._file = None
            os.replace(self._part, self._final)
            return Digest(self.size, self._md5.hexdigest(), self._sha512.hexdigest())

    def discard(self) -> None:
        with self._lock:
            self._discarded = True
            if self._file is not None:
                self._file.close()
                self._file = None
            self._part.unlink(missing_ok=True)


class LanePipeline:
    """Feeds pieces to a sink's lanes in worker threads, at most one piece ahead per lane.

    Memory stays at a few pieces; each lane sees the pieces in order.
    """

    def __init__(self, sink: UploadSink, executor: Executor) -> None:
        self._sink = sink
        self._executor = executor
        self._loop = asyncio.get_running_loop()
        self._pending: list[asyncio.Future[None] | None] = [None] * len(sink.lanes)

    async def open(self) -> None:
        await self._loop.run_in_executor(self._executor, self._sink.open)

    async def push(self, data: bytes) -> None:
        for index, lane in enumerate(self._sink.lanes):
            previous = self._pending[index]
            if previous is not None:
                await previous
            self._pending[index] = self._loop.run_in_executor(self._executor, lane, data)

    async def commit(self) -> Digest:
        for index, previous in enumerate(self._pending):
            if previous is not None:
                await previous
                self._pending[index] = None
        return await self._loop.run_in_executor(self._executor, self._sink.commit)

    async def settle(self) -> None:
        """Wait for lanes still running (after a failure), ignoring their errors."""
        for previous in self._pending:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(previous)
        self._pending = [None] * len(self._pending)


class Pacer:
    """Holds one connection's transfer at or under ``rate`` bytes per second (None = no cap)."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self._start = time.monotonic()
        self._moved = 0

    def piece_size(self, default: int = CHUNK) -> int:
        """A piece small enough that pacing stays smooth (about 20 pieces a second)."""
        if self.rate is None:
            return default
        return max(1024, min(default, self.rate // 20))

    async def pace(self, nbytes: int) -> None:
        if self.rate is None:
            return
        self._moved += nbytes
        ahead = self._moved / self.rate - (time.monotonic() - self._start)
        if ahead > 0:
            await asyncio.sleep(ahead)


class RangeError(Exception):
    """The Range header cannot be satisfied for this size (answer 416)."""


def resolve_range(requested: slice, size: int) -> tuple[int, int, bool]:
    """``(offset, length, partial)`` for a parsed Range (aiohttp's ``request.http_range``).

    Follows the same rules as aiohttp's ``FileResponse`` so the fast and the faulty download
    paths answer alike: ``a-b`` (end clamped to the size), ``a-``, ``-n`` (tail, whole image
    when n exceeds it); a start at or past the end is unsatisfiable.
    """
    start, stop = requested.start, requested.stop
    if start is None:
        return 0, size, False
    if start < 0 and stop is None:
        offset = max(0, size + start)
        length = size - offset
    else:
        offset = start
        length = min(stop if stop is not None else size, size) - start
    if offset >= size:
        raise RangeError(f"bytes */{size}")
    return offset, length, True


def read_piece(fobj: BinaryIO, offset: int, length: int) -> bytes:
    fobj.seek(offset)
    return fobj.read(length)


def fill_pieces(fill_seed: int, size: int) -> Iterator[bytes]:
    """The deterministic pseudo-random bytes of a seeded image, piece by piece.

    One random block per seed, each ``CHUNK`` stamped with its index: every piece differs and
    generating is as cheap as copying.  A shorter image is a prefix of a longer one with the
    same seed.
    """
    block = random.Random(fill_seed).randbytes(CHUNK)
    index = 0
    remaining = size
    while remaining > 0:
        stamp = hashlib.sha256(f"{fill_seed}:{index}".encode()).digest()
        piece = stamp + block[len(stamp) :]
        take = min(CHUNK, remaining)
        yield piece[:take] if take < CHUNK else piece
        remaining -= take
        index += 1


def fill_bytes(fill_seed: int, size: int) -> bytes:
    """All of a seeded image's bytes at once (for tests of small images)."""
    return b"".join(fill_pieces(fill_seed, size))


async def write_pieces(path: Path, pieces: Iterable[bytes], executor: Executor) -> Digest:
    """Write pieces to a file (via a partial file) and hash them, off the event loop."""
    sink = UploadSink(path.with_name(path.name + ".part"), path)
    pipeline = LanePipeline(sink, executor)
    ok = False
    try:
        await pipeline.open()
        for piece in pieces:
            await pipeline.push(piece)
        digest = await pipeline.commit()
        ok = True
        return digest
    finally:
        if not ok:
            await pipeline.settle()
            sink.discard()
