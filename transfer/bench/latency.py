"""The latency of single calls, one at a time: a token, a listing (one image), a show, a
create (target only: the source is never written to), and the time to the first byte of a
download (source).  Each call is made once unmeasured (so the connection is open, as it is for
a run's calls), then ``calls`` times measured; the figures are the p50 and p95 of those.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing

from transfer.bench.figures import Latency
from transfer.bench.ledger import Ledger, Side
from transfer.bench.moves import synthetic_fields
from transfer.cloud.auth import KeystoneAuth, tls_context
from transfer.cloud.transport import HttpTransport
from transfer.config.settings import Credentials, HttpSettings, identity_version
from transfer.models import Image

#: Measured calls per figure.
CALLS = 7


async def _timed(
    side: str, call: str, once: Callable[[], Awaitable[object]], calls: int
) -> Latency:
    await once()
    figure = Latency(side, call)
    for _ in range(calls):
        started = time.perf_counter()
        await once()
        figure.samples.append(time.perf_counter() - started)
    return figure


async def token_latency(
    role: str, creds: Credentials, settings: HttpSettings, calls: int = CALLS
) -> Latency:
    """A new token, each time (on a connection of the bench's own, kept open)."""
    if creds.token is not None:
        return Latency(role, "token", skipped="a pre-issued token")
    transport = HttpTransport(settings, ssl_context=tls_context(creds), cloud=creds.name)
    await transport.open()
    current = creds

    async def once() -> None:
        nonlocal current
        auth = KeystoneAuth(current, transport)
        try:
            await auth.issued()
        finally:
            auth.close()
        if identity_version(current.identity_url) is None and auth.version is not None:
            # The root was asked which version it speaks: ask no more, as a run asks once.
            url = f"{current.identity_url.rstrip('/')}/{auth.version}"
            current = dataclasses.replace(current, identity_url=url)

    try:
        return await _timed(role, "token", once, calls)
    finally:
        await transport.close()


async def _list_one(side: Side) -> None:
    async with aclosing(side.client.list_images(page_size=1, owner=side.tenant)) as images:
        async for _ in images:
            break


async def source_latencies(side: Side, pool: Sequence[Image], calls: int = CALLS) -> list[Latency]:
    """List, show and the first byte of a download, on the source (nothing is written)."""
    image = min(pool, key=lambda i: i.size or 0)

    async def show() -> None:
        await side.client.get_image(image.id)

    async def first_byte() -> None:
        # The last byte only: the answer's first byte is timed, and the connection is reused.
        offset = max((image.size or 1) - 1, 0)
        async with (
            side.client.download_image(image.id, offset=offset) as body,
            aclosing(body.chunks()) as chunks,
        ):
            async for _ in chunks:
                break

    return [
        await _timed(side.role, "list", lambda: _list_one(side), calls),
        await _timed(side.role, "show", show, calls),
        await _timed(side.role, "first-byte", first_byte, calls),
    ]


async def target_latencies(
    side: Side, ledger: Ledger, run_id: str, calls: int = CALLS
) -> list[Latency]:
    """List, create and show on the target (the images created are empty and deleted)."""
    made: list[str] = []

    async def create() -> None:
        image = await side.client.create_image(synthetic_fields(run_id, f"latency-{len(made)}"))
        ledger.add(side, image.id)
        made.append(image.id)

    async def show() -> None:
        await side.client.get_image(made[-1])

    try:
        figures = [
            await _timed(side.role, "list", lambda: _list_one(side), calls),
            await _timed(side.role, "create", create, calls),
            await _timed(side.role, "show", show, calls),
        ]
    finally:
        for image_id in made:
            await ledger.delete(side, image_id)
    return figures
