"""Where an upload's bytes come from: the source directly, one download shared by several
targets (fan-out), or a spool file; and which of them a job uses for an image.

A ``Feed`` hands each consumer (a target's pipeline, named by its target key) a ``Body`` for
one attempt: the image's chunks, checked on the way (a length that differs from the source's,
a ``Content-MD5`` that contradicts its checksum), and the digests of those bytes afterwards.

- ``DirectFeed``: one download per attempt (the behaviour without fan-out or spool).
- ``SharedFeed``: one download teed to every consumer through a bounded memory object stream
  each, so memory stays at a few chunks per target and the slowest target sets the pace.  The
  download starts once every expected consumer has joined or released its first chance (a
  target that already holds the bytes, or whose create failed, never holds the others up).  A
  consumer that fails or leaves is detached and never blocks the others; when none is left the
  source is no longer read.  A consumer's later attempts (a retry after its upload failed) get
  their bytes from the fallback feed: the spool, or the source again.
- ``SpoolFeed``: the source is downloaded once to a spool file (``transfer.engine.spool``) and every
  consumer, and every retry, reads the file.

``spool_reason`` is the job's ``spool`` setting applied to one image (what ``auto`` decides is
in its docstring), and ``FeedChooser`` builds the feed each source image gets in a run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Protocol

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from transfer.cloud.client import Download, ImageClient
from transfer.config.settings import SpoolMode, VerifyMode
from transfer.engine.spool import SpoolArea, SpoolFile
from transfer.errors import IntegrityError, ProtocolError, SpoolError, TransportError
from transfer.journal.records import EntryState, JournalEntry
from transfer.log import get_logger
from transfer.models import Image
from transfer.streams import Hasher, hashed, verify_length

log = get_logger("transfer.engine.feeds")

#: Chunks buffered per consumer of a shared download (besides the one being sent).
SHARED_BUFFER = 2
#: ``auto`` spools a fan-out across regions from this size on (see ``spool_reason``).
AUTO_FANOUT_MIN_SIZE = 1024 * 1024 * 1024


class Body:
    """The bytes one consumer reads in one attempt."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        size: int | None,
        origin: str,
        digests: Callable[[], Awaitable[dict[str, str]]],
    ) -> None:
        self.chunks = chunks
        self.size = size
        self.origin = origin  # source | shared | spool
        self._digests = digests

    async def digests(self) -> dict[str, str]:
        """Digests of every byte of the body (once it has been read to the end)."""
        return await self._digests()


class Feed(Protocol):
    def open(self, consumer: str) -> AbstractAsyncContextManager[Body]:
        """The bytes for one attempt of ``consumer``; use ``async with``."""
        ...

    def release(self, consumer: str) -> None:
        """``consumer``'s first attempt is over, whether it read the bytes or not."""
        ...

    def prefetch(self, consumer: str) -> None:
        """``consumer`` will open its bytes soon: a feed may open them now, ahead
        (``transfer.engine.prefetch``); the others ignore it."""
        ...


def in_flight_algorithms(verify: VerifyMode, source: Image) -> tuple[str, ...]:
    """Hash in flight only what no server proves (unless the job asks for full checks)."""
    if verify is VerifyMode.FULL:
        return ("md5", "sha512")
    if not source.checksum:
        return ("md5",)
    return ()


def checked_chunks(download: Download, source: Image) -> tuple[AsyncIterator[bytes], int | None]:
    """The body of a whole-image download, refusing what contradicts the source's record;
    and the number of bytes it will have."""
    if download.status == 204 and source.size:
        raise ProtocolError(f"source served no data for image {source.id} of size {source.size}")
    if download.content_md5 and source.checksum and download.content_md5 != source.checksum.lower():
        raise IntegrityError(
            f"source image {source.id}: Content-MD5 {download.content_md5} differs from its "
            f"checksum {source.checksum}"
        )
    size = source.size if source.size is not None else download.length
    return verify_length(download.chunks(), size), size


def _constant(digests: dict[str, str]) -> Callable[[], Awaitable[dict[str, str]]]:
    async def get() -> dict[str, str]:
        return dict(digests)

    return get


