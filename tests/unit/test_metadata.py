"""Target metadata: the create body, the desired state, differences and patches."""

from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Any

from tests.unit.factories import image
from transfer.config.settings import CopyConfig
from transfer.metadata import (
    MARKER_JOB,
    MARKER_KEYS,
    MARKER_SOURCE_CHECKSUM,
    MARKER_SOURCE_ID,
    MARKER_SOURCE_REGION,
    build_patch,
    desired_target,
    metadata_differences,
    target_image_id,
)
from transfer.models import Image, is_reserved_key

COPY = CopyConfig(exclude_properties=("internal_*",))


def source(**extra: Any) -> Image:
    props: dict[str, Any] = {
        "os_type": "linux",
        "os_distro": "ubuntu",
        "os_version": "22.04",
        "internal_note": "do not copy",
    }
    props.update(extra)
    return image("src-1", name="ubuntu", data=b"payload", tags=("golden", "_hidden"), **props)


def target_from(desired_fields: dict[str, Any], **changes: Any) -> Image:
    """A target as the API would show it after a create with these fields."""
    raw = dict(desired_fields)
    raw.update(changes)
    name = raw.pop("name")
    return image("tgt-1", name=name, data=b"payload", **raw)


def test_target_id_is_a_stable_uuid_per_source_target_and_generation() -> None:
    first = target_image_id("job", "kr1", "src-1", "abc", "dst/KR2")
    assert first == target_image_id("job", "KR1", "src-1", "abc", "dst/KR2")
    assert uuid.UUID(first).version == 5
    others = {
        target_image_id("job", "KR1", "src-1", "abc", "dst/KR2", generation=1),
        target_image_id("job", "KR1", "src-1", "abc", "dst/JP1"),
        target_image_id("job2", "KR1", "src-1", "abc", "dst/KR2"),
        target_image_id("job", "KR1", "src-2", "abc", "dst/KR2"),
        target_image_id("job", "KR1", "src-1", "abd", "dst/KR2"),
    }
    assert first not in others and len(others) == 5


def test_create_fields_carry_what_the_api_accepts_and_the_markers() -> None:
    desired = desired_target(source(), job="job1", source_region="kr1", copy=COPY)
    fields = desired.create_fields
    assert fields["name"] == "ubuntu"
    assert fields["disk_format"] == "qcow2" and fields["container_format"] == "bare"
    assert fields["min_disk"] == 1 and fields["min_ram"] == 0
    assert fields["visibility"] == "private"
    assert fields["os_type"] == "linux" and fields["os_distro"] == "ubuntu"
    assert fields[MARKER_JOB] == "job1"
    assert fields[MARKER_SOURCE_REGION] == "KR1"
    assert fields[MARKER_SOURCE_ID] == "src-1"
    assert fields[MARKER_SOURCE_CHECKSUM] == source().checksum
    assert "internal_note" not in fields  # excluded by glob
    assert "tags" not in fields and "id" not in fields and "protected" not in fields
    assert not any(is_reserved_key(key) for key in fields)
    assert all(isinstance(fields[key], str) for key in desired.properties)
    assert desired.tags == {"golden"}
    assert desired.dropped == ("tag '_hidden': starts with '_'",)


def test_values_are_converted_and_unsendable_ones_dropped() -> None:
    long_key = "k" * 256
    src = source(
        **{
            "hw_cores": 4,
            "hw_flag": True,
            "meta": {"b": 1, "a": [1, 2]},
            "gone": None,
            long_key: "x",
            "os_type": "beos",
        }
    )
    desired = desired_target(src, job="j", source_region="KR1", copy=COPY)
    assert desired.properties["hw_cores"] == "4"
    assert desired.properties["hw_flag"] == "true"
    assert desired.properties["meta"] == '{"a":[1,2],"b":1}'
    assert desired.properties["os_type"] == "linux"  # the job's default replaces a bad value
    assert "gone" not in desired.properties and long_key not in desired.properties
    assert "property 'gone': null value" in desired.dropped
    assert any(d.startswith("property 'kkkk") and "255" in d for d in desired.dropped)
    assert "property 'os_type': 'beos' is not linux or windows" in desired.dropped


