"""The steps that make one target image an exact, verified copy of one source image.

For one (source image, target) pair the pipeline runs ``create -> upload -> verify -> tags ->
properties -> share -> accept -> protect``.  Every step first looks at the target's real state and
does only what is missing, so running the pipeline again after a crash at any line converges
instead of duplicating:

- the target's id is deterministic (``metadata.target_image_id``): a create that reached the
  server before a crash is found by a GET on that id and adopted, or answers 409;
- a target left ``queued`` is uploaded again; one left ``saving``/``killed``, or whose bytes do not
  match the source, is deleted and replaced by a new generation (Glance keeps deleted ids
  reserved, so the next generation gets a new deterministic id);
- the journal records each step's start and end before the next step begins.

The upload reads its bytes from a ``Feed`` (``transfer.engine.feeds``): the source directly, a
download shared with the image's other targets, or a spool file.  The feed checks the bytes on
the way; the pipeline only throttles, counts and sends them.

Nothing here knows about HTTP: it speaks to ``ImageClient`` objects.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from transfer.cloud.client import ImageClient
from transfer.config.settings import JobConfig
from transfer.engine.feeds import DirectFeed, Feed, in_flight_algorithms
from transfer.engine.planning import Target
from transfer.engine.results import ItemResult
from transfer.engine.verification import verify_copy
from transfer.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    IntegrityError,
    NotFound,
    TransferError,
)
from transfer.journal import Journal
from transfer.metadata import (
    MARKER_KEYS,
    DesiredTarget,
    build_patch,
    target_image_id,
)
from transfer.models import Image, PatchOp
from transfer.planner import Code, PlanItem
from transfer.streams import TokenBucket, counted, throttled

log = structlog.get_logger("transfer.engine.pipeline")

#: How many fresh generations one attempt may make before giving up (each needs a delete).
MAX_GENERATIONS_PER_ATTEMPT = 3
#: Statuses of a half-made target that cannot take an upload: replaced by a new generation.
BROKEN_STATUSES = frozenset({"saving", "killed", "deactivated", "uploading", "importing"})
GONE_STATUSES = frozenset({"deleted", "pending_delete"})
QUARANTINE_TAG = "image-transfer-quarantine"


class _Restart(Exception):
    """The target was discarded: start the item again with a new generation."""


class Pipeline:
    """Runs the steps for the items of one job run."""

    def __init__(
        self,
        *,
        job: JobConfig,
        journal: Journal,
        run_id: int,
        source: ImageClient,
        source_region: str,
        bucket: TokenBucket | None = None,
        on_bytes: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.job = job
        self.journal = journal
        self.run_id = run_id
        self.source = source
        self.source_region = source_region
        self.bucket = bucket
        self.on_bytes = on_bytes

    async def run_item(
        self,
        item: PlanItem,
        target: Target,
        desired: DesiredTarget,
        feed: Feed | None = None,
    ) -> ItemResult:
        """Bring one target in line with its source, with the job's per-image retry budget.

        ``feed`` gives the bytes (default: a download of the source for every attempt); the
        feed learns, after each attempt, that this target's first chance is over.
        """
        assert item.source is not None
        src = item.source
        if feed is None:
            feed = DirectFeed(self.source, src, in_flight_algorithms(self.job.verify, src))
        result = ItemResult(
            code=item.code,
            target_key=target.key,
            source_id=src.id,
            source_name=src.name or src.id,
        )
        started = time.monotonic()
        bound = log.bind(job=self.job.name, image=src.id, target=target.key)
        entry = await self.journal.ensure_entry(
            self.job.name,
            src.id,
            target.key,
            source_name=src.name or "",
            source_checksum=src.checksum,
            source_size=src.size,
            target_id=item.target_id,
            generation=item.generation,
        )
        state = _ItemState(
            source=src,
            target=target,
            desired=desired,
            target_id=entry.target_id or self._target_id(src, target.key, entry.generation),
            generation=entry.generation,
            result=result,
            log=bound,
            feed=feed,
        )
        if entry.target_id is None:
            await self.journal.update_entry(
                self.job.name, src.id, target.key, target_id=state.target_id
            )
        data_needed = item.code in (Code.COPY, Code.REPAIR)
        last_error: BaseException | None = None
        for attempt in range(1, self.job.retries + 1):
            result.attempts = attempt
            await self.journal.update_entry(
                self.job.name,
                src.id,
                target.key,
                state="running",
                attempts=entry.attempts + attempt,
            )
            try:
                try:
                    await self._attempt(state, data_needed=data_needed)
                finally:
                    feed.release(target.key)
            except TransferError as exc:
                last_error = exc
                retry = exc.image_retryable
                bound.warning("attempt failed", attempt=attempt, error=str(exc), will_retry=retry)
                await self.journal.update_entry(
                    self.job.name, src.id, target.key, last_error=str(exc)
                )
                if not retry or exc.fatal:
                    break
                # A retry re-examines the target from scratch, bytes included.
                data_needed = True
                continue
            else:
                last_error = None
                break
        result.seconds = time.monotonic() - started
        result.target_id = state.target_id
        if last_error is None:
            result.outcome = {
                Code.COPY: "copied",
                Code.REPAIR: "repaired",
                Code.UPDATE: "updated",
            }.get(item.code, "in-sync")
            if result.outcome == "updated" and state.uploaded:
                result.outcome = "repaired"
            await self.journal.update_entry(
                self.job.name,
                src.id,
                target.key,
                state="done",
                last_error=None,
                target_id=state.target_id,
                generation=state.generation,
            )
            bound.info("done", outcome=result.outcome, bytes=result.bytes)
        else:
            result.outcome = "failed"
            result.error = str(last_error)
            result.retryable = isinstance(last_error, TransferError) and last_error.image_retryable
            await self.journal.update_entry(
                self.job.name, src.id, target.key, state="failed", last_error=str(last_error)
            )
            await self._remove_empty_target(state)
            bound.error("failed", error=str(last_error))
        return result

    async def _remove_empty_target(self, st: _ItemState) -> None:
        """Delete a target that never got data, so a failed image leaves no empty ``queued``
        image in the user's tenant; the next run finds its id gone and uses a new generation."""
        client = st.target.client
        try:
            image = await client.get_image(st.target_id)
            if image.status != "queued" or image.protected:
                return
            await client.delete_image(image.id)
        except NotFound:
            return
        except TransferError as exc:
            st.result.warnings.append(f"empty target {st.target_id} left in place: {exc}")
            return
        st.result.warnings.append(f"deleted empty target {st.target_id}")
        st.log.info("deleted empty target", target_id=st.target_id)

    # -- one attempt -------------------------------------------------------------------------

    async def _attempt(self, st: _ItemState, *, data_needed: bool) -> None:
        generations = 0
        while True:
            try:
                if data_needed:
                    await self._step(st, "create", self._create)
                    await self._step(st, "upload", self._upload)
                    await self._step(st, "verify", self._verify)
                else:
                    st.image = await st.target.client.get_image(st.target_id)
                    if st.image.status != "active":
                        # The target changed under us since planning: copy it properly.
                        data_needed = True
                        continue
                await self._step(st, "tags", self._tags)
                await self._step(st, "properties", self._properties)
                await self._step(st, "share", self._share)
                await self._step(st, "accept", self._accept)
                await self._step(st, "protect", self._protect)
                return
            except _Restart as restart:
                generations += 1
                if generations > MAX_GENERATIONS_PER_ATTEMPT:
                    raise IntegrityError(
                        f"gave up after {generations} replacement targets; the last: {restart}"
                    ) from None
                data_needed = True

    async def _step(self, st: _ItemState, step: str, func: Callable[[_ItemState], Any]) -> None:
        src = st.source
        await self.journal.step_started(self.job.name, src.id, st.target.key, step, self.run_id)
        try:
            detail = await func(st)
        except _Restart:
            await self.journal.step_finished(
                self.job.name,
                src.id,
                st.target.key,
                step,
                self.run_id,
                ok=False,
                error="target discarded; a new generation follows",
            )
            raise
        except TransferError as exc:
            await self.journal.step_finished(
                self.job.name, src.id, st.target.key, step, self.run_id, ok=False, error=str(exc)
            )
            raise
        await self.journal.step_finished(
            self.job.name,
            src.id,
            st.target.key,
            step,
            self.run_id,
            ok=True,
            detail=detail if isinstance(detail, dict) else None,
        )

    # -- create ----------------------------------------------------------------------------

    async def _create(self, st: _ItemState) -> dict[str, Any]:
        client = st.target.client
        try:
            image: Image | None = await client.get_image(st.target_id)
        except NotFound:
            image = None
        if image is not None:
            if image.status in GONE_STATUSES:
                await self._next_generation(st, f"target {image.id} is {image.status}")
            if image.status in BROKEN_STATUSES:
                await self._discard(st, image, f"left {image.status} by an interrupted run")
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
                await self._next_generation(st, f"id {st.target_id} is reserved by a deleted image")
            return {"target_id": st.target_id, "adopted": True}
        st.log.info("created target", target_id=st.target_id)
        return {"target_id": st.target_id, "adopted": False}

    async def _next_generation(self, st: _ItemState, reason: str) -> None:
        st.generation += 1
        st.target_id = self._target_id(st.source, st.target.key, st.generation)
        st.image = None
        st.log.info("new target generation", generation=st.generation, reason=reason)
        await self.journal.update_entry(
            self.job.name,
            st.source.id,
            st.target.key,
            generation=st.generation,
            target_id=st.target_id,
            bytes_done=0,
        )
        raise _Restart(reason)

    async def _discard(self, st: _ItemState, image: Image, reason: str) -> None:
        """Remove (or quarantine) a target that cannot become a good copy, then restart."""
        client = st.target.client
        if self.job.on_mismatch == "quarantine" and image.status == "active":
            ops: list[PatchOp] = [
                {"op": "add", "path": "/name", "value": f"{image.name or image.id} (quarantined)"}
            ]
            ops += [{"op": "remove", "path": f"/{key}"} for key in MARKER_KEYS if key in image.raw]
            if image.protected:
                ops.insert(0, {"op": "replace", "path": "/protected", "value": False})
            await client.update_image(image.id, ops)
            await _add_tag_quietly(client, image.id, QUARANTINE_TAG, st)
            st.result.warnings.append(f"quarantined target {image.id}: {reason}")
        else:
            if image.protected:
                await client.update_image(
                    image.id, [{"op": "replace", "path": "/protected", "value": False}]
                )
            with contextlib.suppress(NotFound):
                await client.delete_image(image.id)
            st.result.warnings.append(f"deleted target {image.id}: {reason}")
        st.log.warning("discarded target", target_id=image.id, reason=reason)
        await self._next_generation(st, reason)

    # -- upload ----------------------------------------------------------------------------

    async def _upload(self, st: _ItemState) -> dict[str, Any]:
        image = st.image
        assert image is not None
        src = st.source
        if image.status == "active":
            if image.checksum == src.checksum and image.size == src.size:
                st.feed.release(st.target.key)  # no need to hold a shared download up
                return {"skipped": "target already holds the bytes"}
            await self._discard(st, image, "target bytes differ from the source")
        if image.status != "queued":
            await self._discard(st, image, f"target is {image.status}, cannot take data")
        async with st.feed.open(st.target.key) as body:
            chunks: AsyncIterator[bytes] = body.chunks
            if self.bucket is not None:
                chunks = throttled(chunks, self.bucket)
            chunks = counted(chunks, self._counter(st))
            await st.target.client.upload_image(st.target_id, chunks, size=body.size)
        st.hashes = await body.digests()
        st.uploaded = True
        st.result.md5 = st.hashes.get("md5")
        st.result.sha512 = st.hashes.get("sha512")
        await self.journal.update_entry(
            self.job.name,
            src.id,
            st.target.key,
            bytes_done=st.result.bytes,
            md5=st.result.md5,
            sha512=st.result.sha512,
        )
        return {"bytes": st.result.bytes, "from": body.origin, **st.hashes}

    def _counter(self, st: _ItemState) -> Callable[[int], None]:
        on_bytes = self.on_bytes
        source_id, target_key = st.source.id, st.target.key

        def count(n: int) -> None:
            st.result.bytes += n
            if on_bytes is not None:
                on_bytes(source_id, target_key, n)

        return count

    # -- verify ----------------------------------------------------------------------------

    async def _verify(self, st: _ItemState) -> dict[str, Any]:
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
                with contextlib.suppress(_Restart):
                    await self._discard(st, image, f"verification failed: {reason}")
            raise IntegrityError(f"verification failed: {reason}")
        return {"checksum": image.checksum, "os_hash_value": image.os_hash_value}

    # -- metadata --------------------------------------------------------------------------

    async def _tags(self, st: _ItemState) -> dict[str, Any] | None:
        if not self.job.copy.tags:
            return None
        image = st.image
        assert image is not None
        client = st.target.client
        have = set(image.tags)
        added, removed = [], []
        for tag in sorted(st.desired.tags - have):
            if await _add_tag_quietly(client, image.id, tag, st):
                added.append(tag)
        for tag in sorted(have - st.desired.tags - {QUARANTINE_TAG}):
            with contextlib.suppress(NotFound):
                await client.remove_tag(image.id, tag)
            removed.append(tag)
        if added or removed:
            st.image = await client.get_image(image.id)
        return {"added": added, "removed": removed}

    async def _properties(self, st: _ItemState) -> dict[str, Any] | None:
        image = st.image
        assert image is not None
        ops = build_patch(image, st.desired, self.job.copy)
        if not ops:
            return None
        if image.protected:
            ops = [{"op": "replace", "path": "/protected", "value": False}, *ops]
        st.image = await st.target.client.update_image(image.id, ops)
        return {"ops": len(ops)}

    async def _share(self, st: _ItemState) -> dict[str, Any] | None:
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

    async def _accept(self, st: _ItemState) -> dict[str, Any] | None:
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

    async def _protect(self, st: _ItemState) -> dict[str, Any] | None:
        image = st.image
        assert image is not None
        if not self.job.copy.protected or image.protected == st.desired.protected:
            return None
        st.image = await st.target.client.update_image(
            image.id, [{"op": "replace", "path": "/protected", "value": st.desired.protected}]
        )
        return {"protected": st.desired.protected}

    def _target_id(self, src: Image, target_key: str, generation: int) -> str:
        return target_image_id(
            self.job.name, self.source_region, src.id, src.checksum, target_key, generation
        )


@dataclass
class _ItemState:
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


async def _add_tag_quietly(client: ImageClient, image_id: str, tag: str, st: _ItemState) -> bool:
    """Add a tag; a tag the API refuses is reported on the item, not fatal."""
    try:
        await client.add_tag(image_id, tag)
    except (BadRequest, Forbidden) as exc:
        st.result.warnings.append(f"tag {tag!r} refused by the target: {exc.server_message}")
        return False
    return True