class DirectFeed:
    """A download of the source for every attempt of every consumer."""

    def __init__(self, client: ImageClient, source: Image, algorithms: Collection[str]) -> None:
        self.client = client
        self.source = source
        self.algorithms = tuple(algorithms)
        self.downloads = 0

    @asynccontextmanager
    async def open(self, consumer: str) -> AsyncIterator[Body]:
        hasher = Hasher(self.algorithms)
        self.downloads += 1
        async with self.client.download_image(self.source.id) as download:
            chunks, size = checked_chunks(download, self.source)
            if hasher.algorithms:
                chunks = hashed(chunks, hasher)
            yield Body(chunks, size=size, origin="source", digests=hasher.hexdigests)

    def release(self, consumer: str) -> None:
        pass

    def prefetch(self, consumer: str) -> None:
        pass


class SpoolFeed:
    """Every attempt reads the spool file, downloaded (or resumed) on the first ``open``.

    With a ``fallback`` (``spool = "auto"``), a spool that does not fit on the disk gives way
    to the fallback feed instead of failing the image.
    """

    def __init__(self, spool: SpoolFile, *, fallback: Feed | None = None) -> None:
        self.spool = spool
        self.fallback = fallback

    @asynccontextmanager
    async def open(self, consumer: str) -> AsyncIterator[Body]:
        try:
            digests = await self.spool.fill()
        except SpoolError as exc:
            if self.fallback is None:
                raise
            log.warning(
                "not spooling: streaming instead", image=self.spool.source.id, reason=str(exc)
            )
            async with self.fallback.open(consumer) as body:
                yield body
            return
        size = self.spool.size
        yield Body(
            verify_length(self.spool.chunks(), size),
            size=size,
            origin="spool",
            digests=_constant(digests),
        )

    def release(self, consumer: str) -> None:
        if self.fallback is not None:
            self.fallback.release(consumer)

    def prefetch(self, consumer: str) -> None:
        pass


class SharedFeed:
    """One download of the source teed to several consumers (use ``async with``: it owns the
    task that reads the source)."""

    def __init__(
        self,
        client: ImageClient,
        source: Image,
        algorithms: Collection[str],
        consumers: Iterable[str],
        *,
        fallback: Feed,
        buffer: int = SHARED_BUFFER,
    ) -> None:
        self.client = client
        self.source = source
        self.algorithms = tuple(algorithms)
        self.fallback = fallback
        self.buffer = buffer
        self.downloads = 0
        self._expected = set(consumers)
        self._joined: dict[str, MemoryObjectSendStream[bytes]] = {}
        self._go = anyio.Event()  # every expected consumer joined or released
        self._opened = anyio.Event()  # the source answered (or failed to)
        self._size: int | None = source.size
        self._error: Exception | None = None
        self._digests: dict[str, str] | None = None
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> SharedFeed:
        async with AsyncExitStack() as stack:
            tg: TaskGroup = await stack.enter_async_context(anyio.create_task_group())
            tg.start_soon(self._produce)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._expected.clear()
        self._go.set()  # nobody is coming any more: the producer returns if no one joined
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def open(self, consumer: str) -> AsyncIterator[Body]:
        if consumer not in self._expected or self._go.is_set():
            self.release(consumer)
            async with self.fallback.open(consumer) as body:
                yield body
            return
        send, receive = anyio.create_memory_object_stream[bytes](self.buffer)
        self._joined[consumer] = send
        self.release(consumer)
        with receive:  # closed on the way out: the producer detaches this consumer
            await self._opened.wait()
            if self._error is not None:
                raise self._error
            yield Body(
                self._consume(receive), size=self._size, origin="shared", digests=self._result
            )

    def release(self, consumer: str) -> None:
        self._expected.discard(consumer)
        if not self._expected:
            self._go.set()

    def prefetch(self, consumer: str) -> None:
        pass

    async def _result(self) -> dict[str, str]:
        if self._digests is None:
            raise TransportError(f"the shared download of image {self.source.id} did not finish")
        return dict(self._digests)

    async def _consume(self, receive: MemoryObjectReceiveStream[bytes]) -> AsyncIterator[bytes]:
        async for chunk in receive:
            yield chunk
        if self._error is not None:
            raise self._error
        if self._digests is None:
            raise TransportError(f"the shared download of image {self.source.id} stopped early")

    async def _produce(self) -> None:
        await self._go.wait()
        if not self._joined:
            self._opened.set()
            return
        try:
            await self._download()
        except Exception as exc:
            # Every consumer still attached fails its attempt with the source's error.
            self._error = exc
        finally:
            self._opened.set()
            for send in self._joined.values():
                send.close()
            self._joined.clear()

    async def _download(self) -> None:
        hasher = Hasher(self.algorithms)
        self.downloads += 1
        async with self.client.download_image(self.source.id) as download:
            chunks, self._size = checked_chunks(download, self.source)
            self._opened.set()
            async for chunk in chunks:
                await hasher.update(chunk)
                for consumer, send in list(self._joined.items()):
                    try:
                        await send.send(chunk)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        # That consumer failed or left: the others go on without it.
                        del self._joined[consumer]
                        send.close()
                if not self._joined:
                    log.info("every target left: the source is not read on", image=self.source.id)
                    return
            self._digests = await hasher.hexdigests()


