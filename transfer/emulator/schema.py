"""The rules an image's fields obey: what create accepts, what a JSON Patch may change, the
shape of a fresh record, the fields stored bytes set, and the record as the API shows it.
Violations raise ``HttpError`` with Glance's status (400 for a bad value, 403 for a key users
may not set, 409 for a missing property).  Where the two kinds of cloud differ (``os_type``,
``_`` tags, ``name``, the default visibility, protected images) the ``Flavour`` decides.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from transfer.emulator.flavours import Flavour
from transfer.emulator.responses import HttpError, now
from transfer.emulator.streams import Digest
from transfer.models import is_reserved_key

DISK_FORMATS = frozenset(
    {"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"}
)
CONTAINER_FORMATS = frozenset({"ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"})
ALL_VISIBILITIES = frozenset({"private", "shared", "public", "community"})
#: What a member may answer to a share (the list filter adds ``all``).
MEMBER_STATUSES = ("accepted", "pending", "rejected")

#: Keys of the image schema a caller may set (everything else is a custom property).
SETTABLE_CORE = frozenset(
    {
        "name",
        "visibility",
        "protected",
        "os_hidden",
        "tags",
        "disk_format",
        "container_format",
        "min_disk",
        "min_ram",
    }
)
MAX_KEY = 255
MAX_TAG = 255


def blank_record(image_id: str, owner: str, timestamp: str, visibility: str) -> dict[str, Any]:
    """A new image as create leaves it, before the caller's fields are applied."""
    return {
        "id": image_id,
        "name": None,
        "status": "queued",
        "visibility": visibility,
        "protected": False,
        "os_hidden": False,
        "owner": owner,
        "size": None,
        "virtual_size": None,
        "checksum": None,
        "os_hash_algo": None,
        "os_hash_value": None,
        "disk_format": None,
        "container_format": None,
        "min_disk": 0,
        "min_ram": 0,
        "tags": [],
        "created_at": timestamp,
        "updated_at": timestamp,
    }


def mark_active(record: dict[str, Any], digest: Digest) -> None:
    """Make the record active with the size and hashes of its stored bytes."""
    record.update(
        status="active",
        size=digest.size,
        checksum=digest.md5,
        os_hash_algo="sha512",
        os_hash_value=digest.sha512,
        updated_at=now(),
    )


def view(record: Mapping[str, Any]) -> dict[str, Any]:
    """The image as the API shows it."""
    image_id = record["id"]
    out = dict(record)
    out["tags"] = list(record.get("tags") or [])
    out["self"] = f"/v2/images/{image_id}"
    out["file"] = f"/v2/images/{image_id}/file"
    out["schema"] = "/v2/schemas/image"
    return out


def canonical_uuid(value: Any) -> str:
    """The lower-case hyphenated form of a caller-chosen image id (400 unless a UUID)."""
    if isinstance(value, str) and len(value) in (32, 36):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise HttpError(400, f"Invalid value for 'id': {value!r} is not a UUID.")


def check_tag(tag: Any, flavour: Flavour) -> str:
    if not isinstance(tag, str) or not tag:
        raise HttpError(400, f"Invalid tag {tag!r}: tags are non-empty strings.")
    if len(tag) > MAX_TAG:
        raise HttpError(400, f"Invalid tag: longer than {MAX_TAG} characters.")
    if tag.startswith("_") and not flavour.underscore_tags:
        raise HttpError(400, f"Invalid tag {tag!r}: tags may not start with '_'.")
    return tag


