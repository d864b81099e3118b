"""``GET /v2/images`` as pure code: which images a tenant sees in a list, filters, sort order,
markers and the ``first``/``next`` links.  No I/O; the region service feeds it records, and
who may see an image at all is the rule ``access.sees`` (pure as well).

A request is read in three parts, each refusing a bad parameter with 400: the page size, the
filters (``_Filters``: which records are wanted) and the order (``_Ordering``: how they are
sorted and where a marker puts the page); ``list_page`` then cuts the page.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from multidict import MultiMapping

from transfer.emulator.access import MemberLookup, sees
from transfer.emulator.responses import HttpError
from transfer.emulator.schema import MEMBER_STATUSES

MEMBER_STATUS_FILTERS = frozenset({*MEMBER_STATUSES, "all"})
#: The keys Glance 33 sorts by, in the order its message names them.
SORT_KEYS = (
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
)
VISIBILITY_FILTERS = frozenset({"public", "private", "shared", "community", "all"})
# Parameters with a meaning of their own; any other parameter filters on a property's value.
_CONTROL = frozenset(
    {
        "limit",
        "marker",
        "sort",
        "sort_key",
        "sort_dir",
        "visibility",
        "member_status",
        "size_min",
        "size_max",
        "tag",
        "status",
        "os_hidden",
    }
)


@dataclass(frozen=True)
class Page:
    images: list[dict[str, Any]]
    first: str
    next: str | None


def _int_param(query: MultiMapping[str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"Invalid {name} {raw!r}: expected an integer.") from None
    if value < 0:
        raise HttpError(400, f"Invalid {name} {raw!r}: expected a non-negative integer.")
    return value


def _sort_value(value: Any) -> tuple[int, Any]:
    # Ranks keep values of different types apart so they never get compared directly.
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, repr(value))


def _matches_property(value: Any, wanted: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return wanted.lower() == ("true" if value else "false")
    if isinstance(value, list):
        return wanted in value
    return str(value) == wanted


@dataclass(frozen=True)
class _Filters:
    """What a list request asks for, besides paging: checked when parsed (400 if invalid)."""

    size_min: int | None
    size_max: int | None
    visibility: str | None
    member_status: str
    status: str | None
    hidden: bool
    tags: tuple[str, ...]
    properties: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, query: MultiMapping[str]) -> _Filters:
        size_min = _int_param(query, "size_min")
        size_max = _int_param(query, "size_max")
        visibility = query.get("visibility")
        if visibility is not None and visibility not in VISIBILITY_FILTERS:
            raise HttpError(400, f"Invalid visibility filter {visibility!r}.")
        member_status = query.get("member_status", "accepted")
        if member_status not in MEMBER_STATUS_FILTERS:
            raise HttpError(400, f"Invalid member_status {member_status!r}.")
        hidden = query.get("os_hidden", "false").lower()
        if hidden not in ("true", "false"):
            raise HttpError(400, "Invalid os_hidden filter: expected true or false.")
        return cls(
            size_min=size_min,
            size_max=size_max,
            visibility=visibility,
            member_status=member_status,
            # Glance does not check the status filter: an unknown status simply matches nothing.
            status=query.get("status"),
            hidden=hidden == "true",
            tags=tuple(query.getall("tag", ())),
            properties=tuple((k, v) for k, v in query.items() if k not in _CONTROL),
        )

    def listed(self, record: Mapping[str, Any], tenant: str, member_status: MemberLookup) -> bool:
        """Whether this tenant's listing includes the record, before any other filter."""
        vis = str(record["visibility"])
        own = bool(record["owner"] == tenant)
        shared_in = False
        if vis == "shared" and not own:
            mine = member_status(record["id"])
            shared_in = mine is not None and self.member_status in ("all", mine)
        visibility = self.visibility
        if visibility is None:
            return own or vis == "public" or shared_in
        if visibility == "all":
            return own or vis in ("public", "community") or shared_in
        if visibility == "shared":
            return vis == "shared" and (own or shared_in)
        if visibility == "private":
            return vis == "private" and own
        return vis == visibility  # public, community

    def wants(self, record: Mapping[str, Any], tenant: str, member_status: MemberLookup) -> bool:
        if not self.listed(record, tenant, member_status):
            return False
        if bool(record.get("os_hidden")) != self.hidden:
            return False
        if self.status is not None and record["status"] != self.status:
            return False
        size = record.get("size")
        if self.size_min is not None and (size is None or size < self.size_min):
            return False
        if self.size_max is not None and (size is None or size > self.size_max):
            return False
        record_tags = record.get("tags") or []
        if any(tag not in record_tags for tag in self.tags):
            return False
        return all(_matches_property(record.get(k), v) for k, v in self.properties)


