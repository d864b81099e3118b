"""Prometheus text-format metrics for node_exporter's textfile collector.

One file holds the series of every job that wrote to it: a run replaces the series of its own
jobs and keeps those of the others (read back from the file), each metric family under one
``# HELP`` and ``# TYPE``.  Written atomically (a temporary file renamed over the old one) so
the collector never reads half a file.  ``image_transfer_last_success_timestamp_seconds`` is
carried over from the previous file when this run did not succeed, so an alert on its age keeps
working across failed nights.

Every value describes a job's last run, so every family is a gauge (a counter must only grow);
``image_transfer_image_retries`` counts the image attempts beyond the first of that run.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transfer.engine.results import REPORTED_OUTCOMES, RunOutcome, RunSummary

_LAST_SUCCESS = "image_transfer_last_success_timestamp_seconds"
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+\S+")
_JOB_RE = re.compile(r'job="((?:[^"\\]|\\.)*)"')
_COMMENT_RE = re.compile(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class _Family:
    help: str
    type: str = "gauge"
    samples: list[str] = field(default_factory=list)


#: The one-sample-per-job families: name, help, and the value of a job's run summary.
_GAUGES: tuple[tuple[str, str, Callable[[RunSummary], str]], ...] = (
    (
        "image_transfer_bytes",
        "Bytes sent in upload bodies in the last run of a job, retries included.",
        lambda s: str(s.bytes),
    ),
    (
        "image_transfer_image_bytes",
        "Sizes of the images whose bytes the last run of a job put on a target.",
        lambda s: str(s.image_bytes),
    ),
    (
        "image_transfer_image_retries",
        "Image attempts beyond the first in the last run of a job.",
        lambda s: str(s.image_retries),
    ),
    (
        "image_transfer_duration_seconds",
        "Duration of the last run of a job.",
        lambda s: f"{s.seconds:.3f}",
    ),
)


def render_metrics(
    summaries: Sequence[RunSummary], *, previous: str = "", now: float | None = None
) -> str:
    """The metrics of ``summaries``, with the series of other jobs kept from ``previous``
    (the file's text before this run)."""
    now = time.time() if now is None else now
    families = _families(summaries, previous, now)
    mine = {_label(s.job) for s in summaries}
    kept = _parse(previous)
    for name, old in kept.items():
        family = families.setdefault(name, _Family(old.help, old.type))
        family.samples += [line for line in old.samples if _job(line) not in mine]
    lines: list[str] = []
    for name, family in families.items():
        if not family.samples:
            continue
        if family.help:
            lines.append(f"# HELP {name} {family.help}")
        lines += [f"# TYPE {name} {family.type}", *family.samples]
    return "\n".join(lines) + "\n"


def _families(summaries: Sequence[RunSummary], previous: str, now: float) -> dict[str, _Family]:
    """This run's families, in the order the file lists them."""
    families: dict[str, _Family] = {
        "image_transfer_images": _Family("Images by outcome in the last run of a job.")
    }
    for s in summaries:
        families["image_transfer_images"].samples += [
            f'image_transfer_images{{job="{_label(s.job)}",outcome="{outcome}"}} {s.count(outcome)}'
            for outcome in REPORTED_OUTCOMES
        ]
    for name, help_text, value in _GAUGES:
        families[name] = _Family(
            help_text, samples=[f'{name}{{job="{_label(s.job)}"}} {value(s)}' for s in summaries]
        )
    families["image_transfer_last_run_timestamp_seconds"] = _Family(
        "When the last run of a job ended.",
        samples=[
            f'image_transfer_last_run_timestamp_seconds{{job="{_label(s.job)}"}} {now:.0f}'
            for s in summaries
        ],
    )
    families["image_transfer_last_run_success"] = _Family(
        "1 if the last run of a job succeeded.",
        samples=[
            f'image_transfer_last_run_success{{job="{_label(s.job)}"}} '
            f"{1 if s.outcome is RunOutcome.OK else 0}"
            for s in summaries
        ],
    )
    # A job that did not succeed now keeps the time of its last success, from the file.
    old = {_job(line): line for line in _parse(previous).get(_LAST_SUCCESS, _Family("")).samples}
    carried = []
    for s in summaries:
        job = _label(s.job)
        if s.outcome is RunOutcome.OK:
            carried.append(f'{_LAST_SUCCESS}{{job="{job}"}} {now:.0f}')
        elif job in old:
            carried.append(old[job])
    families[_LAST_SUCCESS] = _Family("When a job last succeeded.", samples=carried)
    return families


def _job(sample: str) -> str | None:
    """The ``job`` label of a sample line, as written (escaped)."""
    match = _SAMPLE_RE.match(sample)
    labels = match[2] if match else None
    found = _JOB_RE.search(labels) if labels else None
    return found[1] if found else None


def _parse(text: str) -> dict[str, _Family]:
    """The families of a metrics file: their help, type and sample lines (those that name a
    job; the rest have no owner to keep them for)."""
    families: dict[str, _Family] = {}
    for line in text.splitlines():
        comment = _COMMENT_RE.match(line)
        if comment:
            family = families.setdefault(comment[2], _Family(""))
            if comment[1] == "HELP":
                family.help = comment[3]
            else:
                family.type = comment[3]
            continue
        sample = _SAMPLE_RE.match(line)
        if sample and _job(line) is not None:
            families.setdefault(sample[1], _Family("")).samples.append(line)
    return families


def write_metrics(path: Path, summaries: Sequence[RunSummary]) -> None:
    previous = path.read_text() if path.exists() else ""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_metrics(summaries, previous=previous))
    os.replace(tmp, path)
