"""The project's client against real Glance, where Glance's HTTP server behaves in ways the
emulator's does not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from interop.server import GlanceCloud
from transfer.cloud.client import ImageClient
from transfer.cloud.sessions import CloudSession
from transfer.config.settings import Credentials, HttpSettings, Secret
from transfer.errors import Conflict

FIELDS = {"os_type": "linux", "disk_format": "raw", "container_format": "bare"}
SIZE = 1 << 20


async def body() -> AsyncIterator[bytes]:
    yield b"x" * SIZE


@pytest.fixture
async def client(glance: GlanceCloud) -> AsyncIterator[ImageClient]:
    tenant = glance.tenant("src")
    credentials = Credentials(
        name="src",
        tenant_id=tenant.project_id,
        token=Secret(tenant.token),
        endpoints={"KR1": glance.regions["KR1"]},
    )
    async with CloudSession(credentials, settings=HttpSettings(backoff_base=0.01)) as cloud:
        yield await cloud.image_client("KR1")


async def test_a_create_after_a_refused_upload_still_goes_through(client: ImageClient) -> None:
    """Glance answers 409 to an upload into an active image before reading the body, says
    ``Connection: keep-alive``, then closes the connection.  The next request sent on that
    pooled connection finds it closed; a create (not retried once sent) must not fail for it."""
    image = await client.create_image({"name": "refused-upload", **FIELDS})
    await client.upload_image(image.id, body(), size=SIZE)
    with pytest.raises(Conflict):
        await client.upload_image(image.id, body(), size=SIZE)
    after = await client.create_image({"name": "after-refused-upload", **FIELDS})
    assert after.status == "queued"
