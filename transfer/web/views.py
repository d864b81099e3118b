"""What the live page shows of a job, read from the journal alone: ``JobReader.job`` gives the
JSON document of one job (``docs`` in the README draft), ``JobReader.chart`` its SVG.

- counts of entries by state, the bytes done and total, the current rate and the ETA, the runs;
- the workers: the latest run of each recent worker (and any worker holding a lease), with
  what it holds now: the transfers of its latest sample (bytes and rate of each) and, on a
  shared journal, the entries it holds a lease on;
- the failures: image, target, step, reason, attempts;
- throughput over time (``transfer.web.throughput``), drawn by ``transfer.web.chart``.

Samples are read incrementally: each refresh asks only for those of the last minute (and
keeps every sample by id), so a day-long run costs the same to watch as a short one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from transfer.journal import Journal
from transfer.journal.records import EntryState, JournalEntry, RunRecord, stamp
from transfer.journal.samples import HeldTransfer, SampleRecord
from transfer.web import chart
from transfer.web.throughput import STALE, Point, current_rate, runs_points, seconds, series

#: A worker is listed while its run goes on, and this long after it ended (seconds).
RECENT = 3600.0
#: Runs read for the workers and the runs table.
RUNS = 30
#: Failures listed (of a job that has more, the count says how many).
FAILURES = 200
#: Samples are re-read this far back (seconds), in case a slow writer committed late.
OVERLAP = 60.0


@dataclass
class _SampleCache:
    by_id: dict[int, SampleRecord] = field(default_factory=dict)
    latest: str | None = None


class JobReader:
    """Reads jobs from one journal, keeping each job's samples between refreshes."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._samples: dict[str, _SampleCache] = {}

    async def samples(self, job: str) -> list[SampleRecord]:
        cache = self._samples.setdefault(job, _SampleCache())
        since = None
        if cache.latest is not None:
            since = stamp(datetime.fromtimestamp(seconds(cache.latest) - OVERLAP, UTC))
        for sample in await self.journal.samples(job, since=since):
            cache.by_id[sample.id] = sample
            if cache.latest is None or sample.at > cache.latest:
                cache.latest = sample.at
        return sorted(cache.by_id.values(), key=lambda s: (s.at, s.id))

    async def job(self, job: str, now: str) -> dict[str, Any]:
        journal = self.journal
        entries = list((await journal.entries(job)).values())
        runs = await journal.runs(job, limit=RUNS)
        samples = await self.samples(job)
        moment = seconds(now)
        points = runs_points(samples, {r.id: r.started_at for r in runs})
        latest = _latest_by_run(samples)
        workers = _workers(runs, entries, latest, points, moment)
        live = [w for w in workers if w["state"] == "running"]
        held = {(t["source_id"], t["target"]): t["done"] for w in live for t in w["holds"]}
        done, total, failed = _bytes(entries, held)
        rate = sum(w["rate"] for w in live)
        left = total - done - failed
        states = dict.fromkeys((s.value for s in EntryState), 0)
        for entry in entries:
            states[entry.state] = states.get(entry.state, 0) + 1
        failures = [e for e in entries if e.state == EntryState.FAILED]
        return {
            "job": job,
            "states": states,
            "entries": len(entries),
            "bytes_done": done,
            "bytes_total": total,
            "rate": round(rate, 1),
            "eta_seconds": round(left / rate, 1) if rate > 0 and left > 0 else None,
            "last_run": _run(runs[0]) if runs else None,
            "runs": [_run(r) for r in runs[:10]],
            "workers": workers,
            "failures": [_failure(e) for e in sorted(failures, key=_by_image)[:FAILURES]],
            "failures_total": len(failures),
            "samples": len(samples),
        }

    async def chart(self, job: str, now: str) -> str:
        runs = await self.journal.runs(job, limit=RUNS)
        samples = await self.samples(job)
        points = runs_points(samples, {r.id: r.started_at for r in runs})
        return chart.render(series(points, seconds(now)), title=job, samples=len(samples))

    async def throughput(self, job: str, now: str) -> dict[str, Any]:
        runs = await self.journal.runs(job, limit=RUNS)
        samples = await self.samples(job)
        drawn = series(runs_points(samples, {r.id: r.started_at for r in runs}), seconds(now))
        return {"job": job, "samples": len(samples), "series": drawn and drawn.to_json()}


def _by_image(entry: JournalEntry) -> tuple[str, str]:
    return (entry.source_name or entry.source_id, entry.target_key)


def _latest_by_run(samples: Sequence[SampleRecord]) -> dict[int, list[SampleRecord]]:
    """Each run's last two samples (the latest last)."""
    latest: dict[int, list[SampleRecord]] = {}
    for sample in samples:
        mine = latest.setdefault(sample.run_id, [])
        mine.append(sample)
        del mine[:-2]
    return latest


