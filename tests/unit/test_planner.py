"""The planner on plain data: which action each source x target pair gets, and why."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.factories import image, job
from transfer.config.settings import CopyConfig, JobConfig
from transfer.journal.records import JournalEntry
from transfer.metadata import (
    MARKER_SOURCE_CHECKSUM,
    build_patch,
    desired_target,
    property_string,
    removable,
    target_image_id,
)
from transfer.models import Image
from transfer.planner import (
    Code,
    JobPlanner,
    PlanItem,
    format_plan,
    plan_job,
    skipped_sources,
)

JOB = job()
KEY = "dst/KR2"


def copy_of(
    src: Image,
    target_id: str | None = None,
    *,
    job_config: JobConfig = JOB,
    status: str = "active",
    data: bytes | None = None,
    **changes: Any,
) -> Image:
    """A target exactly as a finished copy of ``src`` would be listed (then ``changes``)."""
    desired = desired_target(src, job=job_config.name, source_region="KR1", copy=job_config.copy)
    raw = dict(desired.create_fields)
    raw["visibility"] = desired.visibility
    raw["tags"] = sorted(desired.tags)
    raw.update(changes)
    name = raw.pop("name")
    if data is None:
        data = DATA.get(src.id, b"")
    if target_id is None:
        target_id = target_image_id(job_config.name, "KR1", src.id, src.checksum, KEY)
    return image(target_id, name=name, status=status, data=data, **raw)


DATA: dict[str, bytes] = {}  # source id -> its bytes, for building faithful copies


def source(image_id: str, name: str, data: bytes = b"", **extra: Any) -> Image:
    DATA[image_id] = data
    return image(image_id, name=name, data=data, **extra)


def entry(src: Image, target_id: str | None, generation: int = 0, **fields: Any) -> JournalEntry:
    values: dict[str, Any] = {
        "job": JOB.name,
        "source_id": src.id,
        "target_key": KEY,
        "source_name": src.name,
        "source_checksum": src.checksum,
        "source_size": src.size,
        "target_id": target_id,
        "generation": generation,
        "state": "done",
        "last_step": "accept",
        "bytes_done": src.size or 0,
        "md5": None,
        "sha512": None,
        "attempts": 1,
        "last_error": None,
        "updated_at": "2024-01-01T00:00:00.000Z",
    }
    values.update(fields)
    return JournalEntry(**values)


def plan(
    sources: Sequence[Image],
    listing: Sequence[Image] = (),
    journal: dict[tuple[str, str], JournalEntry] | None = None,
    job_config: JobConfig = JOB,
) -> list[PlanItem]:
    return plan_job(job_config, sources=sources, targets={KEY: listing}, journal=journal or {})


def codes(items: Sequence[PlanItem]) -> list[tuple[str, str | None, str | None]]:
    return [
        (item.code.value, item.source.id if item.source else None, item.target_id) for item in items
    ]


A = source("a", "alpha", b"aaaa")
B = source("b", "beta", b"bbbb")


def test_missing_targets_are_copied_with_the_deterministic_id() -> None:
    items = plan([B, A])
    assert codes(items) == [
        ("+", "a", target_image_id("job1", "KR1", "a", A.checksum, KEY)),
        ("+", "b", target_image_id("job1", "KR1", "b", B.checksum, KEY)),
    ]
    assert items[0].generation == 0 and items[0].target is None
    assert items[0].desired is not None and items[0].desired.name == "alpha"


def test_a_finished_copy_is_in_sync() -> None:
    target = copy_of(A)
    [item] = plan([A], [target])
    assert (item.code, item.target, item.reasons) == (Code.IN_SYNC, target, ())


def test_half_made_and_wrong_bytes_need_repair() -> None:
    for status in ("queued", "saving", "killed"):
        [item] = plan([A], [copy_of(A, status=status, data=None if status != "queued" else b"")])
        assert item.code is Code.REPAIR
        assert item.reasons == (f"target status {status}",)
    [item] = plan([A], [copy_of(A, data=b"aaab")])
    assert item.code is Code.REPAIR
    assert item.reasons[0].startswith("checksum ")
    [item] = plan([A], [copy_of(A, data=b"aaaaa")])
    assert item.reasons[0] == "size 5 != source 4"
    [item] = plan([A], [copy_of(A, disk_format="raw")])
    assert item.reasons == ("disk_format raw -> qcow2",)


def test_metadata_differences_make_an_update() -> None:
    [item] = plan([A], [copy_of(A, name="old name", tags=[])])
    assert item.code is Code.UPDATE
    assert item.reasons == ("name 'old name' -> 'alpha'",)


def test_a_target_found_by_its_markers_is_adopted_whatever_its_id() -> None:
    target = copy_of(A, "random-id-from-server")
    [item] = plan([A], [target])
    assert (item.code, item.target_id) == (Code.IN_SYNC, "random-id-from-server")


def test_a_target_found_by_the_journal_id_is_adopted() -> None:
    target = copy_of(A, "journal-id", image_transfer_job="renamed-job")
    items = plan([A], [target], {("a", KEY): entry(A, "journal-id", generation=2)})
    assert codes(items) == [("*", "a", "journal-id")]
    assert items[0].generation == 2
    assert items[0].reasons == ("property image_transfer_job: 'renamed-job' -> 'job1'",)


def test_a_vanished_target_is_recreated_under_the_next_generation() -> None:
    gone = target_image_id("job1", "KR1", "a", A.checksum, KEY, 0)
    [item] = plan([A], [], {("a", KEY): entry(A, gone)})
    assert item.code is Code.COPY and item.generation == 1
    assert item.target_id == target_image_id("job1", "KR1", "a", A.checksum, KEY, 1)
    assert item.reasons == (f"target {gone} is gone",)


def test_foreign_images_are_never_planned() -> None:
    foreign = image("x", name="alpha", data=b"aaaa", os_type="linux")
    other_job = copy_of(A, "other", job_config=job("job2"))
    assert codes(plan([A], [foreign, other_job])) == [
        ("+", "a", target_image_id("job1", "KR1", "a", A.checksum, KEY))
    ]


def test_extras_superseded_and_duplicates() -> None:
    deselected = copy_of(B, "old-b")
    stale_marker: dict[str, Any] = {MARKER_SOURCE_CHECKSUM: "0" * 32}
    superseded = copy_of(A, "old-a", **stale_marker)
    best = copy_of(A, "a-best", created_at="2024-02-01T00:00:00Z")
    duplicate = copy_of(A, "a-dup", created_at="2024-01-01T00:00:00Z", status="queued", data=b"")
    deleted = copy_of(A, "a-deleted", status="deleted")
    items = plan([A], [deselected, superseded, duplicate, best, deleted])
    assert codes(items) == [
        ("=", "a", "a-best"),
        ("-", "a", "a-dup"),
        ("-", "a", "old-a"),
        ("-", None, "old-b"),
    ]
    assert items[1].reasons == ("duplicate of target a-best",)
    assert items[2].reasons == ("superseded: copied from source checksum " + "0" * 32,)
    assert items[3].reasons == ("source b is not selected or no longer exists",)


def test_journal_ids_of_deselected_sources_are_extras_even_without_markers() -> None:
    unmarked = image("jid", name="beta", data=b"bbbb")
    items = plan([A], [unmarked], {("b", KEY): entry(B, "jid")})
    assert ("-", None, "jid") in codes(items)


def test_sources_without_data_are_skipped_not_planned() -> None:
    empty = image("e", name="empty", data=None)
    queued = image("q", name="queued", status="queued", data=None)
    items = plan([A, empty, queued], [copy_of(A)])
    assert codes(items) == [("=", "a", copy_of(A).id)]
    assert [(s.id, why) for s, why in skipped_sources([A, empty, queued])] == [
        ("e", "source has no data yet (no checksum)"),
        ("q", "source status is queued, not active"),
    ]


def test_every_target_of_the_job_is_planned_and_must_be_listed() -> None:
    two = job(targets=("dst/KR2", "dst/JP1"))
    items = plan_job(two, sources=[A], targets={KEY: [], "dst/JP1": []}, journal={})
    assert [(i.code.value, i.target_key) for i in items] == [("+", "dst/JP1"), ("+", "dst/KR2")]
    with pytest.raises(ValueError, match="no listing for target dst/JP1"):
        plan_job(two, sources=[A], targets={KEY: []}, journal={})


def test_members_come_from_source_members() -> None:
    copy = CopyConfig(member_map={"m1": "t1"})
    shared_job = job(copy=copy)
    target = copy_of(A, job_config=shared_job)
    items = plan_job(
        shared_job,
        sources=[A],
        targets={KEY: [target]},
        journal={},
        source_members={"a": ["m1"]},
    )
    assert items[0].desired is not None and items[0].desired.members == {"t1"}
    assert items[0].reasons == ("visibility private -> shared",)
    # The tenant that owns the copies is never its own member: nothing left to share.
    own = plan_job(
        shared_job,
        sources=[A],
        targets={KEY: [target]},
        journal={},
        source_members={"a": ["m1"]},
        target_tenants={KEY: "t1"},
    )
    assert own[0].code is Code.IN_SYNC
    assert own[0].desired is not None and own[0].desired.members == frozenset()


def test_format_plan_lines() -> None:
    deselected = copy_of(B, "old-b")
    text = format_plan(plan([A], [deselected, copy_of(A, name="x")]))
    assert text.splitlines() == [
        f"* {KEY} alpha (a) name 'x' -> 'alpha'",
        f"- {KEY} beta (target old-b) source b is not selected or no longer exists",
    ]


# ---------------------------------------------------------------------------------------------
# Properties


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[Image], list[Image], dict[tuple[str, str], JournalEntry]]:
    count = draw(st.integers(min_value=0, max_value=6))
    sources = [
        source(f"s{i}", draw(st.sampled_from(["a", "b", "c"])), draw(st.binary(max_size=3)))
        for i in range(count)
    ]
    listing: list[Image] = []
    journal: dict[tuple[str, str], JournalEntry] = {}
    for index, src in enumerate(sources):
        for copy_index in range(draw(st.integers(min_value=0, max_value=3))):
            kind = draw(st.sampled_from(["good", "queued", "corrupt", "renamed", "stale"]))
            target_id = f"t{index}-{copy_index}"
            if kind == "good":
                listing.append(copy_of(src, target_id))
            elif kind == "queued":
                listing.append(copy_of(src, target_id, status="queued", data=b""))
            elif kind == "corrupt":
                listing.append(copy_of(src, target_id, data=b"zzzz"))
            elif kind == "renamed":
                listing.append(copy_of(src, target_id, name="renamed"))
            else:
                stale: dict[str, Any] = {MARKER_SOURCE_CHECKSUM: "f" * 32}
                listing.append(copy_of(src, target_id, **stale))
        if draw(st.booleans()):
            journal[(src.id, KEY)] = entry(src, draw(st.sampled_from([None, "t0-0", "gone"])))
    # Sources that vanished leave copies behind.
    for index in range(draw(st.integers(min_value=0, max_value=2))):
        listing.append(copy_of(source(f"gone{index}", "z", b"g"), f"orphan{index}"))
    return sources, listing, journal


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_every_source_gets_exactly_one_action_and_planning_is_deterministic(
    scenario: tuple[list[Image], list[Image], dict[tuple[str, str], JournalEntry]],
    rng: random.Random,
) -> None:
    sources, listing, journal = scenario
    items = plan(sources, listing, journal)
    actions = [i for i in items if i.code is not Code.EXTRA]
    assert sorted(i.source.id for i in actions if i.source) == sorted(s.id for s in sources)
    assert all(i.target_id for i in items)
    # No target is claimed twice, and a kept target is never also reported as extra.
    claimed = [i.target.id for i in items if i.target is not None]
    assert len(claimed) == len(set(claimed))
    # The order of the inputs does not matter.
    shuffled_sources, shuffled_listing = list(sources), list(listing)
    rng.shuffle(shuffled_sources)
    rng.shuffle(shuffled_listing)
    again = plan(shuffled_sources, shuffled_listing, journal)
    assert codes(again) == codes(items)
    assert [i.reasons for i in again] == [i.reasons for i in items]


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_planning_page_by_page_gives_the_plan_of_all_sources_at_once(
    scenario: tuple[list[Image], list[Image], dict[tuple[str, str], JournalEntry]],
    rng: random.Random,
) -> None:
    """What ``run`` does while the source is still being listed: the items of each page as it
    comes (a source repeated on a later page, as a shifting listing does, planned once)."""
    sources, listing, journal = scenario
    whole = plan(sources, listing, journal)
    planner = JobPlanner(JOB, targets={KEY: listing}, journal=journal)
    pages, rest = [], list(sources)
    rng.shuffle(rest)
    while rest:
        cut = rng.randint(1, len(rest))
        pages.append(rest[:cut])
        rest = rest[cut:]
    if pages:
        pages.append([rng.choice(sources)])  # seen again
    items = [i for page in pages for i in planner.plan_sources(page)]
    assert all(i.source is not None for i in items)
    items += planner.finish()
    assert sorted(map(repr, items)) == sorted(map(repr, whole))


def apply_patch(target: Image, patch: list[Any]) -> Image:
    raw = dict(target.raw)
    for op in patch:
        key = op["path"][1:].replace("~1", "/").replace("~0", "~")
        if op["op"] == "remove":
            del raw[key]
        else:
            raw[key] = op["value"]
    return Image.from_api(raw)


property_names = st.sampled_from(
    ["os_distro", "os_version", "hw_disk_bus", "note", "a/b", "x~y", "keep_me", "keep_too"]
)
property_values = st.one_of(
    st.text(max_size=5), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2)
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(property_names, property_values, max_size=6),
    st.dictionaries(property_names, property_values, max_size=6),
    st.booleans(),
)
def test_build_patch_brings_the_target_to_the_desired_properties(
    source_props: dict[str, Any], target_props: dict[str, Any], copy_properties: bool
) -> None:
    copy = CopyConfig(properties=copy_properties, exclude_properties=("keep_*",))
    src = image("s", name="n", data=b"d", **source_props)
    desired = desired_target(src, job="j", source_region="KR1", copy=copy)
    target = image("t", name="old", data=b"d", visibility="shared", min_ram=64, **target_props)
    patched = apply_patch(target, build_patch(target, desired, copy))
    have = {k: property_string(v) for k, v in patched.properties.items() if k in desired.properties}
    assert have == desired.properties
    assert (patched.name, patched.min_ram, patched.visibility) == ("n", 0, "private")
    for key, value in target.properties.items():
        if key not in desired.properties and (not copy_properties or not removable(key, copy)):
            assert patched.properties[key] == value  # excluded or not ours to remove: kept
    if copy_properties:
        leftovers = set(patched.properties) - set(desired.properties)
        assert all(not removable(key, copy) for key in leftovers)
    assert build_patch(patched, desired, copy) == []
