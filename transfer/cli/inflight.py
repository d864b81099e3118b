"""What a job command does while its first requests are in flight.

Python and aiohttp take most of a command's start; the token requests need neither the engine,
the journal nor the display.  So ``run``, ``plan`` and ``verify`` read the config, send the token
requests of the clouds their jobs use, and only then import the rest, in a worker thread while
the event loop sends and receives: over a real link the imports and the journal's opening take
the place of the round trip's wait instead of adding to it.

Up to then the command runs on plain asyncio: anyio's event-loop backend (about 20 ms to import)
and structlog (about 10 ms, ``transfer.log``) are among what the worker thread loads."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from collections.abc import Sequence

from transfer import log
from transfer.cloud.sessions import Clouds
from transfer.config.settings import JobConfig


def clouds_of(jobs: Sequence[JobConfig]) -> list[str]:
    """The cloud names ``jobs`` use, sources first, each once."""
    names = [job.source.cloud for job in jobs]
    names += [target.cloud for job in jobs for target in job.targets]
    return list(dict.fromkeys(names))


#: anyio's asyncio backend, which every job command needs after its first requests.  A private
#: module name: should a later anyio move it, the backend simply loads at its first use instead.
ANYIO_BACKEND = "anyio._backends._asyncio"


async def start_then_import(clouds: Clouds, jobs: Sequence[JobConfig], *modules: str) -> None:
    """Send the token requests of the clouds ``jobs`` use (``Clouds.prefetch_tokens``), then
    load structlog (set up as configured), anyio's asyncio backend and ``modules`` in a worker
    thread while the event loop carries the requests on.  The modules are in ``sys.modules`` when
    this returns: a plain ``import`` of them is then free."""
    await clouds.prefetch_tokens(clouds_of(jobs))
    await asyncio.sleep(0)  # the requests run up to their first wait

    def load() -> None:
        log.load()
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(ANYIO_BACKEND)
        for module in modules:
            importlib.import_module(module)

    # A short switch interval while the thread imports: the loop takes its turn at once
    # whenever a socket is ready, instead of after the default 5 ms.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        await asyncio.to_thread(load)
    finally:
        sys.setswitchinterval(interval)