def _bytes(entries: Sequence[JournalEntry], held: Mapping[tuple[str, str], int]) -> tuple[int, ...]:
    """Bytes done (done entries whole, held transfers as far as they got), the total (every
    entry's image), and the bytes of failed entries."""
    done = total = failed = 0
    for e in entries:
        size = e.source_size or 0
        total += size
        if e.state == EntryState.DONE:
            done += size
        elif e.state == EntryState.FAILED:
            failed += size
        else:
            done += min(size, held.get((e.source_id, e.target_key), 0))
    return done, total, failed


def _run(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "worker": run.worker,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "outcome": run.outcome,
    }


def _failure(entry: JournalEntry) -> dict[str, Any]:
    return {
        "source_id": entry.source_id,
        "image": entry.source_name or entry.source_id,
        "target": entry.target_key,
        "target_id": entry.target_id,
        "step": entry.failed_step,
        "reason": entry.last_error,
        "attempts": entry.attempts,
        "retryable": entry.retryable,
        "updated_at": entry.updated_at,
    }


def _workers(
    runs: Sequence[RunRecord],
    entries: Sequence[JournalEntry],
    latest: Mapping[int, list[SampleRecord]],
    points: Mapping[int, tuple[str, Sequence[Point]]],
    now: float,
) -> list[dict[str, Any]]:
    """The latest run of each worker still running or recently finished, or holding leases."""
    leased: dict[str, list[JournalEntry]] = {}
    for e in entries:
        if e.lease_owner is not None:
            leased.setdefault(e.lease_owner, []).append(e)
    newest: dict[str, RunRecord] = {}
    for run in runs:  # newest first
        newest.setdefault(run.worker, run)
    shown = []
    for worker, run in sorted(newest.items()):
        ended = run.finished_at is not None and now - seconds(run.finished_at) > RECENT
        if ended and worker not in leased:
            continue
        mine = latest.get(run.id, [])
        pts = points.get(run.id, ("", []))[1]
        shown.append(_worker(run, mine, leased.get(worker, []), pts, now))
    return shown


def _worker(
    run: RunRecord,
    samples: Sequence[SampleRecord],
    leases: Sequence[JournalEntry],
    points: Sequence[Point],
    now: float,
) -> dict[str, Any]:
    running = run.finished_at is None
    last = samples[-1] if samples else None
    before = samples[-2] if len(samples) > 1 else None
    holds = [_hold(t, last, before) for t in last.active] if last and running else []
    by_key = {(h["source_id"], h["target"]): h for h in holds}
    for e in leases:
        hold = by_key.get((e.source_id, e.target_key))
        if hold is None:
            hold = _leased(e)
            holds.append(hold)
        hold["lease_expires"] = e.lease_expires
    if last is not None and now - seconds(last.at) > STALE:
        for hold in holds:  # no sample since: no byte moved since
            hold["rate"] = 0.0
    seen = [run.started_at, *(s.at for s in samples)]
    return {
        "worker": run.worker,
        "run_id": run.id,
        "state": "running" if running else "finished",
        "outcome": run.outcome,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "last_seen_at": max(seen),
        "bytes_done": last.bytes_done if last else 0,
        "images_done": last.images_done if last else 0,
        "images_failed": last.images_failed if last else 0,
        "rate": round(current_rate(points, now), 1) if running else 0.0,
        "leases": len(leases),
        "lease_expires": min((e.lease_expires for e in leases if e.lease_expires), default=None),
        "holds": holds,
    }


def _hold(held: HeldTransfer, last: SampleRecord, before: SampleRecord | None) -> dict[str, Any]:
    """A transfer of the worker's latest sample; its rate since the sample before (or since
    it started, when that one did not hold it yet)."""
    rate = held.done / held.seconds if held.seconds > 0 else 0.0
    if before is not None:
        earlier = {(t.source_id, t.target): t for t in before.active}.get(
            (held.source_id, held.target)
        )
        elapsed = seconds(last.at) - seconds(before.at)
        if earlier is not None and elapsed > 0 and held.done >= earlier.done:
            rate = (held.done - earlier.done) / elapsed
    return {
        "source_id": held.source_id,
        "name": held.name,
        "target": held.target,
        "done": held.done,
        "total": held.total,
        "rate": round(rate, 1),
        "state": _moving(held),
        "lease_expires": None,
    }


def _moving(held: HeldTransfer) -> str:
    """Where a held transfer stands: its target being made, its bytes going, or sent (the
    checks and the metadata follow)."""
    if held.done == 0:
        return "starting"
    if held.total and held.done >= held.total:
        return "finishing"
    return "transferring"


def _leased(entry: JournalEntry) -> dict[str, Any]:
    """An entry a worker holds a lease on, and moves no bytes for at the moment."""
    return {
        "source_id": entry.source_id,
        "name": entry.source_name or entry.source_id,
        "target": entry.target_key,
        "done": entry.bytes_done,
        "total": entry.source_size or 0,
        "rate": 0.0,
        "state": f"after {entry.last_step}" if entry.last_step else entry.state,
        "lease_expires": entry.lease_expires,
    }