class _Ordering:
    def __init__(self, keys: Sequence[str], dirs: Sequence[str]) -> None:
        self.keys = list(keys)
        self.dirs = list(dirs)
        if "id" not in self.keys:  # the tie-breaker that makes paging stable
            self.keys.append("id")
            self.dirs.append(self.dirs[-1])

    def compare(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
        for key, direction in zip(self.keys, self.dirs, strict=True):
            va, vb = _sort_value(a.get(key)), _sort_value(b.get(key))
            if va != vb:
                less = va < vb
                if direction == "desc":
                    less = not less
                return -1 if less else 1
        return 0


def _ordering(query: MultiMapping[str]) -> _Ordering:
    combined = query.get("sort")
    if combined is not None:
        # Glance's newer syntax: sort=name:asc,created_at (direction defaults to desc).
        if "sort_key" in query or "sort_dir" in query:
            raise HttpError(400, "Use either sort, or sort_key and sort_dir, not both.")
        keys, dirs = [], []
        for part in combined.split(","):
            key, _, direction = part.strip().partition(":")
            if not key:
                raise HttpError(400, f"Invalid sort {combined!r}.")
            keys.append(key)
            dirs.append(direction or "desc")
    else:
        keys = query.getall("sort_key", []) or ["created_at"]
        dirs = query.getall("sort_dir", []) or ["desc"]
    for key in keys:
        if key not in SORT_KEYS:
            raise HttpError(
                400,
                f"Invalid sort key: {key}. It must be one of the following: "
                f"{', '.join(SORT_KEYS)}.",
            )
    for direction in dirs:
        if direction not in ("asc", "desc"):
            raise HttpError(400, f"Invalid sort_dir {direction!r}: expected 'asc' or 'desc'.")
    if len(dirs) == 1:
        dirs = dirs * len(keys)
    if len(dirs) != len(keys):
        raise HttpError(400, "Give one sort_dir, or one per sort_key.")
    return _Ordering(keys, dirs)


def list_page(
    records: Iterable[dict[str, Any]],
    query: MultiMapping[str],
    *,
    tenant: str,
    member_status: MemberLookup,
    default_limit: int,
    max_limit: int,
    path: str = "/v2/images",
) -> Page:
    """One page of the images a tenant may list, as the query asks."""
    # Parsed in this order so that, of several bad parameters, the same one is reported.
    limit = _int_param(query, "limit")
    limit = default_limit if limit is None else min(limit, max_limit)
    filters = _Filters.parse(query)
    ordering = _ordering(query)

    all_records = list(records)
    marker_id = query.get("marker")
    marker: Mapping[str, Any] | None = None
    if marker_id is not None:
        marker = next((r for r in all_records if r["id"] == marker_id), None)
        if marker is None or not sees(marker, tenant, member_status):
            raise HttpError(400, f"Invalid marker: image {marker_id!r} was not found.")
    selected = [r for r in all_records if filters.wants(r, tenant, member_status)]
    if marker is not None:
        selected = [r for r in selected if ordering.compare(r, marker) > 0]
    selected.sort(key=functools.cmp_to_key(ordering.compare))
    page = selected[:limit]

    params = [(k, v) for k, v in query.items() if k != "marker"]
    first = f"{path}?{urlencode(params)}" if params else path
    next_link = None
    if page and len(page) == limit:
        next_link = f"{path}?{urlencode([*params, ('marker', page[-1]['id'])])}"
    return Page(images=page, first=first, next=next_link)
