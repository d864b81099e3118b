"""What planning lists: every target of a job at once, and its source, as a stream.

The targets must be listed whole before any source can be planned (a copy may already be
there).  The source need not: while the targets are listed, the source's first images are read
ahead, and the rest of its listing is read while a run already works the first images
(``Listings.sources``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import anyio

from transfer.cloud.client import ImageClient
from transfer.cloud.sessions import Clouds
from transfer.config.settings import Endpoint, JobConfig
from transfer.errors import only_error
from transfer.models import Image


@dataclass(frozen=True, kw_only=True)
class Target:
    """One target of a job: a tenant in a region, with the clients needed there."""

    key: str
    region: str
    client: ImageClient
    tenant_id: str
    #: member tenant id -> a client authenticated as that tenant in this region (to accept);
    #: filled in by planning as sources with members are planned.
    member_clients: Mapping[str, ImageClient] = field(default_factory=dict)


class Listings:
    """The listings of one job: its targets' (``list_targets``), then its source's
    (``sources``), each image once."""

    def __init__(self, job: JobConfig, source: ImageClient) -> None:
        self.job = job
        filters = cast(dict[str, Any], job.select.api_filters())
        self._source: AsyncGenerator[Image, None] = source.list_images(**filters)
        self._read_ahead: deque[Image] = deque()
        self._source_done = False
        self.targets: dict[str, Target] = {}
        self.images: dict[str, list[Image]] = {}  # by target key

    async def list_targets(self, clouds: Clouds) -> None:
        """Every target's listing, all at once; meanwhile the source's first images are read
        ahead (the request in flight when the targets are done is let finish)."""
        targets_done = anyio.Event()

        async def targets() -> None:
            try:
                async with anyio.create_task_group() as tg:
                    for endpoint in self.job.targets:
                        tg.start_soon(self._list_target, clouds, endpoint)
            finally:
                targets_done.set()

        async def read_ahead() -> None:
            while not targets_done.is_set():
                try:
                    image = await anext(self._source)
                except StopAsyncIteration:
                    self._source_done = True
                    return
                self._read_ahead.append(image)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(targets)
                tg.start_soon(read_ahead)
        except BaseExceptionGroup as group:
            raise only_error(group) from None
        self.targets = {e.key: self.targets[e.key] for e in self.job.targets}  # the config's order

    async def _list_target(self, clouds: Clouds, endpoint: Endpoint) -> None:
        session = await clouds.session(endpoint.cloud)
        client = await session.image_client(endpoint.region)
        tenant_id = await session.tenant_id()
        self.images[endpoint.key] = [i async for i in client.list_images(owner=tenant_id)]
        self.targets[endpoint.key] = Target(
            key=endpoint.key, region=endpoint.region, client=client, tenant_id=tenant_id
        )

    async def sources(self) -> AsyncIterator[Image]:
        """The selected source images: those read ahead, then the rest of the listing as its
        pages come in."""
        try:
            while self._read_ahead:
                image = self._read_ahead.popleft()
                if self.job.select.matches(image):
                    yield image
            if not self._source_done:
                async for image in self._source:
                    if self.job.select.matches(image):
                        yield image
                self._source_done = True
        finally:
            await self._source.aclose()
