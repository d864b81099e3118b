"""Fault injection: what may go wrong (``Faults``) and the seeded dice that decide when
(``FaultInjector``).

``Faults`` is the live, mutable description shared by every server of one emulator; a change
applies to the next request.  Every random choice (which request fails, with which status, how
much jitter, which byte is flipped) comes from one ``random.Random`` seeded by the emulator's
seed, so a run with the same requests in the same order meets the same faults.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Route names, as used by ``Faults.error_routes`` and the request counters.
ROUTES: frozenset[str] = frozenset(
    {
        "token",
        "identity",
        "list",
        "show",
        "create",
        "update",
        "delete",
        "upload",
        "download",
        "tags",
        "members",
    }
)


@dataclass(kw_only=True)
class Faults:
    """What the emulated cloud does wrong; everything is off by default."""

    error_rate: float = 0.0  # probability of an injected error status per request
    error_routes: frozenset[str] | None = None  # None = every route in ROUTES
    error_statuses: tuple[int, ...] = (500, 502, 503)
    retry_after: float | None = None  # seconds, sent as Retry-After with injected errors
    errors_remaining: int | None = None  # None = unlimited
    drop_download_after: int | None = None  # body bytes sent before the connection is cut
    drop_upload_after: int | None = None  # body bytes received before the connection is cut
    drops_remaining: int | None = None  # None = unlimited (counts uploads and downloads)
    latency: float = 0.0  # seconds added to every request
    latency_jitter: float = 0.0  # up to this many seconds more, uniformly
    latency_routes: frozenset[str] | None = None  # None = every route in ROUTES
    #: Seconds added to the first request of each new connection: what a TCP and TLS
    #: handshake costs over a real link (two round trips), which a reused connection saves.
    connect_latency: float = 0.0
    bandwidth: int | None = None  # bytes/s per connection, both directions
    corrupt_downloads: int = 0  # flip one byte in the body of this many next downloads

    def __post_init__(self) -> None:
        # Accept any collection where a set or tuple is meant (JSON lists, plain sets).
        routes: Any = self.error_routes
        if isinstance(routes, set | list | tuple):
            self.error_routes = frozenset(routes)
        delayed: Any = self.latency_routes
        if isinstance(delayed, set | list | tuple):
            self.latency_routes = frozenset(delayed)
        statuses: Any = self.error_statuses
        if isinstance(statuses, list):
            self.error_statuses = tuple(statuses)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value makes no sense."""
        _check_float("error_rate", self.error_rate, low=0.0, high=1.0)
        _check_routes("error_routes", self.error_routes)
        _check_routes("latency_routes", self.latency_routes)
        if not isinstance(self.error_statuses, tuple) or not self.error_statuses:
            raise ValueError("error_statuses: expected a non-empty tuple of HTTP statuses")
        for status in self.error_statuses:
            if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
                raise ValueError(f"error_statuses: {status!r} is not an HTTP error status")
        _check_opt_float("retry_after", self.retry_after)
        _check_opt_int("errors_remaining", self.errors_remaining)
        _check_opt_int("drop_download_after", self.drop_download_after)
        _check_opt_int("drop_upload_after", self.drop_upload_after)
        _check_opt_int("drops_remaining", self.drops_remaining)
        _check_float("latency", self.latency, low=0.0)
        _check_float("latency_jitter", self.latency_jitter, low=0.0)
        _check_float("connect_latency", self.connect_latency, low=0.0)
        _check_opt_int("bandwidth", self.bandwidth, low=1)
        _check_int("corrupt_downloads", self.corrupt_downloads, low=0)

    def update(self, **changes: Any) -> None:
        """Change some fields at once, all or nothing (ValueError/TypeError if invalid)."""
        names = field_names()
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise TypeError(f"unknown fault field(s): {', '.join(unknown)}")
        candidate = dataclasses.replace(self, **changes)  # validates in __post_init__
        for name in names:
            setattr(self, name, getattr(candidate, name))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in field_names()}
        out["error_routes"] = None if self.error_routes is None else sorted(self.error_routes)
        out["latency_routes"] = None if self.latency_routes is None else sorted(self.latency_routes)
        out["error_statuses"] = list(self.error_statuses)
        return out

    @classmethod
    def changes_from_json(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """Check a JSON object's keys; its lists become sets and tuples in __post_init__."""
        names = set(field_names())
        unknown = sorted(set(data) - names)
        if unknown:
            raise TypeError(f"unknown fault field(s): {', '.join(unknown)}")
        return dict(data)

    @property
    def downloads_untouched(self) -> bool:
        """Whether a download may take the fast path (no byte-level download fault armed)."""
        return (
            self.bandwidth is None
            and self.corrupt_downloads == 0
            and (self.drop_download_after is None or self.drops_remaining == 0)
        )


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(Faults))


