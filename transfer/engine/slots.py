"""Transfer slots: how many source images move bytes at once (the job's ``transfers``); and
the lanes of one target's work: its bytes in a slot, its metadata steps among the checkers.

A source image (all its targets together) takes a slot when it starts and holds it while any of
its targets is inside an attempt.  While every one of them waits for its next attempt (the
job's ``retry_backoff``), the image gives the slot back, so another image uses the link; it
takes a slot again before the next attempt.  The images under way, waiting ones included, are
bounded too (``UNDER_WAY_PER_SLOT`` per slot), so a cloud that fails everything does not open
every image of the job at once.

A slot moves bytes and nothing else (``Lanes``): a target's create, the GET that verifies its
bytes and its metadata steps (tags, properties, share, accept, protect) are requests that move
none, so they run among the job's ``checkers``, and a slot is held only for the upload (and the
download feeding it).  On one host an image takes its slot only when its first target is
ready to upload (``image(ahead=True)``): meanwhile its creates are made, and at most
``transfers`` images get ready that way ahead of the slots, so a stop leaves at most that many
more images in flight.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

#: Images under way (moving bytes or waiting to retry) per transfer slot, at most.
UNDER_WAY_PER_SLOT = 4


class TransferSlots:
    """The job's ``transfers`` slots, and the bound on the images under way."""

    def __init__(self, transfers: int) -> None:
        self._slots = anyio.Semaphore(transfers)
        self._under_way = anyio.Semaphore(UNDER_WAY_PER_SLOT * transfers)
        self._ahead = anyio.Semaphore(transfers)  # images getting ready without a slot

    @asynccontextmanager
    async def image(self, *, ahead: bool = False) -> AsyncIterator[ImageSlot]:
        """One more image under way, with a slot from the start (waiting until one is free),
        or with ``ahead`` one taken only when a target first needs it (waiting until fewer
        than ``transfers`` images are getting ready that way); given back at the end."""
        async with self._under_way:
            if ahead:
                await self._ahead.acquire()
                slot = ImageSlot(self._slots, ahead=self._ahead)
            else:
                await self._slots.acquire()
                slot = ImageSlot(self._slots)
            try:
                yield slot
            finally:
                slot.close()


class ImageSlot:
    """One image's hold on a slot: held while any of its targets is inside an attempt."""

    def __init__(self, slots: anyio.Semaphore, *, ahead: anyio.Semaphore | None = None) -> None:
        self._slots = slots
        #: Held from the start, unless the image gets ready ahead (``_ahead`` is then its
        #: place among those, given back once it first takes a slot).
        self._held = ahead is None
        self._ahead = ahead
        self._inside = 0
        self._lock = anyio.Lock()

    def target(self) -> TargetSlot:
        """The part of one of the image's targets."""
        return TargetSlot(self)

    async def admit(self) -> None:
        """One more target inside an attempt: take the slot again if it was given back."""
        async with self._lock:
            if not self._held:
                await self._slots.acquire()
                self._held = True
                self._ready()
            self._inside += 1

    def dismiss(self) -> None:
        """One target fewer inside an attempt: the last one out gives the slot back."""
        self._inside -= 1
        if self._inside == 0:
            self.close()

    def close(self) -> None:
        self._ready()
        if self._held:
            self._held = False
            self._slots.release()

    def _ready(self) -> None:
        """No longer getting ready ahead (it has a slot, or it is over)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.release()


class TargetSlot:
    """One target of an image, inside an attempt or not."""

    def __init__(self, image: ImageSlot) -> None:
        self._image = image
        self._inside = False

    async def enter(self) -> None:
        if not self._inside:
            await self._image.admit()
            self._inside = True

    def leave(self) -> None:
        if self._inside:
            self._inside = False
            self._image.dismiss()


class Lanes:
    """Where one target's work runs: its upload in its image's transfer slot (if it has one),
    every other step holding one of the job's ``checkers``; never both at once."""

    def __init__(
        self,
        slot: TargetSlot | None,
        checkers: anyio.CapacityLimiter | None,
        *,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self._slot = slot
        self._checkers = checkers
        #: Called once, when the work first gets a lane (the target is then under way).
        self._on_start = on_start

    _checking = False

    async def data(self) -> None:
        """Before a step that moves bytes: out of the checkers, into the transfer slot."""
        self._leave_checkers()
        if self._slot is not None:
            await self._slot.enter()
        self._started()

    async def metadata(self) -> None:
        """Before a step that moves no bytes: out of the transfer slot, into the checkers."""
        if self._slot is not None:
            self._slot.leave()
        if self._checkers is not None and not self._checking:
            await self._checkers.acquire_on_behalf_of(self)
            self._checking = True
        self._started()

    def _started(self) -> None:
        if self._on_start is not None:
            on_start, self._on_start = self._on_start, None
            on_start()

    def leave(self) -> None:
        """Out of both (between attempts, and at the end)."""
        if self._slot is not None:
            self._slot.leave()
        self._leave_checkers()

    def _leave_checkers(self) -> None:
        if self._checking and self._checkers is not None:
            self._checking = False
            self._checkers.release_on_behalf_of(self)
