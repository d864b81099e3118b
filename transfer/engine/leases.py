"""The leases of a worker that claims items from a shared journal, as that worker keeps them.

- ``ItemLease``: one claimed item: the claim (its fencing token, and the target identity the
  plan fixed in the journal), and until when the lease certainly lasts by this host's clock
  (counted from before the claim or renewal was sent, so never later than the journal's own
  expiry).  While the item's pipeline runs, the lease guards every call that changes a cloud
  (``transfer.cloud.transport.CALL_GUARD``): a call starts only while the lease has at least
  ``call_seconds`` left, and is cut off after that long.  The item's work is cancelled a
  little before the lease could run out unless a renewal came, so a paused or cut-off worker
  stops by itself, an upload included, before another may take the item over.
- ``LeaseKeeper``: claims items, renews their leases in one statement every
  ``renew_seconds``, cancels the work on an item whose lease was lost, and releases them.

After a fencing failure (``LeaseLost``) nothing more is written for the item, in the journal
or in a cloud: the worker that holds it now continues from what was journaled.
"""

from __future__ import annotations

import anyio
import yarl

from transfer.config.settings import LeaseSettings
from transfer.errors import JournalError, LeaseLost
from transfer.journal import WorkQueue
from transfer.journal.records import Claim, ItemKey
from transfer.log import get_logger

log = get_logger("transfer.engine.leases")

#: How long before a lease could run out the work under it stops, at most.
_STOP_MARGIN = 1.0


class ItemLease:
    """One claimed item's lease, as this worker knows it (see the module docstring)."""

    def __init__(self, claim: Claim, *, granted: float, terms: LeaseSettings) -> None:
        self.claim = claim
        self.terms = terms
        self.expires = granted + terms.lease_seconds
        self.lost = False
        self._scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"ItemLease({self.claim.key!r}, epoch={self.claim.epoch})"

    @property
    def key(self) -> ItemKey:
        return self.claim.key

    @property
    def epoch(self) -> int:
        return self.claim.epoch

    @property
    def cutoff(self) -> float:
        """When the work on the item stops if no renewal comes first."""
        return self.expires - min(_STOP_MARGIN, self.terms.lease_seconds / 10)

    def watch(self, scope: anyio.CancelScope) -> None:
        """Cancel ``scope`` (the item's work) when the lease is lost or about to run out."""
        self._scope = scope
        if self.lost:
            scope.cancel()
        else:
            scope.deadline = self.cutoff

    def extend(self, granted: float) -> None:
        """A renewal sent at ``granted`` succeeded."""
        if self.lost:
            return
        self.expires = granted + self.terms.lease_seconds
        if self._scope is not None:
            self._scope.deadline = self.cutoff

    def lose(self) -> None:
        """Another worker holds the item now: stop at once."""
        self.lost = True
        if self._scope is not None:
            self._scope.cancel()

    def admit(self, method: str, url: yarl.URL, *, streamed: bool) -> float | None:
        """``CallGuard``: a call that changes a cloud starts only while the lease has time for
        it; a streamed upload is stopped by the item's cancellation instead."""
        left = self.expires - anyio.current_time()
        if self.lost or left < self.terms.call:
            self.lost = True
            raise LeaseLost(
                f"{method} {url.path} not sent: the lease on {self.key[0]} -> {self.key[1]} has "
                f"{max(left, 0):.1f} s left, less than the {self.terms.call:g} s a call may take"
            )
        return None if streamed else self.terms.call


class LeaseKeeper:
    """The items this worker holds under leases (see the module docstring)."""

    def __init__(self, queue: WorkQueue, *, job: str, worker: str, terms: LeaseSettings) -> None:
        self.queue = queue
        self.job = job
        self.worker = worker
        self.terms = terms
        self._held: dict[ItemKey, ItemLease] = {}
        #: When the journal last answered a claim, renewal or release (this host's clock),
        #: and why the last renewal failed.
        self.last_contact = anyio.current_time()
        self.renew_error: str | None = None

    @property
    def silence(self) -> float:
        """Seconds since the journal last answered."""
        return anyio.current_time() - self.last_contact

    @property
    def journal_silent(self) -> bool:
        """Whether the journal missed a renewal: calls would only pile up behind it."""
        return self.silence > 2 * self.terms.renew

    def get(self, key: ItemKey) -> ItemLease | None:
        return self._held.get(key)

    async def claim(self, limit: int, plan_id: int) -> list[ItemLease]:
        granted = anyio.current_time()
        claims = await self.queue.claim(
            self.job,
            self.worker,
            limit=limit,
            lease_seconds=self.terms.lease_seconds,
            plan_id=plan_id,
            max_takeovers=self.terms.max_takeovers,
        )
        self.last_contact = anyio.current_time()
        leases = [ItemLease(c, granted=granted, terms=self.terms) for c in claims]
        self._held.update((lease.key, lease) for lease in leases)
        return leases

    async def release(self, leases: list[ItemLease]) -> None:
        """Give the items back; a journal that cannot be reached lets the leases run out."""
        for lease in leases:
            self._held.pop(lease.key, None)
        if self.journal_silent:
            return  # the journal is out of reach: the leases run out by themselves
        try:
            await self.queue.release(self.job, self.worker, {le.key: le.epoch for le in leases})
        except JournalError as exc:
            log.warning("cannot release leases; they will run out", error=str(exc))
        else:
            self.last_contact = anyio.current_time()

    async def renew_forever(self) -> None:
        while True:
            await anyio.sleep(self.terms.renew)
            held = {key: lease for key, lease in self._held.items() if not lease.lost}
            if not held:
                continue
            granted = anyio.current_time()
            try:
                kept = await self.queue.renew(
                    self.job,
                    self.worker,
                    {key: lease.epoch for key, lease in held.items()},
                    self.terms.lease_seconds,
                )
            except JournalError as exc:
                # The work under a lease that cannot be renewed stops before it could run out.
                log.warning("cannot renew leases", job=self.job, error=str(exc))
                self.renew_error = str(exc)
                continue
            self.last_contact = anyio.current_time()
            self.renew_error = None
            for key, lease in held.items():
                if key in kept:
                    lease.extend(granted)
                else:
                    log.warning("lease lost", job=self.job, image=key[0], target=key[1])
                    lease.lose()
