"""The steps that make one target image an exact, verified copy of one source image.

``create -> upload -> verify`` move and prove the bytes; ``tags -> properties -> share ->
accept -> protect`` bring the metadata in line.  Every step first looks at the target's real
state and does only what is missing, so that running it again after a crash at any line
converges instead of duplicating:

- the target's id is deterministic (``metadata.target_image_id``): a create that reached the
  server before a crash is found by a GET on that id and adopted, or answers 409;
- a target in a status Glance leaves by itself (``saving``, ``uploading``, ``importing``), or a
  409 caused by one, is waited out first (``settle``, bounded by ``settle_timeout``), and the
  data steps run again from its settled status (``TargetSettled``);
- a target left ``queued`` is uploaded again; one left ``killed`` (or still ``saving`` after the
  wait), or whose bytes do not match the source, is deleted (or quarantined) and replaced by a
  new generation (Glance keeps deleted ids reserved, so the next generation gets a new
  deterministic id): ``TargetDiscarded``.

The upload reads its bytes from a ``Feed`` (``transfer.engine.feeds``): the source directly, a
download shared with the image's other targets, or a spool file.  The feed checks the bytes on
the way; the upload only throttles, counts and sends them.  Nothing here knows about HTTP: it
speaks to ``ImageClient`` objects.  The order of the steps and their journaling is the
pipeline's (``transfer.engine.pipeline``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import anyio

from transfer.cloud.client import ImageClient
from transfer.config.settings import JobConfig, MismatchAction
from transfer.engine.feeds import Feed
from transfer.engine.planning import Target
from transfer.engine.results import ItemResult
from transfer.engine.verification import verify_copy
from transfer.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    IntegrityError,
    NotFound,
    TargetDiscarded,
    TargetSettled,
    Unsettled,
)
from transfer.journal import Journal
from transfer.journal.records import Step
from transfer.metadata import (
    MARKER_KEYS,
    MARKER_SOURCE_ID,
    DesiredTarget,
    build_patch,
    target_image_id,
)
from transfer.models import GONE_STATUSES, Image, PatchOp
from transfer.streams import TokenBucket, counted, throttled

#: Statuses of a half-made target that cannot take an upload: replaced by a new generation.
BROKEN_STATUSES = frozenset({"saving", "killed", "deactivated", "uploading", "importing"})
#: Statuses Glance leaves by itself (an upload or import in progress): waited out first.
TRANSITIONAL_STATUSES = frozenset({"saving", "uploading", "importing"})
QUARANTINE_TAG = "image-transfer-quarantine"
#: Generations past the journaled one that a takeover also looks for (ids a holder that lost
#: the item may have moved on to).
ORPHAN_GENERATIONS_AHEAD = 3

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
    #: The epoch of the claim the item is worked under (None: a local journal, no claims);
    #: every journal write for the item carries it.
    fence: int | None = None


class Steps:
    """The steps of one job's run; each takes an ``ItemState`` and returns its ``StepResult``."""

    def __init__(
        self,
        *,
        job: JobConfig,
        journal: Journal,
        source_region: str,
        bucket: TokenBucket | None = None,
        on_bytes: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.job = job
        self.journal = journal
        self.source_region = source_region
        self.bucket = bucket
        self.on_bytes = on_bytes
        self._by_step: dict[Step, Callable[[ItemState], Awaitable[StepResult]]] = {
            Step.CREATE: self.create,
            Step.UPLOAD: self.upload,
            Step.VERIFY: self.verify,
            Step.TAGS: self.tags,
            Step.PROPERTIES: self.properties,
            Step.SHARE: self.share,
            Step.ACCEPT: self.accept,
            Step.PROTECT: self.protect,
        }

    def of(self, step: Step) -> Callable[[ItemState], Awaitable[StepResult]]:
        """The function of ``step``."""
        return self._by_step[step]

    # -- create ----------------------------------------------------------------------------

    async def create(self, st: ItemState) -> dict[str, Any]:
        client = st.target.client
        try:
            image: Image | None = await client.get_image(st.target_id)
        except NotFound:
            image = None
        if image is not None:
            if image.status in TRANSITIONAL_STATUSES:
                image = await self.settle(st, image)  # Glance finishes or undoes it by itself
            if image.status in GONE_STATUSES:
                await self.next_generation(st, f"target {image.id} is {image.status}")
            if image.status in BROKEN_STATUSES:
                await self.discard(st, image, f"left {image.status} by an interrupted run")
            st.image = image
            return {"target_id": image.id, "adopted": True, "status": image.status}
        fields = dict(st.desired.create_fields)
        fields["id"] = st.target_id
        try:
            st.image = await client.create_image(fields)
        except Conflict:
            # The id is taken: by our own create that reached the server (adopt it), or by a
            # deleted image whose id Glance keeps reserved (move to the next generation).
            try:
                st.image = await client.get_image(st.target_id)
            except NotFound:
                await self.next_generation(st, f"id {st.target_id} is reserved by a deleted image")
            return {"target_id": st.target_id, "adopted": True}
        st.log.info("created target", target_id=st.target_id)
        return {"target_id": st.target_id, "adopted": False}

    async def next_generation(self, st: ItemState, reason: str) -> None:
        st.generation += 1
        st.target_id = self.target_id(st.source, st.target.key, st.generation)
        st.image = None
        st.log.info("new target generation", generation=st.generation, reason=reason)
        await self.journal.update_entry(
            self.job.name,
            st.source.id,
            st.target.key,
            fence=st.fence,
            generation=st.generation,
            target_id=st.target_id,
            bytes_done=0,
        )
        raise TargetDiscarded(reason)

    async def discard(self, st: ItemState, image: Image, reason: str) -> None:
        """Remove (or quarantine) a target that cannot become a good copy, then restart."""
        client = st.target.client
        if self.job.on_mismatch is MismatchAction.QUARANTINE and image.status == "active":
            ops: list[PatchOp] = [
                {"op": "add", "path": "/name", "value": f"{image.name or image.id} (quarantined)"}
            ]
            ops += [{"op": "remove", "path": f"/{key}"} for key in MARKER_KEYS if key in image.raw]
            if image.protected:
                ops.insert(0, {"op": "replace", "path": "/protected", "value": False})
            await client.update_image(image.id, ops)
            await add_tag_quietly(client, image.id, QUARANTINE_TAG, st)
            st.result.warnings.append(f"quarantined target {image.id}: {reason}")
        else:
            if image.protected:
                await client.update_image(
                    image.id, [{"op": "replace", "path": "/protected", "value": False}]
                )
            try:
                await client.delete_image(image.id)
            except NotFound:
                pass
            except Conflict as exc:
                await self.wait_out(st, exc)
            st.result.warnings.append(f"deleted target {image.id}: {reason}")
        st.log.warning("discarded target", target_id=image.id, reason=reason)
        await self.next_generation(st, reason)

    # -- upload ----------------------------------------------------------------------------

    async def upload(self, st: ItemState) -> dict[str, Any]:
        image = st.image
        assert image is not None
        src = st.source
        if image.status == "active":
            if image.checksum == src.checksum and image.size == src.size:
                st.feed.release(st.target.key)  # no need to hold a shared download up
                return {"skipped": "target already holds the bytes"}
            await self.discard(st, image, "target bytes differ from the source")
        if image.status != "queued":
            await self.discard(st, image, f"target is {image.status}, cannot take data")
        async with st.feed.open(st.target.key) as body:
            chunks: AsyncIterator[bytes] = body.chunks
            if self.bucket is not None:
                chunks = throttled(chunks, self.bucket)
            chunks = counted(chunks, self._counter(st))
            try:
                await st.target.client.upload_image(st.target_id, chunks, size=body.size)
            except Conflict as exc:
                await self.wait_out(st, exc)
        st.hashes = await body.digests()
        st.uploaded = True
        st.result.md5 = st.hashes.get("md5")
        st.result.sha512 = st.hashes.get("sha512")
        await self.journal.update_entry(
            self.job.name,
            src.id,
            st.target.key,
            fence=st.fence,
            bytes_done=st.result.bytes,
            md5=st.result.md5,
            sha512=st.result.sha512,
        )
        return {"bytes": st.result.bytes, "from": body.origin, **st.hashes}

    def _counter(self, st: ItemState) -> Callable[[int], None]:
        on_bytes = self.on_bytes
        source_id, target_key = st.source.id, st.target.key

        def count(n: int) -> None:
            st.result.bytes += n
            if on_bytes is not None:
                on_bytes(source_id, target_key, n)

        return count

    # -- verify ----------------------------------------------------------------------------

    async def verify(self, st: ItemState) -> dict[str, Any]:
        src = st.source
        image = await st.target.client.get_image(st.target_id)
        st.image = image
        problems = verify_copy(src, image, st.hashes)
        if problems:
            reason = "; ".join(problems)
            st.log.error("verification failed", problems=problems)
            if image.status == "active" or image.status in BROKEN_STATUSES:
                # A bad copy costs one attempt of the image's retry budget: discard it (the
                # next attempt gets a new generation) and fail this attempt with the reason.
                with contextlib.suppress(TargetDiscarded):
                    await self.discard(st, image, f"verification failed: {reason}")
            raise IntegrityError(f"verification failed: {reason}")
        return {"checksum": image.checksum, "os_hash_value": image.os_hash_value}

    # -- metadata --------------------------------------------------------------------------

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
        current = {m.member_id for m in await client.list_members(image.id)}
        added = sorted(desired.members - current)
        removed = sorted(current - desired.members) if self.job.copy.members else []
        for member in added:
            with contextlib.suppress(Conflict):
                await client.add_member(image.id, member)
        for member in removed:
            with contextlib.suppress(NotFound):
                await client.delete_member(image.id, member)
        return {"visibility": image.visibility, "added": added, "removed": removed}

    async def accept(self, st: ItemState) -> dict[str, Any] | None:
        if not self.job.copy.accept:
            return None
        image = st.image
        assert image is not None
        accepted = []
        for member in sorted(st.desired.members):
            member_client = st.target.member_clients.get(member)
            if member_client is None:
                continue
            current = await member_client.get_member(image.id, member)
            if current.status != "accepted":
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

    # -- Glance's transitional statuses -----------------------------------------------------

    async def settle(self, st: ItemState, image: Image) -> Image:
        """Poll a target in a transitional status, with backoff, until Glance leaves it by
        itself (a dropped upload goes back to ``queued``, a finished one to ``active``, a failed
        one to ``killed``), for at most the job's ``settle_timeout``; the last image seen."""
        give_up = anyio.current_time() + self.job.settle_timeout
        delay = 0.25
        while image.status in TRANSITIONAL_STATUSES:
            left = give_up - anyio.current_time()
            if left <= 0:
                break
            st.log.info("waiting for the target to settle", target_id=image.id, status=image.status)
            await anyio.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)
            image = await st.target.client.get_image(image.id)
        return image

    async def wait_out(self, st: ItemState, refusal: Conflict) -> None:
        """A 409 for a target in a transitional status is not a failure: wait until it settles,
        then run the data steps again from there (``TargetSettled``).  Any other 409 stands."""
        try:
            image = await st.target.client.get_image(st.target_id)
        except NotFound:
            raise refusal from None
        if image.status not in TRANSITIONAL_STATUSES:
            raise refusal
        settled = await self.settle(st, image)
        if settled.status in TRANSITIONAL_STATUSES:
            raise Unsettled(
                f"target {image.id} stayed {settled.status} for {self.job.settle_timeout:g} s "
                f"(settle_timeout) after: {refusal}"
            ) from None
        st.log.info("target settled", target_id=image.id, status=settled.status)
        raise TargetSettled(f"{image.id} went from {image.status} to {settled.status}")

    # -- takeover --------------------------------------------------------------------------

    async def remove_orphans(self, st: ItemState) -> list[str]:
        """Delete this pair's targets other than the journaled one: images whose id is one of
        the pair's deterministic ids of another generation, so they are provably this job's
        copy of this source on this target, left by a holder that lost the item (the journal
        names one target per pair; anything else of the pair is a duplicate in the making)."""
        client = st.target.client
        ours = {
            self.target_id(st.source, st.target.key, generation)
            for generation in range(st.generation + ORPHAN_GENERATIONS_AHEAD + 1)
        } - {st.target_id}
        found = [
            image
            async for image in client.list_images(
                owner=st.target.tenant_id, **cast(dict[str, Any], {MARKER_SOURCE_ID: st.source.id})
            )
            if image.id in ours and image.status not in GONE_STATUSES
        ]
        for image in found:
            if image.protected:
                await client.update_image(
                    image.id, [{"op": "replace", "path": "/protected", "value": False}]
                )
            with contextlib.suppress(NotFound):
                await client.delete_image(image.id)
            st.result.warnings.append(f"deleted orphan target {image.id} ({image.status})")
            st.log.warning("deleted orphan target", target_id=image.id, status=image.status)
        return [image.id for image in found]

    def target_id(self, src: Image, target_key: str, generation: int) -> str:
        return target_image_id(
            self.job.name, self.source_region, src.id, src.checksum, target_key, generation
        )


async def add_tag_quietly(client: ImageClient, image_id: str, tag: str, st: ItemState) -> bool:
    """Add a tag; a tag the API refuses is reported on the item, not fatal."""
    try:
        await client.add_tag(image_id, tag)
    except (BadRequest, Forbidden) as exc:
        st.result.warnings.append(f"tag {tag!r} refused by the target: {exc.server_message}")
        return False
    return True
