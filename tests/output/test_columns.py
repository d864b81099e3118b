"""The column names the parsers know without importing what fills them."""

from __future__ import annotations

from transfer.cli.job_columns import STATES as SPELLED
from transfer.journal.records import STATES


def test_the_status_columns_name_every_journal_state() -> None:
    assert tuple(s.value for s in STATES) == SPELLED