def check_value(key: str, value: Any, *, visibilities: frozenset[str], flavour: Flavour) -> Any:
    """The value to store for ``key`` (a core key or a custom property), or raise."""
    if key == "name":
        if value is not None and not isinstance(value, str):
            raise HttpError(400, "Invalid value for 'name': expected a string or null.")
        if isinstance(value, str) and len(value) > 255:
            raise HttpError(400, "Invalid value for 'name': longer than 255 characters.")
        return value
    if key == "visibility":
        if value in visibilities:
            return value
        if value in ALL_VISIBILITIES:
            raise HttpError(403, f"Not allowed to set visibility to {value!r}.")
        raise HttpError(400, f"Invalid visibility {value!r}.")
    if key in ("protected", "os_hidden"):
        if not isinstance(value, bool):
            raise HttpError(400, f"Invalid value for {key!r}: expected true or false.")
        return value
    if key in ("min_disk", "min_ram"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise HttpError(400, f"Invalid value for {key!r}: expected a non-negative integer.")
        return value
    if key == "disk_format":
        if value is not None and value not in DISK_FORMATS:
            raise HttpError(400, f"Invalid disk_format {value!r}.")
        return value
    if key == "container_format":
        if value is not None and value not in CONTAINER_FORMATS:
            raise HttpError(400, f"Invalid container_format {value!r}.")
        return value
    if key == "tags":
        if not isinstance(value, list):
            raise HttpError(400, "Invalid value for 'tags': expected a list of strings.")
        tags: list[str] = []
        for tag in value:
            if check_tag(tag, flavour) not in tags:
                tags.append(tag)
        return tags
    # A custom property.
    if len(key) > MAX_KEY:
        raise HttpError(400, f"Property names are at most {MAX_KEY} characters.")
    if not key:
        raise HttpError(400, "Property names may not be empty.")
    if not isinstance(value, str):
        raise HttpError(400, f"Invalid value for property {key!r}: expected a string.")
    if key == "os_type" and flavour.os_types and value not in flavour.os_types:
        choices = " or ".join(repr(choice) for choice in flavour.os_types)
        raise HttpError(400, f"Invalid os_type: expected {choices}.")
    return value


def apply_create(
    record: dict[str, Any],
    body: Mapping[str, Any],
    *,
    visibilities: frozenset[str],
    flavour: Flavour,
    need_name: bool = True,
) -> None:
    """Apply create's body (without ``id``) to a blank record."""
    for key, value in body.items():
        if key == "id":
            continue
        if key == "owner":
            # Glance lets a caller name its own project as the owner, and no other.
            if value != record["owner"]:
                raise HttpError(
                    403,
                    "Access was denied to this resource.",
                    detail=f"You are not permitted to create images owned by {value!r}",
                )
            continue
        if is_reserved_key(key):
            raise HttpError(403, f"Attribute {key!r} is read-only.")
        record[key] = check_value(key, value, visibilities=visibilities, flavour=flavour)
    if need_name and flavour.name_required and record.get("name") is None:
        raise HttpError(400, "Missing required property 'name' (the image's name).")
    if flavour.os_type_required and record.get("os_type") is None:
        choices = " or ".join(repr(choice) for choice in flavour.os_types)
        raise HttpError(400, f"Missing required property 'os_type' ({choices}).")


def decode_path(path: Any) -> str:
    """The property a JSON Patch path names (``/key``, with ``~1`` and ``~0`` escapes)."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) < 2:
        raise HttpError(400, f"Invalid JSON Patch path {path!r}: expected '/<property>'.")
    key = path[1:]
    if "/" in key:
        root = key.split("/", 1)[0]
        if root == "locations":
            raise HttpError(403, "Changing image locations is not allowed.")
        raise HttpError(400, f"Invalid JSON Patch path {path!r}: nested paths are not allowed.")
    return key.replace("~1", "/").replace("~0", "~")


def legacy_ops(ops: Any) -> Any:
    """Operations of the v2.0 patch media type (``{"add": "/key", "value": ...}``) in RFC 6902
    form; anything else is left for ``apply_patch`` to refuse."""
    if not isinstance(ops, list):
        return ops
    converted = []
    for op in ops:
        kinds = [
            kind for kind in ("add", "remove", "replace") if isinstance(op, dict) and kind in op
        ]
        if len(kinds) != 1:
            raise HttpError(
                400,
                'Operation objects must contain exactly one member named "add", "remove", '
                'or "replace".',
            )
        new = {"op": kinds[0], "path": op[kinds[0]]}
        if "value" in op:
            new["value"] = op["value"]
        converted.append(new)
    return converted


def apply_patch(record: dict[str, Any], ops: Any, *, flavour: Flavour) -> dict[str, Any]:
    """The record after a JSON Patch (a new dict; the given one is untouched)."""
    if not isinstance(ops, list):
        raise HttpError(400, "The request body must be a JSON array of patch operations.")
    result = dict(record)
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove"):
            raise HttpError(
                400, f"Invalid patch operation {op!r}: op must be add, replace or remove."
            )
        key = decode_path(op.get("path"))
        if is_reserved_key(key):
            raise HttpError(403, f"Attribute {key!r} is read-only.")
        if (
            flavour.protected_blocks_changes
            and result.get("protected") is True
            and key != "protected"
        ):
            raise HttpError(403, "Image is protected: only 'protected' may be changed.")
        kind = op["op"]
        if kind == "remove":
            if key in SETTABLE_CORE:
                raise HttpError(403, f"Attribute {key!r} cannot be removed.")
            if key not in result:
                raise _missing(key)
            del result[key]
            continue
        if "value" not in op:
            raise HttpError(400, f"Operation {kind!r} on {key!r} needs a 'value'.")
        if kind == "replace" and key not in SETTABLE_CORE and key not in result:
            raise _missing(key)
        if (
            key in ("disk_format", "container_format")
            and result.get("status") != "queued"
            and op["value"] != result.get(key)
        ):
            raise HttpError(403, f"Attribute {key!r} can only be changed on a queued image.")
        result[key] = check_value(
            key, op["value"], visibilities=flavour.user_visibilities, flavour=flavour
        )
    return result


def _missing(key: str) -> HttpError:
    return HttpError(
        409,
        "There was a conflict when trying to complete your request.",
        detail=f"Property {key} does not exist.",
    )
