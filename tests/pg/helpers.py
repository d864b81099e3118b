"""What the journal tests share (those of both backends, and the SQLite journal's own): the
job and target they write to, and an entry as planning records it."""

from __future__ import annotations

from collections.abc import Sequence

from transfer.journal import Journal
from transfer.journal.records import Claim, ItemKey, JournalEntry

JOB = "job1"
KEY = "dst/KR2"


async def add_entry(journal: Journal, source_id: str, target_id: str | None = "t") -> JournalEntry:
    return await journal.ensure_entry(
        JOB,
        source_id,
        KEY,
        source_name=f"name-{source_id}",
        source_checksum="c" * 32,
        source_size=123,
        target_id=target_id,
        generation=0,
    )


def keys(claims: Sequence[Claim]) -> list[ItemKey]:
    """The items of some claims, in their order."""
    return [claim.key for claim in claims]


def epochs(claims: Sequence[Claim]) -> dict[ItemKey, int]:
    """Some claims as ``renew`` and ``release`` take them: item -> its claim's epoch."""
    return {claim.key: claim.epoch for claim in claims}
