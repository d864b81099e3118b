"""What a target image should look like, and how it differs from what is there (pure).

Owns the marker properties that tie a target to its source and job, the deterministic target
id, the translation of a source image into the target's create body and desired state, and
the JSON-patch that brings an existing target's metadata in line.  Members are desired here
but compared by the engine (listing them needs a call per image); ``protected`` is desired
here but set by the engine last, because a protected image refuses every other change.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from transfer.config.settings import OS_TYPES, CopyConfig
from transfer.models import CORE_KEYS, Image, PatchOp, is_reserved_key

MARKER_SOURCE_REGION = "image_transfer_source_region"
MARKER_SOURCE_ID = "image_transfer_source_id"
MARKER_SOURCE_CHECKSUM = "image_transfer_source_checksum"
MARKER_JOB = "image_transfer_job"
MARKER_KEYS: tuple[str, ...] = (
    MARKER_SOURCE_REGION,
    MARKER_SOURCE_ID,
    MARKER_SOURCE_CHECKSUM,
    MARKER_JOB,
)

# Fixed forever: changing it would make every existing target look foreign to its job.
ID_NAMESPACE = uuid.UUID("5b7f2c1e-3d4a-5e8f-9a6b-0c1d2e3f4a5b")

MAX_KEY_LENGTH = 255  # Glance stores property names in a 255-character column
MAX_VALUE_BYTES = 65535  # ... and values in a TEXT column (64 KiB in MySQL)
MAX_TAG_LENGTH = 255


def target_image_id(
    job: str,
    source_region: str,
    source_id: str,
    source_checksum: str | None,
    target_key: str,
    generation: int = 0,
) -> str:
    """The id a target is created with, so a crashed create is found again (a 409 on re-create).

    Glance keeps a deleted image's id reserved, so a target that had to be deleted is
    recreated under the next ``generation``.
    """
    name = "\x1f".join(
        (job, source_region.upper(), source_id, source_checksum or "", target_key, str(generation))
    )
    return str(uuid.uuid5(ID_NAMESPACE, name))


def property_string(value: Any) -> str | None:
    """A property value as the API stores it (strings only); None for a null value."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class DesiredTarget:
    """A target image's desired state, derived from its source and the job's copy settings."""

    create_fields: dict[str, Any]  # the POST body, without the id and tags (the engine adds them)
    properties: dict[str, str]  # custom properties and markers the target must carry
    tags: frozenset[str]
    visibility: str  # private | shared
    protected: bool
    members: frozenset[str]  # target tenant ids
    dropped: tuple[str, ...] = ()  # what could not be copied, and why

    @property
    def name(self) -> str:
        return str(self.create_fields["name"])


def _refusal(key: str, value: str | None) -> str | None:
    if not key:
        return "property with an empty name: not copied"
    if len(key) > MAX_KEY_LENGTH:
        return f"property {key[:40]!r}...: name longer than {MAX_KEY_LENGTH} characters"
    if value is None:
        return f"property {key!r}: null value"
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        return f"property {key!r}: value longer than {MAX_VALUE_BYTES} bytes"
    if "\x00" in value:
        return f"property {key!r}: value contains a NUL character"
    return None


def desired_target(
    source: Image,
    *,
    job: str,
    source_region: str,
    copy: CopyConfig,
    source_members: Collection[str] = (),
    target_owner: str | None = None,
) -> DesiredTarget:
    """The desired target of ``source`` (``target_owner``, when known, is never a member)."""
    dropped: list[str] = []
    properties: dict[str, str] = {}
    source_props = source.properties
    if copy.properties:
        for key in sorted(source_props):
            # A source that is itself a copy carries markers: ours replace them.
            if key in MARKER_KEYS or key == "os_type" or is_reserved_key(key):
                continue
            if copy.excluded(key):
                continue
            value = property_string(source_props[key])
            reason = _refusal(key, value)
            if reason is not None:
                dropped.append(reason)
                continue
            assert value is not None
            properties[key] = value
    # NHN requires os_type on create: the source's when valid, else the job's default.
    os_type = property_string(source_props.get("os_type"))
    if os_type not in OS_TYPES:
        if os_type is not None:
            dropped.append(f"property 'os_type': {os_type!r} is not linux or windows")
        os_type = copy.default_os_type
    properties["os_type"] = os_type
    properties[MARKER_JOB] = job
    properties[MARKER_SOURCE_REGION] = source_region.upper()
    properties[MARKER_SOURCE_ID] = source.id
    properties[MARKER_SOURCE_CHECKSUM] = source.checksum or ""

    tags: set[str] = set()
    if copy.tags:
        for tag in source.tags:
            if tag.startswith("_"):
                dropped.append(f"tag {tag!r}: starts with '_'")
            elif len(tag) > MAX_TAG_LENGTH:
                dropped.append(f"tag {tag[:40]!r}...: longer than {MAX_TAG_LENGTH} characters")
            else:
                tags.add(tag)

    members: set[str] = set()
    if copy.members:
        for member in sorted(set(source_members)):
            # Tenant ids are global in NHN's identity service: an unmapped member stays itself.
            members.add(copy.member_map.get(member, member))
    members.update(copy.share_with)
    if target_owner is not None:
        members.discard(target_owner)

    shared = bool(members) or (copy.visibility and source.visibility == "shared")
    create_fields: dict[str, Any] = {"name": source.name if source.name is not None else source.id}
    if source.disk_format is not None:
        create_fields["disk_format"] = source.disk_format
    if source.container_format is not None:
        create_fields["container_format"] = source.container_format
    create_fields["min_disk"] = source.min_disk
    create_fields["min_ram"] = source.min_ram
    # Shared only once verified: the engine's share step widens it.
    create_fields["visibility"] = "private"
    create_fields.update(properties)
    return DesiredTarget(
        create_fields=create_fields,
        properties=properties,
        tags=frozenset(tags),
        visibility="shared" if shared else "private",
        protected=copy.protected and source.protected,
        members=frozenset(members),
        dropped=tuple(dropped),
    )


