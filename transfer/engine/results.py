"""What a run produces, for the reports and the live display: one ``ItemResult`` per (source,
target) pair, the ``RunSummary`` of a run, the ``Progress`` counters a display reads while the
run goes on, and the ``Difference``s that ``verify`` finds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from transfer.planner import Code, PlanItem


@dataclass
class ActiveTransfer:
    """One (image, target) pair being worked on, for the display."""

    name: str
    target: str
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class Progress:
    """Counters a display reads while the run goes on (a subscriber, not code in the loop)."""

    images_total: int = 0
    images_done: int = 0
    images_failed: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    started: float = field(default_factory=time.monotonic)
    active: dict[tuple[str, str], ActiveTransfer] = field(default_factory=dict)

    def add_bytes(self, source_id: str, target_key: str, n: int) -> None:
        self.bytes_done += n
        active = self.active.get((source_id, target_key))
        if active is not None:
            active.done += n

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
    outcome: str = "pending"  # copied | repaired | updated | in-sync | failed | interrupted
    bytes: int = 0
    seconds: float = 0.0
    attempts: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    retryable: bool = False  # the last error was transient: a later run may well succeed
    md5: str | None = None
    sha512: str | None = None


@dataclass
class RunSummary:
    job: str
    run_id: int
    results: list[ItemResult]
    plan: list[PlanItem]
    started: float
    ended: float
    interrupted: bool = False
    not_started: int = 0  # items a stop or deadline left for the next run

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.results)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def outcome(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.failed:
            return "partial" if len(self.failed) < len(self.results) else "failed"
        return "ok"


@dataclass
class Difference:
    source_id: str
    source_name: str
    target_key: str
    reasons: tuple[str, ...]
