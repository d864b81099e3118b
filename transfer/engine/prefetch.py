"""Opening a target's bytes ahead of its upload, so that the source's round trip is hidden
behind the create's.

A copy's create and its download are independent requests: the create needs nothing from the
source's body, the upload needs both.  Sent one after the other they cost two round trips
before the first byte moves; ``Prefetcher`` opens a consumer's ``Body`` (a download, a seat on
a shared one, a spool being filled) as soon as its create starts, in a task of its own that
holds the body's context open until the upload has read it (or the attempt ended without
reading it: the body is then closed unread, a half-read download's connection dropped).  A copy
thus waits for the create, the upload and the GET that verifies, not for the download's answer
too.  (Sending the upload's request before the download's answer is not done: the upload's
body would then be opened inside the HTTP client's writer, which leaves a failed body unclosed,
and a shared download would wait for it.)

It wraps any ``Feed`` and is one: ``open`` hands over the prefetched body, or opens one as the
wrapped feed does; ``release`` abandons a body never opened by its consumer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from transfer.engine.feeds import Body, Feed


class _Unread(Exception):
    """Raised inside a held body's context when its consumer did not read it to the end."""


@dataclass
class _Held:
    """One consumer's body, opened ahead by the task that holds its context."""

    ready: anyio.Event = field(default_factory=anyio.Event)  # opened, or failed to
    finished: anyio.Event = field(default_factory=anyio.Event)  # the consumer is done with it
    closed: anyio.Event = field(default_factory=anyio.Event)  # its context is exited
    #: Cancelled when the body is abandoned before it is open (a spool still filling, a
    #: download still waiting for its answer): nobody waits for what nobody will read.
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    body: Body | None = None
    error: Exception | None = None
    read: bool = False  # the consumer left it without an error


@asynccontextmanager
async def prefetching(feed: Feed) -> AsyncIterator[Prefetcher]:
    """A ``Prefetcher`` of ``feed`` while in the block (it owns the tasks holding bodies)."""
    async with anyio.create_task_group() as tg:
        prefetcher = Prefetcher(feed, tg)
        try:
            yield prefetcher
        finally:
            prefetcher.abandon_all()


class Prefetcher:
    """A feed whose consumers' bodies can be opened ahead (``prefetch``)."""

    def __init__(self, feed: Feed, tg: TaskGroup) -> None:
        self.feed = feed
        self._tg = tg
        self._held: dict[str, _Held] = {}

    def prefetch(self, consumer: str) -> None:
        """Start opening ``consumer``'s body now (its next ``open`` takes it)."""
        if consumer in self._held:
            return
        held = self._held[consumer] = _Held()
        self._tg.start_soon(self._hold, consumer, held)

    async def _hold(self, consumer: str, held: _Held) -> None:
        try:
            with held.scope:
                async with self.feed.open(consumer) as body:
                    held.body = body
                    held.ready.set()
                    await held.finished.wait()
                    if not held.read:
                        raise _Unread  # the feed closes what was not read to the end
        except _Unread:
            pass
        except Exception as exc:  # the consumer's open raises it (never this task group)
            held.error = exc
        finally:
            held.ready.set()
            held.closed.set()

    @staticmethod
    def _done(held: _Held) -> None:
        """The consumer is done with ``held`` (read or not)."""
        if not held.ready.is_set():
            held.scope.cancel()
        held.finished.set()

    @asynccontextmanager
    async def open(self, consumer: str) -> AsyncIterator[Body]:
        held = self._held.pop(consumer, None)
        if held is None:
            async with self.feed.open(consumer) as body:
                yield body
            return
        try:
            await held.ready.wait()
            if held.error is not None:
                raise held.error
            assert held.body is not None
            yield held.body
            held.read = True
        finally:
            self._done(held)
            with anyio.CancelScope(shield=True):
                await held.closed.wait()
        if held.error is not None:  # closing the body failed after it was read
            raise held.error

    def release(self, consumer: str) -> None:
        held = self._held.pop(consumer, None)
        if held is not None:
            self._done(held)  # opened ahead and never read: closed unread
        self.feed.release(consumer)

    def abandon_all(self) -> None:
        """Close every body still waiting for its consumer (the image's work is over)."""
        for consumer in list(self._held):
            self.release(consumer)
