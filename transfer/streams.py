"""Composable async byte-stream wrappers: hashing, counting, bandwidth limiting, length checks.

The hot path of every transfer is ``source body -> hashed -> throttled -> counted ->
verify_length -> upload body``; each wrapper is an async generator that handles one chunk at
a time, so memory per transfer stays at a chunk or two whatever the image size.  Hashing runs
in worker threads (hashlib releases the GIL on large buffers) and overlaps the network I/O:
chunk N is hashed while chunk N is sent and chunk N+1 is read.

``keep_large_buffers_in_heap`` tunes glibc's allocator for those chunks (see its docstring and
``benchmarks/README.md``).

Sizes and rates use 1024-based units, as rclone does: ``500M`` is 500 MiB, ``10M`` 10 MiB/s.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import anyio

from transfer.errors import IntegrityError

CHUNK_SIZE = 1024 * 1024  # the read size that measured best (performance-notes.md)
# Below this, a thread hop costs more than hashing in the event loop (and hashlib keeps
# the GIL for small buffers anyway).
_INLINE_BELOW = 64 * 1024

_executor: ThreadPoolExecutor | None = None

# glibc's mallopt parameters (malloc.h) and the values that measured best: every buffer a
# transfer allocates (a 256 KiB socket read, a 1 MiB chunk, a send remainder) stays below
# the mmap threshold, and up to the trim threshold of free heap is kept for the next chunk.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 4 * 1024 * 1024
_TRIM_THRESHOLD = 64 * 1024 * 1024
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_malloc_tuned = False


def keep_large_buffers_in_heap() -> bool:
    """Stop glibc from mapping and unmapping every large chunk buffer (once per process).

    Each socket read makes a new 256 KiB ``bytes`` and each chunk a 1 MiB one.  glibc serves
    such sizes with ``mmap`` and returns them with ``munmap`` (or trims the heap top after
    them), so every chunk costs fresh zeroed pages from the kernel: about 45% of the engine's
    system time when copying one large image (benchmarks/README.md).  Fixing the thresholds
    keeps those buffers in the heap for reuse; peak memory is unchanged, since the chunks in
    flight are the same.  Does nothing off glibc, or when the user set glibc's own
    ``MALLOC_*`` variables.  Returns whether the allocator was tuned.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _MALLOC_ENV):
        return False
    import ctypes  # here: a command that moves no image body never pays for it

    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _malloc_tuned = bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    return _malloc_tuned


def _hash_executor() -> ThreadPoolExecutor:
    # Hashing gets its own threads so it never delays the loop's default executor, which
    # aiohttp uses for DNS lookups.
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="image-transfer-hash"
        )
    return _executor