def test_os_type_default_and_properties_off() -> None:
    src = image("s", name="win", data=b"x", custom="1")
    desired = desired_target(
        src,
        job="j",
        source_region="KR1",
        copy=CopyConfig(properties=False, default_os_type="windows"),
    )
    assert desired.properties == {
        "os_type": "windows",
        MARKER_JOB: "j",
        MARKER_SOURCE_REGION: "KR1",
        MARKER_SOURCE_ID: "s",
        MARKER_SOURCE_CHECKSUM: src.checksum,
    }


def test_members_visibility_and_protection() -> None:
    copy = CopyConfig(
        member_map=MappingProxyType({"m1": "t1", "m2": "t2"}),
        share_with=("partner",),
        protected=True,
    )
    src = image("s", data=b"x", visibility="shared", protected=True)
    desired = desired_target(
        src,
        job="j",
        source_region="KR1",
        copy=copy,
        source_members=["m1", "m3", "m2"],
        target_owner="t2",
    )
    # Unmapped members stay themselves (tenant ids are global); the owner is never a member.
    assert desired.members == {"t1", "m3", "partner"}
    assert desired.visibility == "shared" and desired.protected is True
    assert desired.create_fields["visibility"] == "private"  # widened only after verification

    private = desired_target(image("p", data=b"x"), job="j", source_region="KR1", copy=CopyConfig())
    assert private.visibility == "private" and private.members == frozenset()
    assert private.protected is False


def test_in_sync_target_has_no_differences_and_an_empty_patch() -> None:
    desired = desired_target(source(), job="j", source_region="KR1", copy=COPY)
    target = target_from(desired.create_fields, tags=["golden"], internal_other="kept")
    assert metadata_differences(target, desired, COPY) == []
    assert build_patch(target, desired, COPY) == []


def test_differences_read_like_a_report() -> None:
    desired = desired_target(
        source(), job="j", source_region="KR1", copy=CopyConfig(protected=True)
    )
    target = target_from(
        desired.create_fields,
        os_version="20.04",
        min_ram=512,
        stale="1",
        tags=["golden", "old"],
        visibility="shared",
        protected=True,
    )
    assert metadata_differences(target, desired, CopyConfig(protected=True)) == [
        "min_ram 512 -> 0",
        "property os_version: '20.04' -> '22.04'",
        "property stale: '1' -> removed",
        "tag 'old' not on the source",
        "visibility shared -> private",
        "protected true -> false",
    ]


def test_patch_adds_changes_removes_and_never_touches_reserved_or_excluded() -> None:
    desired = desired_target(source(), job="j", source_region="KR1", copy=COPY)
    fields = {k: v for k, v in desired.create_fields.items() if k != "os_distro"}
    target = target_from(
        fields,
        name="renamed",
        os_version="20.04",
        stale="1",
        **{"a/b~c": "x", "internal_keep": "y", "os_glance_importing": "z"},
    )
    assert build_patch(target, desired, COPY) == [
        {"op": "add", "path": "/name", "value": "ubuntu"},
        {"op": "add", "path": "/os_distro", "value": "ubuntu"},
        {"op": "add", "path": "/os_version", "value": "22.04"},
        {"op": "remove", "path": "/a~1b~0c"},
        {"op": "remove", "path": "/stale"},
    ]
    # Without property copying, what is on the target stays.
    off = CopyConfig(properties=False)
    desired_off = desired_target(source(), job="j", source_region="KR1", copy=off)
    assert all(op["op"] == "add" for op in build_patch(target, desired_off, off))


def test_patch_sets_missing_markers_and_visibility_last() -> None:
    copy = CopyConfig(share_with=("partner",))
    desired = desired_target(source(), job="j", source_region="KR1", copy=copy)
    fields = {k: v for k, v in desired.create_fields.items() if k not in MARKER_KEYS}
    target = target_from(fields, tags=["golden"])
    assert build_patch(target, desired, copy) == [
        {"op": "add", "path": f"/{key}", "value": desired.properties[key]}
        for key in sorted(MARKER_KEYS)
    ] + [{"op": "add", "path": "/visibility", "value": "shared"}]