def spool_reason(
    mode: SpoolMode,
    source: Image,
    *,
    target_regions: Collection[str],
    entries: Iterable[JournalEntry] = (),
    spooled_before: bool = False,
) -> str | None:
    """Why an image is spooled from its first attempt on (None: it is streamed first).

    ``always``: every image.  ``off``: none.  ``auto`` spools an image when
    - a spool of it is on this host already (its bytes were paid for: resume, never re-read);
    - an earlier run tried a target of it and did not finish (the journal counts attempts on an
      entry that is not done): the image or the link is trouble, and a spool makes every
      further attempt, in this run or the next, read the disk instead of the source;
    - it fans out to targets in more than one region and is at least ``AUTO_FANOUT_MIN_SIZE``:
      links to different regions run at different speeds, so a shared stream would hold the
      source connection at the slowest target's pace for a long time, and a failure of one
      target would cost a second read of a large image.

    Besides, under ``auto`` an image streamed first is spooled for its retries: once one
    target's attempt failed, the retry downloads to the spool (resumable with Range) and any
    further attempt reads the file.  ``auto`` never fails an image for lack of disk space: it
    streams instead.
    """
    if mode is SpoolMode.ALWAYS:
        return "spool = always"
    if mode is not SpoolMode.AUTO:
        return None
    if spooled_before:
        return "a spool of this image is on this host already"
    if any(e.state != EntryState.DONE and e.attempts > 0 for e in entries):
        return "an earlier run did not finish copying this image"
    if len(set(target_regions)) > 1 and (source.size or 0) >= AUTO_FANOUT_MIN_SIZE:
        return "a large image fanned out to several regions"
    return None


class FeedChooser:
    """Builds, for each source image of a run, the feed its targets' pipelines read."""

    def __init__(
        self,
        *,
        mode: SpoolMode,
        verify: VerifyMode,
        client: ImageClient,
        area: SpoolArea | None,
        entries: Mapping[tuple[str, str], JournalEntry],
    ) -> None:
        self.mode = mode if area is not None else SpoolMode.OFF
        self.verify = verify
        self.client = client
        self.area = area
        self.entries = entries

    @asynccontextmanager
    async def feed(self, source: Image, targets: Mapping[str, str]) -> AsyncIterator[Feed]:
        """The feed of ``source`` for ``targets`` (target key -> region) while in the block."""
        algorithms = in_flight_algorithms(self.verify, source)
        direct = DirectFeed(self.client, source, algorithms)
        async with AsyncExitStack() as stack:

            async def streamed(retries: Feed) -> Feed:
                """First attempts share one download (one attempt alone reads it directly)."""
                if len(targets) == 1 and retries is direct:
                    return direct
                shared = SharedFeed(self.client, source, algorithms, targets, fallback=retries)
                return await stack.enter_async_context(shared)

            if self.mode is SpoolMode.OFF or self.area is None:
                yield await streamed(direct)
                return
            records = await self.area.records()
            reason = spool_reason(
                self.mode,
                source,
                target_regions=list(targets.values()),
                entries=[e for (sid, _), e in self.entries.items() if sid == source.id],
                spooled_before=source.id in records,
            )
            spool = self.area.file(source, self.client, algorithms)
            if self.mode is SpoolMode.ALWAYS:
                yield SpoolFeed(spool)
            elif reason is not None:
                log.info("spooling", image=source.id, reason=reason)
                # auto: a spool that does not fit gives way to a stream.
                yield SpoolFeed(spool, fallback=await streamed(direct))
            else:
                # auto, nothing against streaming: stream first, spool for the retries.
                yield await streamed(SpoolFeed(spool, fallback=direct))
