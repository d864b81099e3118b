"""What a bench created, and its deletion: the ids it made on each side (``Ledger``), and the
sweep that finds a run's images by their markers (``sweep``), which the end of every bench and
``bench --cleanup`` run.

Only images the tenant owns and a bench marked (``markers.is_bench_image``) are ever deleted;
a protected one is left and reported, since a bench never protects what it makes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio

from transfer.bench.markers import is_bench_image
from transfer.cloud.client import ImageClient
from transfer.errors import NotFound, TransferError

#: Deletions at once, per side.
_DELETERS = 8


@dataclass(frozen=True)
class Side:
    """One side of the bench: ``source`` or ``target``, its cloud/region and its client."""

    role: str
    key: str
    client: ImageClient
    tenant: str


@dataclass
class Swept:
    """What a deletion did on one side."""

    key: str
    deleted: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # id, why


class Ledger:
    """The ids a bench created, by side role, until they are deleted."""

    def __init__(self) -> None:
        self.created: dict[str, set[str]] = {}

    def add(self, side: Side, image_id: str) -> None:
        self.created.setdefault(side.role, set()).add(image_id)

    def forget(self, side: Side, image_id: str) -> None:
        self.created.get(side.role, set()).discard(image_id)

    async def delete(self, side: Side, image_id: str) -> None:
        """Delete one image this bench made (gone already is fine)."""
        with contextlib.suppress(NotFound):
            await side.client.delete_image(image_id)
        self.forget(side, image_id)


async def delete_all(side: Side, ids: Iterable[str], swept: Swept) -> None:
    """Delete ``ids`` on ``side``, a few at once, recording each outcome in ``swept``."""
    limiter = anyio.CapacityLimiter(_DELETERS)

    async def one(image_id: str) -> None:
        async with limiter:
            try:
                await side.client.delete_image(image_id)
            except NotFound:
                return
            except TransferError as exc:
                swept.failed.append((image_id, str(exc)))
                return
            swept.deleted.append(image_id)

    async with anyio.create_task_group() as tg:
        for image_id in dict.fromkeys(ids):
            tg.start_soon(one, image_id)


async def sweep(side: Side, run_id: str | None, ledger: Ledger | None = None) -> Swept:
    """Delete what a bench left on ``side``: the ledger's ids, then every image of the tenant
    that the markers name as this run's (``run_id``) or any run's (None)."""
    swept = Swept(side.key)
    known = sorted(ledger.created.get(side.role, set())) if ledger is not None else []
    await delete_all(side, known, swept)
    found: list[str] = []
    async for image in side.client.list_images(owner=side.tenant):
        if image.owner != side.tenant or not is_bench_image(image, run_id):
            continue
        if image.protected:
            swept.protected.append(image.id)
        elif image.id not in swept.deleted:
            found.append(image.id)
    await delete_all(side, found, swept)
    if ledger is not None:
        for image_id in swept.deleted:
            ledger.forget(side, image_id)
    return swept
