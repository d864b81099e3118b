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
    plannable = sorted(
        (s for s in sources if skip_reason(s) is None), key=lambda s: (s.name or "", s.id)
    )
    unplannable = {s.id for s in sources} - {s.id for s in plannable}
    items: list[PlanItem] = []
    for endpoint in job.targets:
        key = endpoint.key
        if key not in targets:
            raise ValueError(f"no listing for target {key} of job {job.name}")
        target = _TargetPlan(
            job,
            key,
            plannable=plannable,
            unplannable=unplannable,
            journal=journal,
            source_members=source_members,
            target_tenant=target_tenants.get(key),
        )
        items += target.sort_listing(targets[key])
        for source in plannable:
            items += target.plan_source(source)
    return sorted(items, key=_order)


class _TargetPlan:
    """The plan of one target of a job: whose each listed image is, and what each source needs.

    A listed image belongs to a source when its id is the deterministic one or the journal's,
    or when this job's markers name the source; images of sources that are gone, superseded
    or duplicated become ``-``; the rest of the listing is someone else's.
    """

    def __init__(
        self,
        job: JobConfig,
        key: str,
        *,
        plannable: Sequence[Image],
        unplannable: Collection[str],
        journal: Mapping[tuple[str, str], JournalEntry],
        source_members: Mapping[str, Collection[str]],
        target_tenant: str | None,
    ) -> None:
        self.job = job
        self.key = key
        self.region = job.source.region
        self.by_id = {s.id: s for s in plannable}
        self.unplannable = unplannable
        self.journal = journal
        self.source_members = source_members
        self.target_tenant = target_tenant
        self.expected: dict[str, str] = {}  # target id -> source id
        for source in plannable:
            entry = journal.get((source.id, key))
            self.expected[self._target_id(source, entry.generation if entry else 0)] = source.id
            if entry is not None and entry.target_id:
                self.expected[entry.target_id] = source.id
        self.orphans = {  # journal ids of sources no longer selected: still ours
            entry.target_id: source_id
            for (source_id, entry_key), entry in journal.items()
            if entry_key == key and source_id not in self.by_id and entry.target_id
        }
        self.found: dict[str, list[Image]] = defaultdict(list)  # source id -> its copies

    def _target_id(self, source: Image, generation: int) -> str:
        return target_image_id(
            self.job.name, self.region, source.id, source.checksum, self.key, generation
        )

    def sort_listing(self, listing: Sequence[Image]) -> list[PlanItem]:
        """File each listed image under its source; returns the ``-`` items found on the way."""
        extras: list[PlanItem] = []
        for target in listing:
            if target.status in GONE_STATUSES:
                continue
            marked = _marker(target, MARKER_JOB) == self.job.name
            marker_id = _marker(target, MARKER_SOURCE_ID)
            marker_region = _marker(target, MARKER_SOURCE_REGION)
            source_id = self.expected.get(target.id)
            if (
                source_id is None
                and marked
                and marker_region == self.region
                and marker_id in self.by_id
            ):
                source_id = marker_id
            if source_id is not None:
                source = self.by_id[source_id]
                marker_sum = _marker(target, MARKER_SOURCE_CHECKSUM)
                if marked and marker_sum is not None and marker_sum != source.checksum:
                    reason = f"superseded: copied from source checksum {marker_sum or 'missing'}"
                    extras.append(
                        PlanItem(Code.EXTRA, self.key, source, target, target.id, 0, (reason,))
                    )
                else:
                    self.found[source_id].append(target)
                continue
            if not marked and target.id not in self.orphans:
                continue  # not ours
            gone_source = marker_id or self.orphans.get(target.id)
            if gone_source in self.unplannable:
                continue  # its source exists but cannot be planned now: leave its copy alone
            if marked and marker_region != self.region:
                reason = (
                    f"copied from region {marker_region}, not the job's source region {self.region}"
                )
            else:
                reason = f"source {gone_source} is not selected or no longer exists"
            extras.append(PlanItem(Code.EXTRA, self.key, None, target, target.id, 0, (reason,)))
        return extras

    def plan_source(self, source: Image) -> list[PlanItem]:
        """What one source needs on this target (after ``sort_listing``)."""
        entry = self.journal.get((source.id, self.key))
        desired = desired_target(
            source,
            job=self.job.name,
            source_region=self.region,
            copy=self.job.copy,
            source_members=self.source_members.get(source.id, ()),
            target_owner=self.target_tenant,
        )
        generation = entry.generation if entry else 0
        candidates = self.found.get(source.id)
        if not candidates:
            reasons: tuple[str, ...] = ()
            if entry is not None and entry.target_id:
                # Glance keeps a deleted image's id reserved: a vanished target needs a new id.
                generation += 1
                reasons = (f"target {entry.target_id} is gone",)
            target_id = self._target_id(source, generation)
            return [
                PlanItem(Code.COPY, self.key, source, None, target_id, generation, reasons, desired)
            ]
        journal_id = entry.target_id if entry else None

        def rank(target: Image) -> tuple[int, int, str, str]:
            if target.status == "active":
                health = 1 if _byte_differences(target, source) else 0
            else:
                health = 2 if target.status in ("queued", "saving") else 3
            return (health, 0 if target.id == journal_id else 1, target.created_at or "", target.id)

        best, *duplicates = sorted(candidates, key=rank)
        items = [
            PlanItem(Code.EXTRA, self.key, source, d, d.id, 0, (f"duplicate of target {best.id}",))
            for d in duplicates
        ]
        code, why = _judge(best, source, desired, self.job)
        items.append(
            PlanItem(code, self.key, source, best, best.id, generation, tuple(why), desired)
        )
        return items


def _order(item: PlanItem) -> tuple[str, str, str, int, str]:
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
