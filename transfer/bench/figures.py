"""The figures of a bench and what they say (pure: no I/O).

A ``Measurement`` is one kind of work (download alone, upload alone, the full copy) at one
number of transfers: the whole images it moved, their bytes and the time they took.  A
``Latency`` is one kind of single call on one side, sampled a few times.  ``knee`` names the
transfers value after which more transfers stop paying, ``limit`` the side that holds the link
back, and ``table`` / ``as_json`` are how they are shown.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from transfer.streams import human_bytes

#: More transfers "pay" while they add at least this much throughput.
KNEE_GAIN = 0.10
#: The share of an image's time spent waiting for round trips above which latency limits.
LATENCY_SHARE = 0.30
#: Download and upload within this share of each other limit alike.
ALIKE = 0.10
#: The round trips a copied image waits for with its slot (create, upload, the verifying GET).
ROUND_TRIPS = 3


class Kind(StrEnum):
    DOWNLOAD = "download"
    UPLOAD = "upload"
    COPY = "copy"


@dataclass
class Measurement:
    """One kind of work with ``transfers`` at once."""

    kind: Kind
    transfers: int
    images: int = 0  # whole images moved
    bytes: int = 0  # their bytes
    seconds: float = 0.0  # from the first request to the last image's end
    failed: int = 0  # images that failed
    error: str | None = None  # the first failure's message
    transient: bool = True  # every failure was transient (network, timeout, 5xx, 429)

    @property
    def rate(self) -> float | None:
        """Bytes per second, or None when nothing was measured."""
        if not self.images or self.seconds <= 0:
            return None
        return self.bytes / self.seconds


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (0..1) of ``samples``, linearly interpolated."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no samples")
    where = (len(ordered) - 1) * fraction
    low, high = math.floor(where), math.ceil(where)
    return ordered[low] + (ordered[high] - ordered[low]) * (where - low)


@dataclass
class Latency:
    """One call on one side (``source`` or ``target``), timed ``len(samples)`` times."""

    side: str
    call: str  # token, list, show, create, first-byte
    samples: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def p50(self) -> float | None:
        return percentile(self.samples, 0.5) if self.samples else None

    @property
    def p95(self) -> float | None:
        return percentile(self.samples, 0.95) if self.samples else None


@dataclass(frozen=True)
class Verdict:
    """Which side limits, and the one line that says why."""

    side: str  # download, upload, latency, unknown
    reason: str


def human_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{human_bytes(rate)}/s"


def rates(measurements: Sequence[Measurement], kind: Kind) -> dict[int, float]:
    """Transfers -> bytes per second, for the measured ones of ``kind``."""
    return {
        m.transfers: rate for m in measurements if m.kind is kind and (rate := m.rate) is not None
    }


def curve(measurements: Sequence[Measurement]) -> tuple[Kind | None, dict[int, float]]:
    """The curve the knee is read on: the full copy's, else the slower of the two halves."""
    copy = rates(measurements, Kind.COPY)
    if copy:
        return Kind.COPY, copy
    down, up = rates(measurements, Kind.DOWNLOAD), rates(measurements, Kind.UPLOAD)
    both = {t: min(down[t], up[t]) for t in down.keys() & up.keys()}
    if both:
        return None, both
    return None, down or up


def knee(points: dict[int, float]) -> tuple[int | None, str]:
    """The transfers value after which the next one adds less than ``KNEE_GAIN``, and why."""
    ordered = sorted(points)
    if not ordered:
        return None, "nothing was measured"
    for here, after in itertools.pairwise(ordered):
        gain = points[after] / points[here] - 1 if points[here] > 0 else 0.0
        if gain < KNEE_GAIN:
            return here, (
                f"{after} transfers add {gain:+.0%} over {here} "
                f"({human_rate(points[after])} vs {human_rate(points[here])})"
            )
    if len(ordered) == 1:
        return ordered[0], "only one transfers value was measured"
    return ordered[-1], (
        f"still gaining at {ordered[-1]} transfers: try more (--transfers ...,{ordered[-1] * 2})"
    )


