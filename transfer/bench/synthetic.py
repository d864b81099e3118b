"""The bytes of the bench's test images: random, cheap to make at any rate a link may reach.

One block of random bytes (8 MiB from ``os.urandom``) is made per process; an image's body is
a random header of its own (so that no two images share a checksum) followed by slices of the
block at offsets drawn for that image.  Nothing compresses or deduplicates it the way a run of
zeros would be, and it costs a slice per chunk, not a call to the random source.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import AsyncIterator, Callable

from transfer.streams import CHUNK_SIZE, TokenBucket

_BLOCK = 8 * CHUNK_SIZE
_HEADER = 64


@functools.cache
def _block() -> bytes:
    return os.urandom(_BLOCK)


async def random_body(
    size: int,
    *,
    bucket: TokenBucket | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """``size`` random bytes in chunks of up to 1 MiB, through ``bucket`` when one is given."""
    block = _block()
    draw = random.Random(os.urandom(16))
    sent = 0
    while sent < size:
        if sent == 0:
            chunk = os.urandom(min(_HEADER, size))
        else:
            n = min(CHUNK_SIZE, size - sent)
            start = draw.randrange(_BLOCK - n + 1)
            chunk = block[start : start + n]
        if bucket is not None:
            await bucket.consume(len(chunk))
        sent += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
        yield chunk
