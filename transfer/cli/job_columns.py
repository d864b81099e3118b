"""The columns of ``plan``, ``verify`` and ``status`` (``-f value|csv``, ``--column``): apart
from the code that fills them so that building a parser imports neither the planner nor the
engine.  Their meaning is in ``docs/json-output.md``."""

from __future__ import annotations

#: ``transfer.journal.records.STATES``, spelled out: importing the journal package before the
#: first request would slow ``plan``'s start (a test checks the two agree).
STATES = ("pending", "running", "done", "failed")

PLAN_COLUMNS = (
    "job",
    "code",
    "action",
    "target",
    "source_id",
    "source_name",
    "target_id",
    "target_name",
    "reasons",
)
VERIFY_COLUMNS = ("job", "result", "source_id", "source_name", "target", "target_id", "reasons")
STATUS_COLUMNS = (
    "job",
    *STATES,
    "bytes_done",
    "last_run_id",
    "last_outcome",
    "last_started_at",
    "last_finished_at",
)
STATUS_ITEM_COLUMNS = (
    "job",
    "state",
    "source_id",
    "source_name",
    "target",
    "target_id",
    "step",
    "bytes_done",
    "attempts",
    "error",
    "lease_owner",
    "updated_at",
)
#: Every column of ``status --images`` (its csv and value show ``STATUS_ITEM_COLUMNS``).
STATUS_ITEM_ALL = (
    *STATUS_ITEM_COLUMNS,
    "generation",
    "source_checksum",
    "source_size",
    "md5",
    "sha512",
    "lease_expires",
    "last_step",
    "failed_step",
    "retryable",
)
#: What ``status --column`` accepts (checked against the chosen mode once parsed).
STATUS_ANY_COLUMN = tuple(dict.fromkeys((*STATUS_COLUMNS, *STATUS_ITEM_ALL)))
