"""Stream wrappers: digests, length checks, the shared bandwidth bucket, size parsing."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer.errors import IntegrityError
from transfer.streams import (
    CHUNK_SIZE,
    Hasher,
    TokenBucket,
    counted,
    hashed,
    parse_rate,
    parse_size,
    throttled,
    verify_length,
)

BLOB = os.urandom(3 * CHUNK_SIZE + 12345)


async def chunks_of(data: bytes, cuts: Sequence[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        if start < cut < len(data):
            yield data[start:cut]
            start = cut
    yield data[start:]


async def drain(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(BLOB)), max_size=12))
def test_digests_equal_hashlib_over_any_chunking(cuts: list[int]) -> None:
    async def main() -> tuple[bytes, dict[str, str]]:
        hasher = Hasher()
        data = await drain(hashed(chunks_of(BLOB, cuts), hasher))
        return data, await hasher.hexdigests()

    data, digests = anyio.run(main)
    assert data == BLOB
    assert digests == {
        "md5": hashlib.md5(BLOB).hexdigest(),
        "sha512": hashlib.sha512(BLOB).hexdigest(),
    }


async def test_update_returns_before_the_chunk_is_hashed() -> None:
    chunk = os.urandom(16 * CHUNK_SIZE)
    hasher = Hasher(("sha256",))
    started = time.perf_counter()
    await hasher.update(chunk)
    handed = time.perf_counter() - started
    started = time.perf_counter()
    digests = await hasher.hexdigests()
    waited = time.perf_counter() - started
    assert digests == {"sha256": hashlib.sha256(chunk).hexdigest()}
    # A hasher working inside update() would leave nothing for hexdigests() to wait for.
    assert handed < waited, (handed, waited)


async def test_chunks_are_hashed_in_order() -> None:
    chunks = [os.urandom(CHUNK_SIZE) for _ in range(6)]
    hasher = Hasher(("md5", "sha1"))
    for chunk in chunks:
        await hasher.update(chunk)
    joined = b"".join(chunks)
    assert await hasher.hexdigests() == {
        "md5": hashlib.md5(joined).hexdigest(),
        "sha1": hashlib.sha1(joined).hexdigest(),
    }


async def test_hashing_leaves_the_event_loop_free() -> None:
    hasher = Hasher()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.001)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await hasher.update(os.urandom(64 * CHUNK_SIZE))
        await hasher.hexdigests()
        tg.cancel_scope.cancel()
    assert ticks >= 3  # the loop kept running while 64 MiB were hashed


async def test_a_hasher_without_algorithms_is_free() -> None:
    hasher = Hasher(())
    assert await drain(hashed(chunks_of(BLOB, [10, CHUNK_SIZE]), hasher)) == BLOB
    assert await hasher.hexdigests() == {}
    assert hasher.algorithms == ()


async def test_counted_reports_every_byte() -> None:
    seen: list[int] = []
    data = await drain(counted(chunks_of(BLOB, [100, 200_000]), seen.append))
    assert data == BLOB and seen == [100, 199_900, len(BLOB) - 200_000]


async def test_verify_length() -> None:
    data = b"x" * 1000
    assert await drain(verify_length(chunks_of(data, [300]), 1000)) == data
    assert await drain(verify_length(chunks_of(data, [300]), None)) == data
    with pytest.raises(IntegrityError, match="received 1000 of the expected 1001 bytes"):
        await drain(verify_length(chunks_of(data, [300]), 1001))
    passed: list[bytes] = []
    with pytest.raises(IntegrityError, match="more than the expected 999 bytes"):
        async for chunk in verify_length(chunks_of(data, [300]), 999):
            passed.append(chunk)
    assert b"".join(passed) == data[:300]  # the overflowing chunk is never passed on


async def test_bucket_holds_its_rate_across_streams() -> None:
    rate = 4 * 1024 * 1024  # bytes/s
    chunk = 64 * 1024
    bucket = TokenBucket(rate, burst=chunk)
    sent = [0, 0, 0]
    total = rate  # about one second at the limit

    async def stream(index: int) -> None:
        async for piece in throttled(
            chunks_of(b"\0" * (total // 3), range(0, total, chunk)), bucket
        ):
            sent[index] += len(piece)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for index in range(3):
            tg.start_soon(stream, index)
    elapsed = time.perf_counter() - started
    achieved = sum(sent) / elapsed
    assert sum(sent) == 3 * (total // 3)
    # Never faster than the limit (plus one burst), and not much slower on a busy machine.
    assert 0.85 * rate <= achieved <= 1.1 * rate, achieved / rate


async def test_bucket_is_fair_between_streams() -> None:
    bucket = TokenBucket(2 * 1024 * 1024, burst=16 * 1024)
    sent = [0, 0]

    async def stream(index: int) -> None:
        while True:
            await bucket.consume(16 * 1024)
            sent[index] += 16 * 1024

    async with anyio.create_task_group() as tg:
        tg.start_soon(stream, 0)
        tg.start_soon(stream, 1)
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    assert min(sent) > 0 and max(sent) - min(sent) <= 2 * 16 * 1024, sent


async def test_set_rate_takes_effect_for_streams_already_waiting() -> None:
    bucket = TokenBucket(1024, burst=1024)  # 1 KiB/s: a 1 MiB consume would take 17 min
    await bucket.consume(1024)
    done = anyio.Event()

    async def slow() -> None:
        await bucket.consume(CHUNK_SIZE)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        await anyio.sleep(0.05)
        assert not done.is_set()
        bucket.set_rate(100 * CHUNK_SIZE)
        with anyio.fail_after(1):
            await done.wait()
    bucket.set_rate(None)
    assert bucket.rate is None
    started = time.perf_counter()
    for _ in range(100):
        await bucket.consume(CHUNK_SIZE)
    assert time.perf_counter() - started < 0.5
    with pytest.raises(ValueError):
        bucket.set_rate(0)


async def test_a_cancelled_stream_gives_its_share_back() -> None:
    bucket = TokenBucket(1024 * 1024, burst=1024)
    await bucket.consume(1024)
    with anyio.move_on_after(0.02):
        await bucket.consume(100 * 1024 * 1024)  # would hold the bucket for 100 s
    with anyio.fail_after(1):
        await bucket.consume(64 * 1024)


def test_parse_size_and_rate() -> None:
    assert parse_size("500M") == 500 * 1024**2
    assert parse_size("1.5G") == 3 * 1024**3 // 2
    assert parse_size("10KiB") == parse_size("10k") == parse_size("10KB") == 10240
    assert parse_size(" 42 ") == 42
    assert parse_rate("10M") == 10 * 1024**2
    assert parse_rate("10M/s") == 10 * 1024**2
    assert parse_rate("off") is None and parse_rate("0") is None
    for bad in ("", "ten", "-1M", "5X", "1.2.3"):
        with pytest.raises(ValueError, match="expected a size like 500M"):
            parse_size(bad)
    with pytest.raises(ValueError, match="expected a rate like 10M"):
        parse_rate("fast")