def limit(
    measurements: Sequence[Measurement],
    latencies: Sequence[Latency],
    at: int | None,
    mean_size: float,
) -> Verdict:
    """Which side holds the link back at ``at`` transfers (the knee), with the reason."""
    down, up, copy = (rates(measurements, k) for k in (Kind.DOWNLOAD, Kind.UPLOAD, Kind.COPY))
    if at is None:
        return Verdict("unknown", "nothing was measured")
    trips = _round_trip(latencies)
    single = copy.get(min(copy)) if copy else None
    if trips is not None and single and mean_size > 0:
        per_image = mean_size / single
        share = ROUND_TRIPS * trips / per_image
        if share >= LATENCY_SHARE:
            return Verdict(
                "latency",
                f"each image waits for {ROUND_TRIPS} round trips of about {trips * 1000:.0f} ms "
                f"(create, upload, verify): {share:.0%} of its {per_image:.2f} s with "
                f"{_transfers(min(copy))}; larger images or more transfers hide it",
            )
    d, u = down.get(at), up.get(at)
    if d is None or u is None:
        return Verdict("unknown", f"download or upload was not measured with {_transfers(at)}")
    if abs(d - u) < ALIKE * max(d, u):
        reason = (
            f"with {_transfers(at)} the download alone reached {human_rate(d)} and the upload "
            f"alone {human_rate(u)}: both sides give about the same"
        )
        if at in copy:
            reason += f"; the copy reached {human_rate(copy[at])}"
        return Verdict("both", reason)
    side, slow, fast = ("download", d, u) if d <= u else ("upload", u, d)
    other = "upload" if side == "download" else "download"
    reason = (
        f"with {_transfers(at)} the {side} alone reached {human_rate(slow)}, the {other} alone "
        f"{human_rate(fast)}"
    )
    if at in copy:
        reason += f"; the copy reached {human_rate(copy[at])} ({copy[at] / slow:.0%} of the {side})"
    return Verdict(side, reason)


def _transfers(n: int) -> str:
    return f"{n} transfer" if n == 1 else f"{n} transfers"


def _round_trip(latencies: Sequence[Latency]) -> float | None:
    """A typical round trip: the median of the calls' p50s (both sides)."""
    p50s = [p for lat in latencies if lat.call != "token" and (p := lat.p50) is not None]
    return percentile(p50s, 0.5) if p50s else None


def table(measurements: Sequence[Measurement]) -> list[str]:
    """One row per transfers value: the three throughputs, and the copy's images."""
    by = {(m.kind, m.transfers): m for m in measurements}
    values = sorted({m.transfers for m in measurements})
    rows = [["transfers", "download", "upload", "copy", "copied"]]
    for t in values:
        cells = [str(t)]
        for kind in Kind:
            m = by.get((kind, t))
            cells.append(_cell(m))
        copied = by.get((Kind.COPY, t))
        cells.append(f"{copied.images}" if copied else "-")
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]


def _cell(m: Measurement | None) -> str:
    if m is None:
        return "-"
    if m.rate is None:
        return "failed"
    return human_rate(m.rate) + ("!" if m.failed else "")


def latency_table(latencies: Sequence[Latency]) -> list[str]:
    rows = [["side", "call", "p50", "p95", "calls"]]
    for lat in latencies:
        if lat.skipped:
            rows.append([lat.side, lat.call, "-", "-", lat.skipped])
            continue
        rows.append([lat.side, lat.call, _ms(lat.p50), _ms(lat.p95), str(len(lat.samples))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ).rstrip()
        for row in rows
    ]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def measurement_json(m: Measurement) -> dict[str, Any]:
    return {
        "kind": str(m.kind),
        "transfers": m.transfers,
        "images": m.images,
        "bytes": m.bytes,
        "seconds": round(m.seconds, 6),
        "bytes_per_second": None if m.rate is None else round(m.rate, 3),
        "failed": m.failed,
        "error": m.error,
        "transient": m.transient if m.failed else None,
    }


def latency_json(lat: Latency) -> dict[str, Any]:
    return {
        "side": lat.side,
        "call": lat.call,
        "samples": [round(s, 6) for s in lat.samples],
        "p50": None if lat.p50 is None else round(lat.p50, 6),
        "p95": None if lat.p95 is None else round(lat.p95, 6),
        "skipped": lat.skipped,
    }
