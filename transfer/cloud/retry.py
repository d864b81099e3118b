"""Per-request retry policy: exponential backoff with full jitter, bounded in attempts and time.

Which errors may be retried is declared on the error classes (``transfer.errors``); which calls
may be repeated safely is the client's decision.  This module only answers "wait how long before
the next attempt, or give up?" and words the error raised when the budget is spent.  It also
tells the listeners of ``counting_retries`` of every retry it grants (the live display counts
them).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from transfer.errors import ApiError, ConnectError, TransferError, TransportError


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard one request is retried.

    ``attempts`` counts the first try; ``total`` bounds the time from the first try to the start
    of the last one (seconds); a server's ``Retry-After`` is honoured up to ``cap``.
    ``connect_attempts`` (when set) is the smaller budget of a request whose connection could
    not even be opened (``ConnectError``: refused, no route, connect timeout).
    """

    attempts: int = 8
    connect_attempts: int | None = None
    base: float = 0.5
    cap: float = 30.0
    total: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or (self.connect_attempts is not None and self.connect_attempts < 1):
            raise ValueError("attempts must be at least 1")
        if self.base < 0 or self.cap < 0 or self.total < 0:
            raise ValueError("backoff times must not be negative")


_JITTER = random.Random()


#: Called once for every retry granted, by any request of this process.
_listeners: list[Callable[[], None]] = []


@contextmanager
def counting_retries(listener: Callable[[], None]) -> Iterator[None]:
    """Call ``listener`` at every request retry granted while the block runs."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


@dataclass
class RetryState:
    """The budget of one request: counts attempts and decides the next delay."""

    policy: RetryPolicy
    #: The jitter's dice: one generator for every request (seeding one per request from the
    #: OS's entropy cost ~0.1 ms each, 4 times per image).
    rng: random.Random = field(default_factory=lambda: _JITTER)
    attempt: int = 1
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def next_delay(self, exc: TransferError) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget is spent."""
        limit = self.policy.attempts
        if isinstance(exc, ConnectError) and self.policy.connect_attempts is not None:
            limit = min(limit, self.policy.connect_attempts)
        if self.attempt >= limit:
            return None
        # Full jitter: spreads the retries of many concurrent transfers hit by the same outage.
        ceiling = min(self.policy.cap, self.policy.base * (2 ** (self.attempt - 1)))
        delay = self.rng.uniform(0.0, ceiling)
        retry_after = exc.retry_after if isinstance(exc, ApiError) else None
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.policy.cap))
        if self.elapsed() + delay > self.policy.total:
            return None
        self.attempt += 1
        for listener in _listeners:
            listener()
        return delay


def exhausted(exc: TransferError, state: RetryState) -> TransferError:
    """The same kind of error as ``exc``, its message saying how long the client tried."""
    note = f" (gave up after {state.attempt} attempts in {state.elapsed():.1f} s)"
    if isinstance(exc, ApiError):
        return type(exc)(
            exc.server_message + note,
            status=exc.status,
            method=exc.method,
            path=exc.path,
            retry_after=exc.retry_after,
        )
    if isinstance(exc, TransportError):
        return type(exc)(f"{exc}{note}")
    return exc
