"""Bandwidth timetables, the overlap lock and the metrics file, on plain data and real files."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from transfer.bandwidth import parse_bwlimit
from transfer.cli.metrics import render_metrics, write_metrics
from transfer.engine.results import ItemResult, Outcome, RunSummary
from transfer.errors import JobLocked
from transfer.journal.lock import job_lock
from transfer.planner import Code

MiB = 1 << 20


def test_a_plain_rate_and_off() -> None:
    assert parse_bwlimit("10M").rate_at(datetime(2026, 1, 1, 3, 0)) == 10 * MiB
    assert parse_bwlimit("off").rate_at(datetime(2026, 1, 1, 3, 0)) is None
    assert parse_bwlimit("10M").next_change(datetime(2026, 1, 1, 3, 0)) is None


def test_a_timetable_switches_at_its_times_and_wraps_past_midnight() -> None:
    table = parse_bwlimit("01:00,500M 07:00,50M 19:00,off")
    day = datetime(2026, 11, 27)
    assert table.rate_at(day.replace(hour=0, minute=30)) is None  # yesterday's 19:00 entry
    assert table.rate_at(day.replace(hour=1)) == 500 * MiB
    assert table.rate_at(day.replace(hour=6, minute=59)) == 500 * MiB
    assert table.rate_at(day.replace(hour=7)) == 50 * MiB
    assert table.rate_at(day.replace(hour=23)) is None
    assert table.next_change(day.replace(hour=2)) == day.replace(hour=7)
    assert table.next_change(day.replace(hour=20)) == datetime(2026, 11, 28, 1, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("01:00,500M 25:00,off", "no such time of day"),
        ("01:00,500M 07:00", "expected HH:MM,RATE"),
        ("01:00,fast", "expected a rate like 10M"),
        ("01:00,1M 01:00,2M", "appears twice"),
        ("ten", "expected a rate like 10M"),
    ],
)
def test_bad_timetables_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_bwlimit(text)


def test_a_second_holder_is_refused_with_who_holds_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    with job_lock(journal, "nightly"):
        with (
            pytest.raises(JobLocked, match=r"job 'nightly' is already running \(pid \d+"),
            job_lock(journal, "nightly"),
        ):
            pass
        with job_lock(journal, "other-job"):  # other jobs are independent
            pass
    with job_lock(journal, "nightly"):  # released on exit
        pass


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from transfer.journal.lock import job_lock\n"
            f"with job_lock(Path({str(journal)!r}), 'nightly'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        with pytest.raises(JobLocked), job_lock(journal, "nightly"):
            pass
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait(timeout=10)
        with job_lock(journal, "nightly"):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()


def _summary(job: str, outcomes: list[str]) -> RunSummary:
    results = [
        ItemResult(
            code=Code.COPY,
            target_key="dst/KR2",
            source_id=f"id{i}",
            source_name=f"img{i}",
            outcome=Outcome(o),
            bytes=100,
        )
        for i, o in enumerate(outcomes)
    ]
    return RunSummary(
        job=job, run_id=1, results=results, plan=[], started=0.0, ended=2.5, interrupted=False
    )


def test_metrics_count_outcomes_and_keep_the_last_success_across_failed_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "image_transfer.prom"
    write_metrics(path, [_summary("nightly", ["copied", "copied", "in-sync"])])
    first = path.read_text()
    assert 'image_transfer_images{job="nightly",outcome="copied"} 2' in first
    assert 'image_transfer_bytes{job="nightly"} 300' in first
    assert 'image_transfer_last_run_success{job="nightly"} 1' in first
    success_line = next(
        line for line in first.splitlines() if line.startswith("image_transfer_last_success")
    )
    time.sleep(1.1)
    write_metrics(path, [_summary("nightly", ["copied", "failed"])])
    second = path.read_text()
    assert 'image_transfer_last_run_success{job="nightly"} 0' in second
    assert success_line in second  # the last success is still the first run's
    assert not list(tmp_path.glob(".*.tmp"))


def test_metric_labels_are_escaped() -> None:
    text = render_metrics([_summary('a"b\\c', ["copied"])], now=0)
    assert 'job="a\\"b\\\\c"' in text
