"""Prometheus text-format metrics for node_exporter's textfile collector.

Written atomically (a temporary file renamed over the old one) so the collector never reads half
a file.  ``image_transfer_last_success_timestamp_seconds`` is carried over from the previous file
when this run did not succeed, so an alert on its age keeps working across failed nights.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from transfer.engine.results import REPORTED_OUTCOMES, RunOutcome, RunSummary

_LAST_SUCCESS_RE = re.compile(
    r'^image_transfer_last_success_timestamp_seconds\{job="((?:[^"\\]|\\.)*)"\} (\S+)$', re.M
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(
    summaries: Sequence[RunSummary], *, previous: str = "", now: float | None = None
) -> str:
    now = time.time() if now is None else now
    last_success: dict[str, str] = {}
    for match in _LAST_SUCCESS_RE.finditer(previous):
        last_success[match[1]] = match[2]
    lines = [
        "# HELP image_transfer_images Images by outcome in the last run of a job.",
        "# TYPE image_transfer_images gauge",
    ]
    for s in summaries:
        for outcome in REPORTED_OUTCOMES:
            lines.append(
                f'image_transfer_images{{job="{_label(s.job)}",outcome="{outcome}"}} '
                f"{s.count(outcome)}"
            )
    lines += [
        "# HELP image_transfer_bytes Bytes uploaded in the last run of a job.",
        "# TYPE image_transfer_bytes gauge",
        *(f'image_transfer_bytes{{job="{_label(s.job)}"}} {s.bytes}' for s in summaries),
        "# HELP image_transfer_duration_seconds Duration of the last run of a job.",
        "# TYPE image_transfer_duration_seconds gauge",
        *(
            f'image_transfer_duration_seconds{{job="{_label(s.job)}"}} {s.seconds:.3f}'
            for s in summaries
        ),
        "# HELP image_transfer_last_run_timestamp_seconds When the last run of a job ended.",
        "# TYPE image_transfer_last_run_timestamp_seconds gauge",
        *(
            f'image_transfer_last_run_timestamp_seconds{{job="{_label(s.job)}"}} {now:.0f}'
            for s in summaries
        ),
        "# HELP image_transfer_last_run_success 1 if the last run of a job succeeded.",
        "# TYPE image_transfer_last_run_success gauge",
        *(
            f'image_transfer_last_run_success{{job="{_label(s.job)}"}} '
            f"{1 if s.outcome is RunOutcome.OK else 0}"
            for s in summaries
        ),
    ]
    for s in summaries:
        if s.outcome is RunOutcome.OK:
            last_success[_label(s.job)] = f"{now:.0f}"
    lines += [
        "# HELP image_transfer_last_success_timestamp_seconds When a job last succeeded.",
        "# TYPE image_transfer_last_success_timestamp_seconds gauge",
        *(
            f'image_transfer_last_success_timestamp_seconds{{job="{job}"}} {value}'
            for job, value in sorted(last_success.items())
        ),
    ]
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, summaries: Sequence[RunSummary]) -> None:
    previous = path.read_text() if path.exists() else ""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_metrics(summaries, previous=previous))
    os.replace(tmp, path)
