"""The planner (pure): source images x target listings x journal -> one action per pair.

Codes follow rclone's: ``+`` copy (no target yet), ``=`` in sync, ``*`` metadata differs,
``!`` repair (the target is half-made or its bytes differ), ``-`` a target of this job that no
selected source wants (its source is gone or deselected, it was superseded, or it duplicates
the one kept).  The planner never decides to delete anything: ``-`` items are reported and
the engine applies its own policy.

A target belongs to a source when its id is the one the journal recorded or the
deterministic one (see ``metadata.target_image_id``), or when its marker properties name
this job, the job's source region and the source's id.  Targets without this job's markers
and without a journal id are someone else's and never appear in a plan.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from transfer.config.settings import JobConfig
from transfer.journal.records import JournalEntry
from transfer.metadata import (
    MARKER_JOB,
    MARKER_SOURCE_CHECKSUM,
    MARKER_SOURCE_ID,
    MARKER_SOURCE_REGION,
    DesiredTarget,
    desired_target,
    metadata_differences,
    property_string,
    target_image_id,
)
from transfer.models import GONE_STATUSES, Image


class Code(StrEnum):
    COPY = "+"
    IN_SYNC = "="
    UPDATE = "*"
    REPAIR = "!"
    EXTRA = "-"


#: The codes that need work in a run (``=`` is done already, ``-`` is the prune's business).
WORK_CODES = (Code.COPY, Code.REPAIR, Code.UPDATE)


@dataclass(frozen=True)
class PlanItem:
    code: Code
    target_key: str
    source: Image | None
    target: Image | None
    target_id: str | None  # the id to adopt or create
    generation: int
    reasons: tuple[str, ...] = ()
    # What the target should become (None for EXTRA items): the engine creates and patches
    # from it rather than deriving it a second time.
    desired: DesiredTarget | None = field(default=None, compare=False, repr=False)


_NO_MEMBERS: Mapping[str, Collection[str]] = MappingProxyType({})
_NO_TENANTS: Mapping[str, str | None] = MappingProxyType({})


def skip_reason(source: Image) -> str | None:
    """Why a source image cannot be copied now (None when it can)."""
    if source.status != "active":
        return f"source status is {source.status}, not active"
    if source.checksum is None:
        return "source has no data yet (no checksum)"
    return None


def skipped_sources(sources: Iterable[Image]) -> list[tuple[Image, str]]:
    """The sources ``plan_job`` leaves out, each with the reason."""
    result = []
    for source in sources:
        reason = skip_reason(source)
        if reason is not None:
            result.append((source, reason))
    return result


def _marker(image: Image, key: str) -> str | None:
    return property_string(image.properties.get(key))


def _byte_differences(target: Image, source: Image) -> list[str]:
    reasons = []
    if target.size != source.size:
        reasons.append(f"size {target.size} != source {source.size}")
    if target.checksum != source.checksum:
        reasons.append(f"checksum {target.checksum or 'missing'} != source {source.checksum}")
    if (
        target.os_hash_algo is not None
        and target.os_hash_algo == source.os_hash_algo
        and target.os_hash_value != source.os_hash_value
    ):
        reasons.append(f"{target.os_hash_algo} differs from the source's")
    # Glance fixes both formats once data is uploaded: only a new target can change them.
    for name, have, want in (
        ("disk_format", target.disk_format, source.disk_format),
        ("container_format", target.container_format, source.container_format),
    ):
        if want is not None and have != want:
            reasons.append(f"{name} {have} -> {want}")
    return reasons


def _judge(
    target: Image, source: Image, desired: DesiredTarget, job: JobConfig
) -> tuple[Code, list[str]]:
    if target.status != "active":
        return Code.REPAIR, [f"target status {target.status}"]
    differences = _byte_differences(target, source)
    if differences:
        return Code.REPAIR, differences
    differences = metadata_differences(target, desired, job.copy)
    if differences:
        return Code.UPDATE, differences
    return Code.IN_SYNC, []


def plan_job(
    job: JobConfig,
    *,
    sources: Sequence[Image],
    targets: Mapping[str, Sequence[Image]],
    journal: Mapping[tuple[str, str], JournalEntry],
    source_members: Mapping[str, Collection[str]] = _NO_MEMBERS,
    target_tenants: Mapping[str, str | None] = _NO_TENANTS,
) -> list[PlanItem]:
    """Plan one job.

    ``sources``: the selected source images; ``targets``: every image listed in each target
    (by ``Endpoint.key``; each of the job's targets must be present); ``journal``: the job's
    entries by (source id, target key); ``source_members``: source image id -> member tenants;
    ``target_tenants``: target key -> the tenant that owns the copies (never made a member).
    Sources that cannot be copied yet are left out (see ``skipped_sources``).
    """
    planner = JobPlanner(job, targets=targets, journal=journal, target_tenants=target_tenants)
    items = planner.plan_sources(sources, source_members)
    return sorted(items + planner.finish(), key=plan_order)


class JobPlanner:
    """``plan_job`` a source at a time: the targets' listings and the journal come first, then
    each source is planned as soon as it is listed (``plan_sources``), and ``finish`` gives the
    ``-`` items once every source was seen.

    A source's items depend only on the source, the listings and the journal, never on the
    other sources: planned one page after another they are the items ``plan_job`` gives.
    """

    def __init__(
        self,
        job: JobConfig,
        *,
        targets: Mapping[str, Sequence[Image]],
        journal: Mapping[tuple[str, str], JournalEntry],
        target_tenants: Mapping[str, str | None] = _NO_TENANTS,
    ) -> None:
        missing = [e.key for e in job.targets if e.key not in targets]
        if missing:
            raise ValueError(f"no listing for target {missing[0]} of job {job.name}")
        self.targets = [
            _TargetPlan(
                job, e.key, targets[e.key], journal=journal, target_tenant=target_tenants.get(e.key)
            )
            for e in job.targets
        ]
        self.planned: set[str] = set()  # source ids planned
        self.unplannable: set[str] = set()  # source ids listed that cannot be planned now

    def plan_sources(
        self, sources: Iterable[Image], source_members: Mapping[str, Collection[str]] = _NO_MEMBERS
    ) -> list[PlanItem]:
        """The items of these sources on every target (a source seen before is skipped)."""
        items: list[PlanItem] = []
        for source in sources:
            if source.id in self.planned or source.id in self.unplannable:
                continue
            if skip_reason(source) is not None:
                self.unplannable.add(source.id)
                continue
            self.planned.add(source.id)
            members = source_members.get(source.id, ())
            for target in self.targets:
                items += target.plan_source(source, members)
        return items

    def finish(self) -> list[PlanItem]:
        """The ``-`` items: the listed images of this job that no planned source claimed."""
        return [i for t in self.targets for i in t.extras(self.planned, self.unplannable)]


class _TargetPlan:
    """The plan of one target of a job: which listed images are a source's, and what it needs.

    A listed image belongs to a source when its id is the deterministic one or the journal's,
    or when this job's markers name the source; images of sources that are gone, superseded
    or duplicated become ``-``; the rest of the listing is someone else's.
    """

    def __init__(
        self,
        job: JobConfig,
        key: str,
        listing: Sequence[Image],
        *,
        journal: Mapping[tuple[str, str], JournalEntry],
        target_tenant: str | None,
    ) -> None:
        self.job = job
        self.key = key
        self.region = job.source.region
        self.journal = journal
        self.target_tenant = target_tenant
        self.live = [t for t in listing if t.status not in GONE_STATUSES]
        self.by_id = {t.id: t for t in self.live}
        #: This job's copies from the job's source region, by the source id their marker names.
        self.by_marker: dict[str, list[Image]] = defaultdict(list)
        for target in self.live:
            marker_id = _marker(target, MARKER_SOURCE_ID)
            if self._marked(target) and marker_id and self._marker_region(target) == self.region:
                self.by_marker[marker_id].append(target)
        #: target id -> the source the journal recorded it for (its id wins over a marker).
        self.journal_ids = {
            entry.target_id: source_id
            for (source_id, entry_key), entry in journal.items()
            if entry_key == key and entry.target_id
        }
        self.claimed: set[str] = set()  # ids of listed images filed under a planned source

    def _marked(self, target: Image) -> bool:
        return _marker(target, MARKER_JOB) == self.job.name

    def _marker_region(self, target: Image) -> str | None:
        return _marker(target, MARKER_SOURCE_REGION)

    def _target_id(self, source: Image, generation: int) -> str:
        return target_image_id(
            self.job.name, self.region, source.id, source.checksum, self.key, generation
        )

    def _copies(self, source: Image, entry: JournalEntry | None) -> list[Image]:
        """The listed images of ``source``: by its ids (deterministic, journal's), then by
        marker (unless the journal recorded that image for another source)."""
        ids = [self._target_id(source, entry.generation if entry else 0)]
        journal_id = entry.target_id if entry else None
        if journal_id and journal_id not in ids and self.journal_ids[journal_id] == source.id:
            ids.append(journal_id)
        copies = [self.by_id[i] for i in ids if i in self.by_id]
        copies += [
            t
            for t in self.by_marker.get(source.id, ())
            if t.id not in ids and self.journal_ids.get(t.id, source.id) == source.id
        ]
        self.claimed.update(t.id for t in copies)
        return copies

    def plan_source(self, source: Image, members: Collection[str] = ()) -> list[PlanItem]:
        """What one source needs on this target."""
        entry = self.journal.get((source.id, self.key))
        desired = desired_target(
            source,
            job=self.job.name,
            source_region=self.region,
            copy=self.job.copy,
            source_members=members,
            target_owner=self.target_tenant,
        )
        generation = entry.generation if entry else 0
        items: list[PlanItem] = []
        candidates: list[Image] = []
        for target in self._copies(source, entry):
            marker_sum = _marker(target, MARKER_SOURCE_CHECKSUM)
            if self._marked(target) and marker_sum is not None and marker_sum != source.checksum:
                reason = f"superseded: copied from source checksum {marker_sum or 'missing'}"
                items.append(
                    PlanItem(Code.EXTRA, self.key, source, target, target.id, 0, (reason,))
                )
            else:
                candidates.append(target)
        if not candidates:
            reasons: tuple[str, ...] = ()
            if entry is not None and entry.target_id:
                # Glance keeps a deleted image's id reserved: a vanished target needs a new id.
                generation += 1
                reasons = (f"target {entry.target_id} is gone",)
            target_id = self._target_id(source, generation)
            items.append(
                PlanItem(Code.COPY, self.key, source, None, target_id, generation, reasons, desired)
            )
            return items
        journal_id = entry.target_id if entry else None

        def rank(target: Image) -> tuple[int, int, str, str]:
            if target.status == "active":
                health = 1 if _byte_differences(target, source) else 0
            else:
                health = 2 if target.status in ("queued", "saving") else 3
            return (health, 0 if target.id == journal_id else 1, target.created_at or "", target.id)

        best, *duplicates = sorted(candidates, key=rank)
        items += [
            PlanItem(Code.EXTRA, self.key, source, d, d.id, 0, (f"duplicate of target {best.id}",))
            for d in duplicates
        ]
        code, why = _judge(best, source, desired, self.job)
        items.append(
            PlanItem(code, self.key, source, best, best.id, generation, tuple(why), desired)
        )
        return items

    def extras(self, planned: Collection[str], unplannable: Collection[str]) -> list[PlanItem]:
        """The ``-`` items: this job's listed images that no planned source claimed, except
        those of a source that exists but cannot be planned now (its copy is left alone)."""
        extras: list[PlanItem] = []
        for target in self.live:
            if target.id in self.claimed:
                continue
            marked = self._marked(target)
            journal_source = self.journal_ids.get(target.id)
            if not marked and journal_source is None:
                continue  # not ours
            gone_source = journal_source or _marker(target, MARKER_SOURCE_ID)
            if gone_source in unplannable:
                continue
            marker_region = self._marker_region(target)
            if marked and marker_region != self.region:
                reason = (
                    f"copied from region {marker_region}, not the job's source region {self.region}"
                )
            else:
                reason = f"source {gone_source} is not selected or no longer exists"
            extras.append(PlanItem(Code.EXTRA, self.key, None, target, target.id, 0, (reason,)))
        return extras


def plan_order(item: PlanItem) -> tuple[str, str, str, int, str]:
    if item.source is not None:
        name, ident = item.source.name or "", item.source.id
    else:
        assert item.target is not None
        name = item.target.name or ""
        ident = _marker(item.target, MARKER_SOURCE_ID) or item.target.id
    extra = 1 if item.code is Code.EXTRA else 0
    return (name, ident, item.target_key, extra, item.target_id or "")


def format_plan(items: Iterable[PlanItem]) -> str:
    """One line per item: ``CODE target_key source_name (source id) reasons``."""
    lines = []
    for item in items:
        if item.source is not None:
            what = f"{item.source.name or '-'} ({item.source.id})"
        else:
            assert item.target is not None
            what = f"{item.target.name or '-'} (target {item.target.id})"
        reasons = "; ".join(item.reasons)
        lines.append(f"{item.code.value} {item.target_key} {what} {reasons}".rstrip())
    return "\n".join(lines)


def plan_counts(items: Sequence[PlanItem]) -> Mapping[Code, int]:
    """How many items of a plan have each code."""
    counts = dict.fromkeys(Code, 0)
    for item in items:
        counts[item.code] += 1
    return counts
