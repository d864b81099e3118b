"""Throughput from the journal's samples (pure: records in, numbers out).

Each run's samples are a staircase of bytes moved over time (``bytes_done`` only grows within
a run).  ``series`` spreads the bytes moved between two samples of a run evenly over the time
between them and adds them up in equal time buckets: bytes per second over time, for the job
and for each worker.  ``current_rate`` is the rate of the last few seconds of one run.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from transfer.journal.samples import SampleRecord

#: The chart's resolution: at most this many buckets over the whole time shown.
MAX_BUCKETS = 120
#: The narrowest bucket, seconds (a sample comes every two seconds at most).
MIN_BUCKET = 2.0
#: The window of a current rate, seconds.
RATE_WINDOW = 10.0
#: A running worker writes a sample every two seconds while its bytes move; one whose last
#: sample is older than this has moved none since.
STALE = 8.0


def seconds(stamp: str) -> float:
    """A journal timestamp as POSIX seconds."""
    return datetime.fromisoformat(stamp).timestamp()


@dataclass(frozen=True)
class Point:
    at: float  # POSIX seconds
    bytes: int  # moved by the run so far


@dataclass
class Series:
    """Bytes per second in buckets of ``width`` seconds from ``start`` to ``end`` (the last one
    may be narrower): the job's, and each worker's."""

    start: float
    end: float
    width: float
    total: list[float]
    workers: dict[str, list[float]] = field(default_factory=dict)

    def bounds(self, index: int) -> tuple[float, float]:
        """Where bucket ``index`` starts and ends."""
        low = self.start + index * self.width
        return low, min(self.end, low + self.width)

    def to_json(self) -> dict[str, object]:
        return {
            "start": self.start,
            "end": self.end,
            "bucket_seconds": self.width,
            "total": [round(v, 1) for v in self.total],
            "workers": {w: [round(v, 1) for v in vs] for w, vs in sorted(self.workers.items())},
        }


def runs_points(
    samples: Iterable[SampleRecord], starts: Mapping[int, str]
) -> dict[int, tuple[str, list[Point]]]:
    """Each run's worker and points, oldest first, from the run's start (``starts``: run id
    -> its start, when known) at 0 bytes."""
    runs: dict[int, tuple[str, list[Point]]] = {}
    for s in samples:
        if s.run_id not in runs:
            began = starts.get(s.run_id)
            first = [Point(seconds(began), 0)] if began is not None else []
            runs[s.run_id] = (s.worker, first)
        runs[s.run_id][1].append(Point(seconds(s.at), s.bytes_done))
    return runs


def series(runs: Mapping[int, tuple[str, Sequence[Point]]], now: float) -> Series | None:
    """The throughput over the whole time the samples span, up to ``now`` (None: no sample)."""
    points = [p for _, pts in runs.values() for p in pts]
    if not points:
        return None
    start = min(p.at for p in points)
    latest = max(p.at for p in points)
    # Up to now once the samples have stopped (a stall shows), else up to the last sample (a
    # sample comes every two seconds: the time since is not a drop).
    end = now if now - latest > STALE else latest
    width = max(MIN_BUCKET, (end - start) / MAX_BUCKETS)
    count = max(1, math.ceil((end - start) / width))
    drawn = Series(start=start, end=max(end, start + 1e-3), width=width, total=[0.0] * count)
    total = drawn.total
    workers: dict[str, list[float]] = defaultdict(lambda: [0.0] * count)
    for worker, pts in runs.values():
        mine = workers[worker]
        for a, b in itertools.pairwise(pts):
            moved = b.bytes - a.bytes
            if moved <= 0:
                continue
            for index, share in _spread(a.at, b.at, start, width, count):
                low, high = drawn.bounds(index)
                rate = moved * share / max(high - low, 1e-3)
                total[index] += rate
                mine[index] += rate
    drawn.workers = dict(workers)
    return drawn


def _spread(
    t0: float, t1: float, start: float, width: float, count: int
) -> Iterable[tuple[int, float]]:
    """(bucket, share of the interval [t0, t1] that falls into it) for each bucket it meets."""
    if t1 <= t0:
        yield min(count - 1, max(0, int((t1 - start) // width))), 1.0
        return
    first = max(0, int((t0 - start) // width))
    last = min(count - 1, int((t1 - start) // width))
    for index in range(first, last + 1):
        low = max(t0, start + index * width)
        high = min(t1, start + (index + 1) * width)
        if high > low:
            yield index, (high - low) / (t1 - t0)


def current_rate(points: Sequence[Point], now: float) -> float:
    """Bytes per second one run moved over the last ``RATE_WINDOW`` seconds of its samples;
    0 when its last sample is stale (it has moved nothing since)."""
    if len(points) < 2 or now - points[-1].at > STALE:
        return 0.0
    last = points[-1]
    reference = points[0]
    for p in points:
        if p.at <= last.at - RATE_WINDOW:
            reference = p
    elapsed = last.at - reference.at
    return (last.bytes - reference.bytes) / elapsed if elapsed > 0 else 0.0