def parse_routes(text: str) -> frozenset[str] | None:
    """``"upload,download"`` -> frozenset; ``""`` or ``"all"`` -> None (every route)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or names == ["all"]:
        return None
    return frozenset(names)


def _check_routes(name: str, routes: object) -> None:
    if routes is None:
        return
    if isinstance(routes, str) or not isinstance(routes, frozenset):
        raise ValueError(f"{name}: expected a set of route names or None")
    unknown = sorted(str(r) for r in routes if r not in ROUTES)
    if unknown:
        raise ValueError(
            f"{name}: unknown route(s) {', '.join(unknown)}; known: {', '.join(sorted(ROUTES))}"
        )


def _check_float(name: str, value: object, *, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if value != value or value < low or (high is not None and value > high):  # NaN too
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name}: expected a number {bound}, got {value!r}")


def _check_opt_float(name: str, value: object) -> None:
    if value is not None:
        _check_float(name, value, low=0.0)


def _check_int(name: str, value: object, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an integer of at least {low}, got {value}")


def _check_opt_int(name: str, value: object, *, low: int = 0) -> None:
    if value is not None:
        _check_int(name, value, low=low)


class FaultInjector:
    """Rolls the dice for one emulator: every decision reads the live ``Faults``."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(seed)

    def delay(self, route: str) -> float:
        """Seconds to wait before handling a request (latency plus jitter)."""
        faults = self.faults
        if faults.latency_routes is not None and route not in faults.latency_routes:
            return 0.0
        extra = self._rng.uniform(0.0, faults.latency_jitter) if faults.latency_jitter else 0.0
        return faults.latency + extra

    def pick_error(self, route: str) -> int | None:
        """The status of an injected error for this request, or None to serve it."""
        faults = self.faults
        if faults.error_rate <= 0.0 or faults.errors_remaining == 0:
            return None
        if faults.error_routes is not None and route not in faults.error_routes:
            return None
        if self._rng.random() >= faults.error_rate:
            return None
        if faults.errors_remaining is not None:
            faults.errors_remaining -= 1
        return self._rng.choice(faults.error_statuses)

    def _drop_allowed(self) -> bool:
        return self.faults.drops_remaining != 0

    def download_cut(self, body_length: int) -> int | None:
        """Where to cut a download body of this length (consumes one drop), or None."""
        limit = self.faults.drop_download_after
        if limit is None or limit >= body_length or not self._drop_allowed():
            return None
        self._consume_drop()
        return limit

    def upload_cut(self) -> int | None:
        """After how many received bytes to cut an upload, or None (consumed when it fires)."""
        if not self._drop_allowed():
            return None
        return self.faults.drop_upload_after

    def _consume_drop(self) -> None:
        if self.faults.drops_remaining is not None:
            self.faults.drops_remaining -= 1

    def upload_dropped(self) -> bool:
        """Take one drop for an upload that reached its cut; False when none is left.

        Concurrent uploads are all armed at start, so the drops left are checked again here:
        the first to reach the cut takes the last drop and the others go on unharmed.
        """
        if not self._drop_allowed():
            return False
        self._consume_drop()
        return True

    def corruption_offset(self, body_length: int) -> int | None:
        """Offset of the byte to flip in this download (consumes one corruption), or None."""
        if self.faults.corrupt_downloads <= 0 or body_length <= 0:
            return None
        self.faults.corrupt_downloads -= 1
        return self._rng.randrange(body_length)
