"""Samples: what a running worker writes every few seconds, so that a reader of the journal
alone (``image-transfer serve``, on any host that reaches it) can chart the throughput of a
run and show what each worker holds now, with its bytes.

One row per sample (table ``samples``): the run's counters as the worker's ``Progress`` has
them (bytes moved so far, images done and failed, the totals) and the transfers it holds at
that instant, each with its bytes done.  A worker writes a sample only when something changed
since its last one, so an idle worker costs nothing and a busy one one small commit every few
seconds, never one per byte.  The entries say the rest (states, failures, leases).

``Sample`` is what a worker writes, ``SampleRecord`` what a reader gets back (with the row's
id and the journal's timestamp); ``SampleReads`` is the read both backends share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transfer.journal.records import JournalReads

#: The columns of ``samples``, named as ``SampleRecord``'s fields.
SAMPLE_COLUMNS = (
    "id",
    "job",
    "run_id",
    "worker",
    "at",
    "bytes_done",
    "bytes_total",
    "images_done",
    "images_failed",
    "images_total",
    "active",
)
#: What a writer gives (the id and the timestamp are the journal's).
WRITTEN_COLUMNS = SAMPLE_COLUMNS[1:4] + SAMPLE_COLUMNS[5:]


@dataclass(frozen=True, kw_only=True)
class HeldTransfer:
    """One (image, target) pair a worker is moving bytes for, at the instant of a sample."""

    source_id: str
    target: str  # the target's key, cloud/REGION
    name: str
    done: int  # bytes sent for it so far in this attempt
    total: int  # the image's size (0 when unknown)
    seconds: float  # since this attempt started


@dataclass(frozen=True, kw_only=True)
class Sample:
    """A worker's counters at one instant of a run (``Progress``'s, cumulated over the run)."""

    job: str
    run_id: int
    worker: str
    bytes_done: int
    bytes_total: int
    images_done: int
    images_failed: int
    images_total: int
    active: tuple[HeldTransfer, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SampleRecord(Sample):
    """A sample as the journal gives it back."""

    id: int
    at: str  # the journal's timestamp text (its clock: PostgreSQL's, or the writer host's)


def sample_values(sample: Sample) -> tuple[Any, ...]:
    """The values of ``WRITTEN_COLUMNS`` (``active`` as a JSON-able object)."""
    held = [
        {
            "source_id": t.source_id,
            "target": t.target,
            "name": t.name,
            "done": t.done,
            "total": t.total,
            "seconds": round(t.seconds, 3),
        }
        for t in sample.active
    ]
    return (
        sample.job,
        sample.run_id,
        sample.worker,
        sample.bytes_done,
        sample.bytes_total,
        sample.images_done,
        sample.images_failed,
        sample.images_total,
        {"transfers": held},
    )


def _held(active: Mapping[str, Any]) -> tuple[HeldTransfer, ...]:
    transfers = active.get("transfers") or []
    return tuple(
        HeldTransfer(
            source_id=str(t["source_id"]),
            target=str(t["target"]),
            name=str(t["name"]),
            done=int(t["done"]),
            total=int(t["total"]),
            seconds=float(t["seconds"]),
        )
        for t in transfers
    )


class SampleReads(JournalReads):
    """The journal's reads (``JournalReads``) and its samples', the same on both backends.
    ``since`` is compared as a timestamp: ``time_param`` is how the backend's SQL reads one
    from a parameter."""

    time_param = "{}"

    async def samples(self, job: str, *, since: str | None = None) -> list[SampleRecord]:
        m = self._mark
        query = f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM samples WHERE job = {m}"
        args: Sequence[Any] = (job,)
        if since is not None:
            query += f" AND at >= {self.time_param.format(m)}"
            args = (job, since)
        rows = await self._rows(query + " ORDER BY at, id", args)
        return [self._sample(row) for row in rows]

    def _sample(self, row: Sequence[Any]) -> SampleRecord:
        fields = dict(zip(SAMPLE_COLUMNS, row, strict=True))
        return SampleRecord(
            id=int(fields["id"]),
            job=str(fields["job"]),
            run_id=int(fields["run_id"]),
            worker=str(fields["worker"]),
            at=self._stamp(fields["at"]),
            bytes_done=int(fields["bytes_done"]),
            bytes_total=int(fields["bytes_total"]),
            images_done=int(fields["images_done"]),
            images_failed=int(fields["images_failed"]),
            images_total=int(fields["images_total"]),
            active=_held(self._json(fields["active"])),
        )
