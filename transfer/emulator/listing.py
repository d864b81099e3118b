"""``GET /v2/images`` as pure code: which images a tenant sees in a list, filters, sort order,
markers and the ``first``/``next`` links.  No I/O; the region service feeds it records.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from multidict import MultiMapping

from transfer.emulator.responses import HttpError

MEMBER_STATUS_FILTERS = frozenset({"accepted", "pending", "rejected", "all"})
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


# member_of(image_id) -> the caller's member status for that image, or None.
MemberLookup = Callable[[str], str | None]


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
    limit = _int_param(query, "limit")
    limit = default_limit if limit is None else min(limit, max_limit)
    size_min = _int_param(query, "size_min")
    size_max = _int_param(query, "size_max")
    visibility = query.get("visibility")
    if visibility is not None and visibility not in VISIBILITY_FILTERS:
        raise HttpError(400, f"Invalid visibility filter {visibility!r}.")
    wanted_member = query.get("member_status", "accepted")
    if wanted_member not in MEMBER_STATUS_FILTERS:
        raise HttpError(400, f"Invalid member_status {wanted_member!r}.")
    # Glance does not check the status filter: an unknown status simply matches nothing.
    status = query.get("status")
    hidden_raw = query.get("os_hidden", "false").lower()
    if hidden_raw not in ("true", "false"):
        raise HttpError(400, "Invalid os_hidden filter: expected true or false.")
    want_hidden = hidden_raw == "true"
    tags = query.getall("tag", [])
    property_filters = [(k, v) for k, v in query.items() if k not in _CONTROL]
    ordering = _ordering(query)

    def listed(record: Mapping[str, Any]) -> bool:
        """Whether this tenant's listing includes the record, before any filter."""
        vis = str(record["visibility"])
        own = bool(record["owner"] == tenant)
        shared_in = False
        if vis == "shared" and not own:
            mine = member_status(record["id"])
            shared_in = mine is not None and wanted_member in ("all", mine)
        if visibility is None:
            return own or vis == "public" or shared_in
        if visibility == "all":
            return own or vis in ("public", "community") or shared_in
        if visibility == "shared":
            return vis == "shared" and (own or shared_in)
        if visibility == "private":
            return vis == "private" and own
        return vis == visibility  # public, community

    def wanted(record: Mapping[str, Any]) -> bool:
        if not listed(record):
            return False
        if bool(record.get("os_hidden")) != want_hidden:
            return False
        if status is not None and record["status"] != status:
            return False
        size = record.get("size")
        if size_min is not None and (size is None or size < size_min):
            return False
        if size_max is not None and (size is None or size > size_max):
            return False
        record_tags = record.get("tags") or []
        if any(tag not in record_tags for tag in tags):
            return False
        return all(_matches_property(record.get(k), v) for k, v in property_filters)

    all_records = list(records)
    marker_id = query.get("marker")
    marker: Mapping[str, Any] | None = None
    if marker_id is not None:
        marker = next((r for r in all_records if r["id"] == marker_id), None)
        if marker is None or not _visible(marker, tenant, member_status):
            raise HttpError(400, f"Invalid marker: image {marker_id!r} was not found.")
    selected = [r for r in all_records if wanted(r)]
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


def _visible(record: Mapping[str, Any], tenant: str, member_status: MemberLookup) -> bool:
    if record["owner"] == tenant or record["visibility"] in ("public", "community"):
        return True
    return record["visibility"] == "shared" and member_status(record["id"]) is not None
