"""Typed views of the Image API's objects (images and members).

Every object keeps the whole JSON it came from in ``raw``, so fields this code does not know
(NHN's own, a site's custom properties) survive a round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from transfer.errors import ProtocolError

#: Keys the API sets itself: refused (403) on create, never copied to a target.
READ_ONLY_KEYS: frozenset[str] = frozenset(
    {
        "id",
        "status",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "size",
        "virtual_size",
        "created_at",
        "updated_at",
        "owner",
        "locations",
        "direct_url",
        "self",
        "file",
        "schema",
        "stores",
        "deleted",
        "deleted_at",
    }
)

#: Keys with a meaning of their own in Glance's image schema (not free-form properties).
CORE_KEYS: frozenset[str] = READ_ONLY_KEYS | frozenset(
    {
        "name",
        "visibility",
        "protected",
        "tags",
        "disk_format",
        "container_format",
        "min_disk",
        "min_ram",
        "os_hidden",
    }
)

IMAGE_STATUSES: frozenset[str] = frozenset(
    {
        "queued",
        "saving",
        "active",
        "killed",
        "deleted",
        "pending_delete",
        "uploading",
        "importing",
        "deactivated",
    }
)
#: Statuses of an image that is gone, or going: never adopted, never reported.
GONE_STATUSES: frozenset[str] = frozenset({"deleted", "pending_delete"})


def is_reserved_key(key: str) -> bool:
    """Whether a key may not be sent on create (read-only, or Glance's own ``os_glance*``)."""
    return key in READ_ONLY_KEYS or key.startswith("os_glance")


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"image field {key!r} should be a string, got {type(value).__name__}")
    return value


def _opt_int(data: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"image field {key!r} should be an integer, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Image:
    """One image as the API returned it."""

    id: str
    name: str | None
    status: str
    visibility: str
    owner: str | None
    size: int | None
    checksum: str | None
    os_hash_algo: str | None
    os_hash_value: str | None
    disk_format: str | None
    container_format: str | None
    protected: bool
    min_disk: int
    min_ram: int
    tags: tuple[str, ...]
    created_at: str | None
    updated_at: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Any) -> Image:
        """Build from the API's JSON; raises ProtocolError when it is not an image."""
        if not isinstance(data, Mapping):
            raise ProtocolError(f"expected an image object, got {type(data).__name__}")
        image_id = data.get("id")
        status = data.get("status")
        if not isinstance(image_id, str) or not image_id:
            raise ProtocolError("image object without an 'id'")
        if not isinstance(status, str):
            raise ProtocolError(f"image {image_id} has no 'status'")
        tags = data.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ProtocolError(f"image {image_id} has malformed 'tags'")
        return cls(
            id=image_id,
            name=_opt_str(data, "name"),
            status=status,
            visibility=_opt_str(data, "visibility") or "private",
            owner=_opt_str(data, "owner"),
            size=_opt_int(data, "size"),
            checksum=_opt_str(data, "checksum"),
            os_hash_algo=_opt_str(data, "os_hash_algo"),
            os_hash_value=_opt_str(data, "os_hash_value"),
            disk_format=_opt_str(data, "disk_format"),
            container_format=_opt_str(data, "container_format"),
            protected=bool(data.get("protected", False)),
            min_disk=_opt_int(data, "min_disk", 0) or 0,
            min_ram=_opt_int(data, "min_ram", 0) or 0,
            tags=tuple(tags),
            created_at=_opt_str(data, "created_at"),
            updated_at=_opt_str(data, "updated_at"),
            raw=dict(data),
        )

    @property
    def properties(self) -> dict[str, Any]:
        """Free-form properties: every top-level key that is not part of Glance's schema.

        NHN's example documents also show a nested ``properties`` object; its entries are
        merged in (top-level keys win).
        """
        props: dict[str, Any] = {}
        nested = self.raw.get("properties")
        if isinstance(nested, Mapping):
            props.update(nested)
        for key, value in self.raw.items():
            if key in CORE_KEYS or key == "properties" or key.startswith("os_glance"):
                continue
            props[key] = value
        return props


#: The statuses of a member, and the ``member_status`` list filters (which add ``all``).
MEMBER_STATUSES: tuple[str, ...] = ("accepted", "pending", "rejected")
MEMBER_STATUS_FILTERS: tuple[str, ...] = (*MEMBER_STATUSES, "all")


@dataclass(frozen=True, slots=True)
class Member:
    """One member (a tenant an image is shared with)."""

    image_id: str
    member_id: str
    status: str
    created_at: str | None
    updated_at: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Any) -> Member:
        if not isinstance(data, Mapping):
            raise ProtocolError(f"expected a member object, got {type(data).__name__}")
        image_id = data.get("image_id")
        member_id = data.get("member_id")
        status = data.get("status")
        if not (isinstance(image_id, str) and isinstance(member_id, str)):
            raise ProtocolError("member object without 'image_id' or 'member_id'")
        if not isinstance(status, str):
            raise ProtocolError(f"member {member_id} of image {image_id} has no 'status'")
        return cls(
            image_id=image_id,
            member_id=member_id,
            status=status,
            created_at=_opt_str(data, "created_at"),
            updated_at=_opt_str(data, "updated_at"),
            raw=dict(data),
        )


class PatchOp(TypedDict, total=False):
    """One JSON Patch operation, as ``PATCH /v2/images/{id}`` takes it."""

    op: Literal["add", "replace", "remove"]
    path: str
    value: Any