class Hasher:
    """Running digests of a byte stream, computed off the event loop.

    ``update`` starts hashing a chunk in a worker thread and returns at once; it waits only
    for the previous chunk, so order is preserved.  Each algorithm runs in its own thread.
    A Hasher with no algorithms costs nothing.  After a cancelled ``update`` the digests are
    undefined: discard the Hasher.
    """

    __slots__ = ("_hashes", "_pending")

    def __init__(self, algorithms: Iterable[str] = ("md5", "sha512")) -> None:
        self._hashes = {name: hashlib.new(name) for name in algorithms}
        self._pending: list[asyncio.Future[None]] = []

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self._hashes)

    async def update(self, chunk: bytes) -> None:
        if not self._hashes:
            return
        if self._pending:
            await self._settle()
        if len(chunk) < _INLINE_BELOW:
            for digest in self._hashes.values():
                digest.update(chunk)
            return
        loop = asyncio.get_running_loop()
        executor = _hash_executor()
        self._pending = [
            loop.run_in_executor(executor, digest.update, chunk) for digest in self._hashes.values()
        ]

    async def _settle(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            await future

    async def hexdigests(self) -> dict[str, str]:
        """The hex digest of every byte so far, by algorithm name."""
        if self._pending:
            await self._settle()
        return {name: digest.hexdigest() for name, digest in self._hashes.items()}


async def hashed(chunks: AsyncIterable[bytes], hasher: Hasher) -> AsyncIterator[bytes]:
    """Pass chunks through, feeding each to ``hasher``."""
    async for chunk in chunks:
        await hasher.update(chunk)
        yield chunk


async def counted(
    chunks: AsyncIterable[bytes], on_bytes: Callable[[int], None]
) -> AsyncIterator[bytes]:
    """Pass chunks through, reporting each chunk's length to ``on_bytes`` as it is handed on."""
    async for chunk in chunks:
        on_bytes(len(chunk))
        yield chunk


async def throttled(chunks: AsyncIterable[bytes], bucket: TokenBucket) -> AsyncIterator[bytes]:
    """Pass chunks through no faster than ``bucket`` allows."""
    async for chunk in chunks:
        await bucket.consume(len(chunk))
        yield chunk


async def verify_length(chunks: AsyncIterable[bytes], expected: int | None) -> AsyncIterator[bytes]:
    """Pass chunks through, raising IntegrityError on a byte more or less than ``expected``.

    Too many bytes are refused before the chunk that overflows is passed on.
    """
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if expected is not None and total > expected:
            raise IntegrityError(f"received more than the expected {expected} bytes")
        yield chunk
    if expected is not None and total < expected:
        raise IntegrityError(f"received {total} of the expected {expected} bytes")


class TokenBucket:
    """A bandwidth limit shared by any number of concurrent streams.

    ``rate`` is in bytes per second (None: unlimited); ``burst`` is how much may pass at once
    after an idle spell (about one chunk).  Streams are served in the order they asked, so
    each gets a fair share.  ``set_rate`` takes effect at once, waiters included.
    """

    def __init__(self, rate: float | None, *, burst: int = CHUNK_SIZE) -> None:
        if burst <= 0:
            raise ValueError(f"burst must be positive, got {burst}")
        self._rate = self._checked(rate)
        self._burst = float(burst)
        # Cumulative byte counts: a stream may go once ``_filled`` reaches its own claim.
        self._claimed = 0.0
        self._filled = float(burst)
        self._stamp = time.monotonic()
        self._changed: anyio.Event | None = None

    @staticmethod
    def _checked(rate: float | None) -> float | None:
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of bytes/s or None, got {rate}")
        return rate

    @property
    def rate(self) -> float | None:
        return self._rate

    def _refill(self) -> None:
        now = time.monotonic()
        if self._rate is None:
            self._filled = max(self._filled, self._claimed + self._burst)
        else:
            accrued = self._filled + (now - self._stamp) * self._rate
            self._filled = max(self._filled, min(accrued, self._claimed + self._burst))
        self._stamp = now

    def set_rate(self, rate: float | None) -> None:
        """Change the limit; streams waiting now are re-timed at the new rate."""
        rate = self._checked(rate)
        self._refill()  # what accrued so far accrued at the old rate
        if self._rate is None and rate is not None:
            self._filled = self._claimed + self._burst
        self._rate = rate
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def consume(self, n: int) -> None:
        """Wait until ``n`` more bytes may pass."""
        if n <= 0:
            return
        self._refill()
        self._claimed += n
        ticket = self._claimed
        try:
            while True:
                if self._rate is None:
                    return
                self._refill()
                missing = ticket - self._filled
                if missing <= 0:
                    return
                if self._changed is None:
                    self._changed = anyio.Event()
                with anyio.move_on_after(missing / self._rate):
                    await self._changed.wait()
        except BaseException:
            # A cancelled stream gives its share back to those queued behind it.
            self._filled += n
            raise


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"500M"`` -> 524288000.  Units K, M, G, T, P are 1024-based (``KiB``, ``MB`` alike)."""
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"expected a size like 500M (units K, M, G, T, P; 1024-based), got {text!r}"
        )
    number, unit = match.groups()
    return round(float(number) * _UNITS[unit.upper()])


def human_bytes(n: float) -> str:
    """``524288000`` -> ``"500.0 MiB"`` (1024-based, as ``parse_size`` reads it)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def parse_rate(text: str) -> float | None:
    """``"10M"`` -> 10 MiB/s in bytes/s; ``"off"`` or ``"0"`` -> None (no limit), as in rclone."""
    stripped = text.strip()
    if stripped.lower() in ("off", ""):
        return None
    if stripped.lower().endswith("/s"):
        stripped = stripped[:-2]
    try:
        rate = float(parse_size(stripped))
    except ValueError:
        raise ValueError(
            f"expected a rate like 10M (bytes/s, 1024-based) or off, got {text!r}"
        ) from None
    return rate or None