def removable(key: str, copy: CopyConfig) -> bool:
    """Whether a target property that the source lacks may be removed from the target."""
    return not (
        key in CORE_KEYS or key == "properties" or is_reserved_key(key) or copy.excluded(key)
    )


def _pointer(key: str) -> str:
    # RFC 6901: '~' and '/' inside a name are escaped (Glance decodes both).
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _core_changes(target: Image, desired: DesiredTarget) -> list[tuple[str, Any, Any]]:
    fields = desired.create_fields
    changes: list[tuple[str, Any, Any]] = []
    if target.name != fields["name"]:
        changes.append(("name", target.name, fields["name"]))
    if target.min_disk != fields["min_disk"]:
        changes.append(("min_disk", target.min_disk, fields["min_disk"]))
    if target.min_ram != fields["min_ram"]:
        changes.append(("min_ram", target.min_ram, fields["min_ram"]))
    return changes


def _property_changes(
    target: Image, desired: DesiredTarget, copy: CopyConfig
) -> tuple[list[tuple[str, str | None, str]], list[tuple[str, str | None]]]:
    """(key, current, wanted) to set, and (key, current) to remove, in key order."""
    current = target.properties
    to_set: list[tuple[str, str | None, str]] = []
    for key in sorted(desired.properties):
        have = property_string(current.get(key))
        if have != desired.properties[key]:
            to_set.append((key, have, desired.properties[key]))
    to_remove: list[tuple[str, str | None]] = []
    # Without property copying, properties found on the target are someone else's to keep.
    if copy.properties:
        for key in sorted(current):
            if key not in desired.properties and removable(key, copy):
                to_remove.append((key, property_string(current[key])))
    return to_set, to_remove


def _shown(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def metadata_differences(target: Image, desired: DesiredTarget, copy: CopyConfig) -> list[str]:
    """Why the target's metadata is not the desired one (empty when in sync); not members."""
    reasons = [
        f"{name} {_shown(have)} -> {_shown(want)}"
        for name, have, want in _core_changes(target, desired)
    ]
    to_set, to_remove = _property_changes(target, desired, copy)
    reasons += [f"property {key}: {_shown(have)} -> {_shown(want)}" for key, have, want in to_set]
    reasons += [f"property {key}: {_shown(have)} -> removed" for key, have in to_remove]
    if copy.tags:
        have_tags = set(target.tags)
        reasons += [f"tag {tag!r} missing" for tag in sorted(desired.tags - have_tags)]
        reasons += [f"tag {tag!r} not on the source" for tag in sorted(have_tags - desired.tags)]
    if target.visibility != desired.visibility:
        reasons.append(f"visibility {target.visibility} -> {desired.visibility}")
    if copy.protected and target.protected != desired.protected:
        reasons.append(f"protected {_shown(target.protected)} -> {_shown(desired.protected)}")
    return reasons


def build_patch(target: Image, desired: DesiredTarget, copy: CopyConfig) -> list[PatchOp]:
    """JSON-patch ops for name, min_disk, min_ram, properties and visibility (empty in sync).

    ``add`` both adds and replaces, so setting never fails on a property another writer
    removed meanwhile; a ``remove`` of a property gone meanwhile fails the whole patch with
    409, so the caller re-reads the target and builds again.  Tags, members and ``protected``
    have calls of their own.
    """
    ops: list[PatchOp] = [
        {"op": "add", "path": _pointer(name), "value": want}
        for name, _, want in _core_changes(target, desired)
    ]
    to_set, to_remove = _property_changes(target, desired, copy)
    ops += [{"op": "add", "path": _pointer(key), "value": want} for key, _, want in to_set]
    ops += [{"op": "remove", "path": _pointer(key)} for key, _ in to_remove]
    if target.visibility != desired.visibility:
        ops.append({"op": "add", "path": "/visibility", "value": desired.visibility})
    return ops
