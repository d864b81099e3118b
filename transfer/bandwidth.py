"""Bandwidth timetables: ``"01:00,500M 07:00,50M 19:00,off"`` or a plain ``"10M"``.

Like rclone's ``--bwlimit``: each entry says from which local time of day a rate applies, until
the next entry; the last entry of the day carries over past midnight.  A running job follows the
timetable: ``follow_timetable`` switches a shared ``TokenBucket`` at each boundary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio

from transfer.streams import TokenBucket, parse_rate

_ENTRY_RE = re.compile(r"(\d{1,2}):(\d{2}),(\S+)")


@dataclass(frozen=True)
class Timetable:
    """Rates by time of day; ``entries`` sorted by minute of day (0..1439)."""

    entries: tuple[tuple[int, float | None], ...]

    @property
    def unlimited(self) -> bool:
        """Whether it is ``off`` all day (no limit at all)."""
        return len(self.entries) == 1 and self.entries[0][1] is None

    def rate_at(self, when: datetime) -> float | None:
        minute = when.hour * 60 + when.minute
        current = self.entries[-1][1]  # before the first entry: yesterday's last one
        for start, rate in self.entries:
            if start <= minute:
                current = rate
        return current

    def next_change(self, when: datetime) -> datetime | None:
        """The next moment the rate may change (None for a single constant rate)."""
        if len(self.entries) == 1 and self.entries[0][0] == 0:
            return None
        minute = when.hour * 60 + when.minute
        day = when.replace(hour=0, minute=0, second=0, microsecond=0)
        for start, _ in self.entries:
            if start > minute:
                return day + timedelta(minutes=start)
        return day + timedelta(days=1, minutes=self.entries[0][0])


def parse_bwlimit(text: str) -> Timetable:
    """Parse a bandwidth limit; raises ValueError with a message naming the bad part."""
    text = text.strip()
    if not text:
        raise ValueError(
            "expected a rate like 10M, off, or a timetable like '01:00,500M 07:00,off'"
        )
    if "," not in text:
        return Timetable(((0, parse_rate(text)),))
    entries: dict[int, float | None] = {}
    for part in text.split():
        match = _ENTRY_RE.fullmatch(part)
        if match is None:
            raise ValueError(f"expected HH:MM,RATE in the timetable, got {part!r}")
        hour, minute, rate = int(match[1]), int(match[2]), match[3]
        if hour > 23 or minute > 59:
            raise ValueError(f"no such time of day in {part!r}")
        start = hour * 60 + minute
        if start in entries:
            raise ValueError(f"{match[1]}:{match[2]} appears twice in the timetable")
        entries[start] = parse_rate(rate)
    return Timetable(tuple(sorted(entries.items())))


async def follow_timetable(
    timetable: Timetable, bucket: TokenBucket, *, clock: type[datetime] = datetime
) -> None:
    """Keep ``bucket`` at the timetable's rate until cancelled."""
    while True:
        now = clock.now()
        bucket.set_rate(timetable.rate_at(now))
        change = timetable.next_change(now)
        if change is None:
            await anyio.sleep_forever()
            return
        await anyio.sleep(max(1.0, (change - clock.now()).total_seconds()))
