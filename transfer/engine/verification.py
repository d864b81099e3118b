"""Whether a target is a verified copy of its source, and every difference of a planned job."""

from __future__ import annotations

from collections.abc import Mapping

from transfer.engine.planning import JobPlan
from transfer.engine.results import Difference
from transfer.models import Image
from transfer.planner import Code


def verify_copy(source: Image, target: Image, in_flight: Mapping[str, str]) -> list[str]:
    """Why ``target`` is not a byte-exact copy of ``source`` (empty when it is).

    Proof comes from the hashes both servers computed over the bytes they hold; hashes computed
    in flight add proof where a server gave none.
    """
    problems: list[str] = []
    if target.status != "active":
        problems.append(f"target status is {target.status}, expected active")
    if source.size is not None and target.size != source.size:
        problems.append(f"size {target.size} differs from the source's {source.size}")
    if target.checksum is None and "md5" not in in_flight:
        problems.append("the target reported no checksum and none was computed in flight")
    if source.checksum and target.checksum and target.checksum != source.checksum:
        problems.append(f"checksum {target.checksum} differs from the source's {source.checksum}")
    md5 = in_flight.get("md5")
    if md5 is not None:
        if source.checksum and md5 != source.checksum:
            problems.append(f"bytes read hash to md5 {md5}, the source declares {source.checksum}")
        if target.checksum and md5 != target.checksum:
            problems.append(f"bytes sent hash to md5 {md5}, the target stored {target.checksum}")
    if (
        source.os_hash_algo
        and source.os_hash_value
        and target.os_hash_algo == source.os_hash_algo
        and target.os_hash_value
        and target.os_hash_value != source.os_hash_value
    ):
        problems.append(f"{source.os_hash_algo} differs between source and target")
    sha512 = in_flight.get("sha512")
    if sha512 is not None:
        for side, image in (("source", source), ("target", target)):
            if image.os_hash_algo == "sha512" and image.os_hash_value not in (None, sha512):
                problems.append(f"bytes in flight hash to a sha512 the {side} does not declare")
    return problems


async def verify_plan(plan: JobPlan) -> list[Difference]:
    """Every difference between the selected sources and their copies.

    Planning already compared sizes, checksums, hashes, properties, tags, visibility,
    protection and (for shared copies) members with their acceptance: whatever is not in sync
    differs.  In-sync copies get the pipeline's own byte check once more.
    """
    differences: list[Difference] = []
    for item in plan.items:
        if item.source is None:
            continue
        if item.code is not Code.IN_SYNC:
            reasons = item.reasons or (f"plan code {item.code.value}",)
        else:
            assert item.target is not None
            reasons = tuple(verify_copy(item.source, item.target, {}))
        if reasons:
            name = item.source.name or item.source.id
            differences.append(Difference(item.source.id, name, item.target_key, reasons))
    differences.sort(key=lambda d: (d.source_name, d.source_id, d.target_key))
    return differences
