"""The journal's samples, the same on SQLite and PostgreSQL: written one row each, read back
whole and in order, ``since`` a timestamp, with the journal's clock; and what the live page
computes from them (pure, on plain records)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import anyio

from tests.pg.helpers import JOB
from transfer.journal import Journal
from transfer.journal.records import stamp
from transfer.journal.samples import HeldTransfer, Sample, SampleRecord
from transfer.web.throughput import Point, Series, current_rate, runs_points, seconds, series

MiB = 1 << 20


def sample(
    run_id: int, done: int, *active: HeldTransfer, worker: str = "w1", job: str = JOB
) -> Sample:
    return Sample(
        job=job,
        run_id=run_id,
        worker=worker,
        bytes_done=done,
        bytes_total=10 * MiB,
        images_done=done // MiB,
        images_failed=0,
        images_total=10,
        active=active,
    )


async def test_samples_are_one_row_each_read_back_in_order_and_since_a_moment(
    backend: Callable[[], Journal],
) -> None:
    held = HeldTransfer(
        source_id="s1", target="dst/KR2", name="ubuntu", done=5, total=9, seconds=1.5
    )
    async with backend() as journal:
        run = await journal.start_run(JOB, "w1")
        other = await journal.start_run("other-job", "w2")
        before = journal.commits
        await journal.record_sample(sample(run, 1 * MiB, held))
        await journal.record_sample(sample(other, 7, worker="w2", job="other-job"))
        assert journal.commits - before == 2  # one commit each, nothing more
        await anyio.sleep(0.05)
        middle = await journal.clock()
        await anyio.sleep(0.05)
        await journal.record_sample(sample(run, 3 * MiB))
        every = await journal.samples(JOB)
        later = await journal.samples(JOB, since=middle)
        now = await journal.clock()

    assert [(s.run_id, s.worker, s.bytes_done) for s in every] == [
        (run, "w1", 1 * MiB),
        (run, "w1", 3 * MiB),
    ]
    first = every[0]
    assert isinstance(first, SampleRecord)
    assert first.active == (held,)
    assert (first.bytes_total, first.images_done, first.images_total) == (10 * MiB, 1, 10)
    assert every[1].active == ()
    assert first.at <= middle <= every[1].at <= now
    assert first.at.endswith("Z") and len(first.at) == len("2026-01-01T00:00:00.000Z")
    assert [s.bytes_done for s in later] == [3 * MiB]


def charted(drawn: Series, values: list[float]) -> float:
    """The bytes a series of rates charts: each bucket's rate times its width."""
    return sum(
        v * (high - low)
        for v, (low, high) in zip(values, map(drawn.bounds, range(len(values))), strict=True)
    )


def record(run_id: int, at: float, done: int, worker: str = "w1") -> SampleRecord:
    moment = stamp(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=at))
    return SampleRecord(id=int(at * 10), at=moment, **vars(sample(run_id, done, worker=worker)))


def test_throughput_spreads_each_runs_bytes_over_its_time_and_adds_up_the_workers() -> None:
    start = stamp(datetime(2026, 1, 1, tzinfo=UTC))
    samples = [
        record(1, 10, 20 * MiB),
        record(2, 10, 10 * MiB, worker="w2"),
        record(1, 20, 40 * MiB),
        record(2, 20, 10 * MiB, worker="w2"),  # w2 moved nothing for 10 s
    ]
    runs = runs_points(samples, {1: start, 2: start})
    assert runs[1][1][0] == Point(seconds(start), 0)  # from the run's start at 0 bytes
    drawn = series(runs, now=seconds(start) + 20)
    assert drawn is not None
    # Every byte is charted once: the buckets' rates times their width give the bytes moved.
    assert round(charted(drawn, drawn.total)) == 50 * MiB
    assert round(charted(drawn, drawn.workers["w1"])) == 40 * MiB
    assert round(charted(drawn, drawn.workers["w2"])) == 10 * MiB
    assert (drawn.start, drawn.end) == (seconds(start), seconds(start) + 20)
    # w1 ran at 2 MiB/s throughout; w2 at 1 MiB/s for 10 s, then stood still.
    assert max(drawn.workers["w1"]) == min(drawn.workers["w1"]) == 2 * MiB
    assert drawn.workers["w2"][-1] == 0
    # Charted up to the last sample while samples come; up to now once they stopped.
    assert series(runs, now=seconds(start) + 25).end == seconds(start) + 20  # type: ignore[union-attr]
    assert series(runs, now=seconds(start) + 60).end == seconds(start) + 60  # type: ignore[union-attr]


def test_the_current_rate_is_the_last_ten_seconds_and_zero_once_samples_stop() -> None:
    points = [Point(0, 0), Point(10, 10 * MiB), Point(18, 10 * MiB), Point(20, 14 * MiB)]
    assert current_rate(points, now=21) == (14 - 10) * MiB / 10
    assert current_rate(points, now=20 + 60) == 0.0  # no sample for a minute: nothing moved
    assert current_rate(points[:1], now=1) == 0.0
