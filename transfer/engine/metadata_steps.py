"""The state of one (source, target) pair while its steps run, and the steps that bring a
verified target's metadata in line: ``tags -> properties -> share -> accept -> protect``.

Each starts from the target as the server last showed it (``ItemState.image``: the GET that
verified the bytes, or a change's answer) and sends only what differs: no tag call when the
tags went in with the create, a PATCH only for fields that differ, member calls only for a copy
that is shared, and no listing of the members of a target this attempt created (it has none).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from transfer.cloud.client import ImageClient
from transfer.config.settings import JobConfig
from transfer.engine.feeds import Feed
from transfer.engine.listing import Target
from transfer.engine.results import ItemResult
from transfer.errors import BadRequest, Conflict, Forbidden, NotFound
from transfer.metadata import DesiredTarget, build_patch
from transfer.models import Image

QUARANTINE_TAG = "image-transfer-quarantine"

#: What a step returns: the detail the journal keeps with it (None: nothing worth keeping).
StepResult = dict[str, Any] | None


@dataclass
class ItemState:
    """One (source, target) pair while its steps run: what the steps learn, they write here."""

    source: Image
    target: Target
    desired: DesiredTarget
    target_id: str
    generation: int
    result: ItemResult
    log: Any
    feed: Feed
    image: Image | None = None
    hashes: dict[str, str] = field(default_factory=dict)
    uploaded: bool = False
    #: This attempt's create made the target (so it has no members yet).
    created: bool = False
    #: ``image`` was read from the server after the target's data last changed.
    fresh: bool = False
    #: Member -> status of the target, as the share step found and left them (None: unknown).
    members: dict[str, str] | None = None
    #: The epoch of the claim the item is worked under (None: a local journal, no claims);
    #: every journal write for the item carries it.
    fence: int | None = None
    #: Entry fields for the journal, written with the item's next journal write (the end of
    #: the step that set them, or the next step's start): before any further request.
    pending: dict[str, Any] = field(default_factory=dict)
    #: The step whose start the previous step's end already journaled (one transaction).
    started: str | None = None


class MetadataSteps:
    """The metadata steps of a job's run (``Steps`` has them, and the data steps)."""

    job: JobConfig

    async def tags(self, st: ItemState) -> dict[str, Any] | None:
        if not self.job.copy.tags:
            return None
        image = st.image
        assert image is not None
        client = st.target.client
        have = set(image.tags)
        added, removed = [], []
        for tag in sorted(st.desired.tags - have):
            if await add_tag_quietly(client, image.id, tag, st):
                added.append(tag)
        for tag in sorted(have - st.desired.tags - {QUARANTINE_TAG}):
            with contextlib.suppress(NotFound):
                await client.remove_tag(image.id, tag)
            removed.append(tag)
        if added or removed:
            st.image = await client.get_image(image.id)
        return {"added": added, "removed": removed}

    async def properties(self, st: ItemState) -> dict[str, Any] | None:
        image = st.image
        assert image is not None
        ops = build_patch(image, st.desired, self.job.copy)
        if not ops:
            return None
        if image.protected:
            ops = [{"op": "replace", "path": "/protected", "value": False}, *ops]
        st.image = await st.target.client.update_image(image.id, ops)
        return {"ops": len(ops)}

    async def share(self, st: ItemState) -> dict[str, Any] | None:
        image = st.image
        assert image is not None
        client = st.target.client
        desired = st.desired
        st.members = None
        if not self.job.copy.visibility and not desired.members:
            return None
        want_visibility = desired.visibility
        if desired.members and want_visibility != "shared":
            want_visibility = "shared"
        if image.visibility != want_visibility and image.visibility in ("private", "shared"):
            st.image = image = await client.update_image(
                image.id, [{"op": "replace", "path": "/visibility", "value": want_visibility}]
            )
        if image.visibility != "shared":
            return {"visibility": image.visibility}
        current: dict[str, str] = {}
        if not st.created:  # a target this attempt created has no members yet
            current = {m.member_id: m.status for m in await client.list_members(image.id)}
        added = sorted(desired.members - current.keys())
        removed = sorted(current.keys() - desired.members) if self.job.copy.members else []
        for member in added:
            with contextlib.suppress(Conflict):  # there already: its status stays unknown
                current[member] = (await client.add_member(image.id, member)).status
        for member in removed:
            with contextlib.suppress(NotFound):
                await client.delete_member(image.id, member)
            current.pop(member, None)
        st.members = current
        return {"visibility": image.visibility, "added": added, "removed": removed}

    async def accept(self, st: ItemState) -> dict[str, Any] | None:
        if not self.job.copy.accept:
            return None
        image = st.image
        assert image is not None
        known = st.members or {}
        accepted = []
        for member in sorted(st.desired.members):
            member_client = st.target.member_clients.get(member)
            if member_client is None:
                continue
            status = known.get(member)
            if status is None:
                status = (await member_client.get_member(image.id, member)).status
            if status != "accepted":
                await member_client.update_member(image.id, member, "accepted")
                accepted.append(member)
        return {"accepted": accepted} if accepted else None

    async def protect(self, st: ItemState) -> dict[str, Any] | None:
        image = st.image
        assert image is not None
        if not self.job.copy.protected or image.protected == st.desired.protected:
            return None
        st.image = await st.target.client.update_image(
            image.id, [{"op": "replace", "path": "/protected", "value": st.desired.protected}]
        )
        return {"protected": st.desired.protected}


async def add_tag_quietly(client: ImageClient, image_id: str, tag: str, st: ItemState) -> bool:
    """Add a tag; a tag the API refuses is reported on the item, not fatal."""
    try:
        await client.add_tag(image_id, tag)
    except (BadRequest, Forbidden) as exc:
        st.result.warnings.append(f"tag {tag!r} refused by the target: {exc.server_message}")
        return False
    return True
