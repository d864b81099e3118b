"""What a run produces, for the reports and the live display: one ``ItemResult`` per (source,
target) pair with its ``Outcome``, the ``RunSummary`` of a run and its ``RunOutcome``, the
``Progress`` counters a display reads while the run goes on, and the ``Difference``s that
``verify`` finds.  Values are ``StrEnum``s, so reports, JSON, metrics and the journal carry the
same strings as ever.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from transfer.errors import TransferError
from transfer.planner import Code, PlanItem


class Outcome(StrEnum):
    """What happened to one (source, target) pair in a run."""

    PENDING = "pending"  # not finished (yet)
    COPIED = "copied"
    REPAIRED = "repaired"
    UPDATED = "updated"
    IN_SYNC = "in-sync"
    FAILED = "failed"
    #: Left to another worker: this one lost its lease on the item (it was paused or cut off
    #: for too long) or its shared journal; whoever holds the item now finishes it.
    HANDED_OVER = "handed-over"


#: The outcomes reports count, in the order they list them.
REPORTED_OUTCOMES = (
    Outcome.COPIED,
    Outcome.REPAIRED,
    Outcome.UPDATED,
    Outcome.IN_SYNC,
    Outcome.FAILED,
    Outcome.HANDED_OVER,
)
#: What a successful pipeline run of an item with this code is called.
SUCCESS_BY_CODE = {
    Code.COPY: Outcome.COPIED,
    Code.REPAIR: Outcome.REPAIRED,
    Code.UPDATE: Outcome.UPDATED,
}


class RunOutcome(StrEnum):
    """How a whole run ended (the journal's ``runs.outcome``)."""

    OK = "ok"
    PARTIAL = "partial"  # some items failed, others did not
    FAILED = "failed"  # every item that was tried failed
    INTERRUPTED = "interrupted"  # a stop (SIGINT, SIGTERM) left items for the next run
    DEADLINE = "deadline"  # the job's max_duration left items for the next run


@dataclass
class ActiveTransfer:
    """One (image, target) pair being worked on, for the display."""

    name: str
    target: str
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)


#: How many of the latest failures ``Progress`` keeps for the display.
RECENT_FAILURES = 5


@dataclass
class Progress:
    """Counters a display reads while the run goes on (a subscriber, not code in the loop)."""

    images_total: int = 0
    images_done: int = 0  # finished, failed ones included
    images_failed: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    started: float = field(default_factory=time.monotonic)
    active: dict[tuple[str, str], ActiveTransfer] = field(default_factory=dict)
    #: Attempts after the first of the images finished so far (``ItemResult.attempts``).
    image_retries: int = 0
    #: The latest failed images, oldest first.
    recent_failures: deque[ItemResult] = field(
        default_factory=lambda: deque(maxlen=RECENT_FAILURES)
    )
    #: Requests the clients repeated, while a display listens (``cli.display``).
    request_retries: int = 0

    def add_bytes(self, source_id: str, target_key: str, n: int) -> None:
        self.bytes_done += n
        active = self.active.get((source_id, target_key))
        if active is not None:
            active.done += n

    def finished(self, result: ItemResult) -> None:
        self.images_done += 1
        self.image_retries += max(result.attempts - 1, 0)
        if result.outcome is Outcome.FAILED:
            self.images_failed += 1
            self.recent_failures.append(result)

    def request_retried(self) -> None:
        self.request_retries += 1

    @property
    def retries(self) -> int:
        """Request retries plus the extra attempts of finished images."""
        return self.image_retries + self.request_retries

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.bytes_done / elapsed if elapsed > 0 else 0.0


@dataclass
class ItemResult:
    """What happened to one (source, target) pair in this run."""

    code: Code
    target_key: str
    source_id: str
    source_name: str
    target_id: str | None = None
    outcome: Outcome = Outcome.PENDING
    #: Bytes sent in upload bodies for this pair in this run, every attempt's (retries included).
    bytes: int = 0
    #: The size of the image whose bytes this run put on the target (0 when it moved none).
    image_bytes: int = 0
    seconds: float = 0.0
    attempts: int = 0
    waited: float = 0.0  # seconds spent in backoff between attempts
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    #: The last error was transient (network, timeout, 5xx, 429): a later run may well succeed.
    retryable: bool = False
    md5: str | None = None
    sha512: str | None = None
    #: The step whose failure ``error`` reports (None when it came from outside a step).
    failed_step: str | None = None

    @classmethod
    def of(cls, item: PlanItem, **fields: Any) -> ItemResult:
        """A result for a plan item that has a source."""
        assert item.source is not None
        return cls(
            code=item.code,
            target_key=item.target_key,
            source_id=item.source.id,
            source_name=item.source.name or item.source.id,
            **fields,
        )

    @classmethod
    def failure(cls, item: PlanItem, exc: BaseException) -> ItemResult:
        """An item that failed outside its pipeline (a bug, or trouble with its feed)."""
        error = str(exc) if isinstance(exc, TransferError) else f"internal error: {exc!r}"
        return cls.of(item, outcome=Outcome.FAILED, error=error)


@dataclass
class RunSummary:
    job: str
    run_id: int
    results: list[ItemResult]
    plan: list[PlanItem]
    started: float
    ended: float
    interrupted: bool = False
    #: The items left for the next run were left by the job's ``max_duration``.
    deadline: bool = False
    #: Wall-clock start and end of the run (``started`` and ``ended`` are monotonic).
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    not_started: int = 0  # items a stop or deadline left for the next run
    #: With a shared journal: items of the job's plan that failed in other workers' hands.
    failed_elsewhere: int = 0
    #: Journal transactions this run committed (its own start and end left out).
    journal_commits: int = 0

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def bytes(self) -> int:
        """Bytes sent in upload bodies, retries included (``bytes_moved`` in the report)."""
        return sum(r.bytes for r in self.results)

    @property
    def image_bytes(self) -> int:
        """The sizes of the images whose bytes this run put on a target, each counted once
        per target."""
        return sum(r.image_bytes for r in self.results)

    @property
    def attempts(self) -> int:
        return sum(r.attempts for r in self.results)

    @property
    def image_retries(self) -> int:
        """Image attempts beyond the first of each item."""
        return sum(max(0, r.attempts - 1) for r in self.results)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if r.outcome is Outcome.FAILED]

    @property
    def outcome(self) -> RunOutcome:
        if self.interrupted:
            return RunOutcome.DEADLINE if self.deadline else RunOutcome.INTERRUPTED
        if self.failed:
            return RunOutcome.PARTIAL if len(self.failed) < len(self.results) else RunOutcome.FAILED
        return RunOutcome.OK

    def journal_summary(self) -> dict[str, int]:
        """The counts the journal keeps with the run (``runs.summary``)."""
        return {
            "copied": self.count(Outcome.COPIED),
            "repaired": self.count(Outcome.REPAIRED),
            "updated": self.count(Outcome.UPDATED),
            "in_sync": self.count(Outcome.IN_SYNC),
            "failed": len(self.failed),
            "handed_over": self.count(Outcome.HANDED_OVER),
            "bytes": self.bytes,
            "not_started": self.not_started,
        }


@dataclass
class Difference:
    source_id: str
    source_name: str
    target_key: str
    reasons: tuple[str, ...]
