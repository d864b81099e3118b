"""The steps that make one target image an exact, verified copy of one source image.

``create -> upload -> verify`` move and prove the bytes (here); ``tags -> properties -> share ->
accept -> protect`` bring the metadata in line (``transfer.engine.metadata_steps``).  Every step
starts from the target's state as the server last told it (the create's answer, the one GET
after the upload, each change's answer) and sends only what is missing, so that running it
again after a crash at any line converges instead of duplicating, with few requests (a new
private copy: create, upload, GET):

- the target's id is deterministic (``metadata.target_image_id``) and the create sends it (with
  the properties and tags): a create that reached the server before a crash makes the next
  one answer 409, and the target found by a GET on that id is adopted from its status; a 409
  whose id answers 404 is a deleted image's (Glance keeps the id reserved): next generation;
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
pipeline's (``transfer.engine.pipeline``); what a step learns for the journal (a new
generation, the upload's hashes) it leaves in ``ItemState.pending``, and the pipeline writes it
in the same transaction as the step's end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, cast

import anyio

from transfer.config.settings import JobConfig, MismatchAction
from transfer.engine.metadata_steps import (
    QUARANTINE_TAG,
    ItemState,
    MetadataSteps,
    StepResult,
    add_tag_quietly,
)
from transfer.engine.verification import verify_copy
from transfer.errors import (
    BadRequest,
    Conflict,
    IntegrityError,
    NotFound,
    RequestTooLarge,
    TargetDiscarded,
    TargetSettled,
    Unsettled,
)
from transfer.journal import Journal
from transfer.journal.records import Step
from transfer.metadata import MARKER_KEYS, MARKER_SOURCE_ID, target_image_id
from transfer.models import GONE_STATUSES, Image, PatchOp
from transfer.streams import TokenBucket, counted, throttled

__all__ = ["QUARANTINE_TAG", "ItemState", "StepResult", "Steps", "add_tag_quietly"]

#: Statuses of a half-made target that cannot take an upload: replaced by a new generation.
BROKEN_STATUSES = frozenset({"saving", "killed", "deactivated", "uploading", "importing"})
#: Statuses Glance leaves by itself (an upload or import in progress): waited out first.
TRANSITIONAL_STATUSES = frozenset({"saving", "uploading", "importing"})
#: Generations past the journaled one that a takeover also looks for (ids a holder that lost
#: the item may have moved on to).
ORPHAN_GENERATIONS_AHEAD = 3


class Steps(MetadataSteps):
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
        st.created = st.fresh = False
        st.members = None
        # The upload's bytes are opened while the create is in flight (one round trip less).
        st.feed.prefetch(st.target.key)
        try:
            st.image = await self._post(st)
        except Conflict:
            # The id is taken: by our own create that reached the server (adopt it and go on
            # from its status), or by a deleted image whose id Glance keeps reserved (404 on
            # GET: move to the next generation).
            try:
                image = await st.target.client.get_image(st.target_id)
            except NotFound:
                await self.next_generation(st, f"id {st.target_id} is reserved by a deleted image")
            return await self._adopt(st, image)
        st.created = True
        st.log.info("created target", target_id=st.target_id)
        return {"target_id": st.target_id, "adopted": False}

    async def _post(self, st: ItemState) -> Image:
        """Create the target with its deterministic id, properties and tags in one request; a
        create refused (400, 413) is sent again without tags: the tags step then adds them one
        by one, and reports those the target refuses."""
        client = st.target.client
        fields = dict(st.desired.create_fields)
        fields["id"] = st.target_id
        tags = sorted(st.desired.tags) if self.job.copy.tags else []
        if not tags:
            return await client.create_image(fields)
        try:
            return await client.create_image({**fields, "tags": tags})
        except (BadRequest, RequestTooLarge) as exc:
            # A tag the target refuses (Glance's 400 may be cut short before it names the
            # tag), or too many of them (413, its image_tag_quota): the create without tags
            # goes through; a refusal of anything else comes back the same from it.
            st.log.info("create refused: trying it without the tags", error=str(exc))
            return await client.create_image(fields)

    async def _adopt(self, st: ItemState, image: Image) -> dict[str, Any]:
        """Go on with a target found under the pair's id, from its status."""
        if image.status in TRANSITIONAL_STATUSES:
            image = await self.settle(st, image)  # Glance finishes or undoes it by itself
        if image.status in GONE_STATUSES:
            await self.next_generation(st, f"target {image.id} is {image.status}")
        if image.status in BROKEN_STATUSES:
            await self.discard(st, image, f"left {image.status} by an interrupted run")
        st.image = image
        st.fresh = True
        return {"target_id": image.id, "adopted": True, "status": image.status}

    async def next_generation(self, st: ItemState, reason: str) -> NoReturn:
        st.generation += 1
        st.target_id = self.target_id(st.source, st.target.key, st.generation)
        st.image = None
        st.log.info("new target generation", generation=st.generation, reason=reason)
        # Journaled with the step's end, which the pipeline writes as this propagates.
        st.pending.update(generation=st.generation, target_id=st.target_id, bytes_done=0)
        raise TargetDiscarded(reason)

    async def discard(self, st: ItemState, image: Image, reason: str) -> NoReturn:
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
        # The feed's context is held in this task: an upload that fails leaves it at once, so
        # a shared download never waits for a consumer that is gone.
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
        st.fresh = False
        st.result.md5 = st.hashes.get("md5")
        st.result.sha512 = st.hashes.get("sha512")
        # Journaled with the step's end (one transaction with the next step's start).
        st.pending.update(bytes_done=st.result.bytes, md5=st.result.md5, sha512=st.result.sha512)
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
        image = st.image
        if image is None or not st.fresh:
            # The one GET after the upload: it proves the bytes, and the metadata steps start
            # from it.  (A target adopted holding the bytes was read just before.)
            image = st.image = await st.target.client.get_image(st.target_id)
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
