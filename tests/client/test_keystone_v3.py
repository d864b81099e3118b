"""Keystone v3 tokens against the emulator's v3 identity service, over real sockets: a project
by name within its domain, version discovery at a bare root, refresh ahead of expiry, and the
messages of a refusal (naming the cloud and the host, never the secret)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import anyio
import pytest

from tests.client.conftest import FAST
from transfer.cloud.sessions import CloudSession
from transfer.config.settings import Credentials, HttpSettings, Secret
from transfer.emulator import Emulator
from transfer.errors import AuthError, ConfigError, ConnectError


@pytest.fixture
async def both() -> AsyncIterator[Emulator]:
    """An identity service that speaks v2.0 and v3, with short-lived tokens."""
    async with Emulator(
        regions=("RegionOne",), identity_versions=("v2.0", "v3"), token_ttl=1.0
    ) as emulator:
        yield emulator


def v3_credentials(emu: Emulator, url: str | None = None) -> Credentials:
    src = emu.tenants[0]
    return Credentials(
        name="private",
        identity_url=url or emu.identity_v3_url,
        tenant_name=src.name,
        project_domain_name="Default",
        username=src.username,
        user_domain_name="Default",
        password=Secret(src.password),
    )


def tokens_issued(emu: Emulator) -> int:
    return int(emu.identity_counters()["requests"].get("token", 0))


async def test_a_project_by_name_in_its_domain_gets_a_scoped_token_and_catalog(
    both: Emulator,
) -> None:
    async with CloudSession(v3_credentials(both), settings=FAST) as cloud:
        assert await cloud.tenant_id() == both.tenants[0].tenant_id
        assert await cloud.regions() == ["REGIONONE"]
        client = await cloud.image_client("RegionOne")
        assert client.endpoint == both.regions["RegionOne"]
        [image async for image in client.list_images()]


async def test_a_v3_token_is_renewed_before_it_expires(both: Emulator) -> None:
    async with CloudSession(v3_credentials(both), settings=FAST) as cloud:
        client = await cloud.image_client("RegionOne")
        [image async for image in client.list_images()]
        assert tokens_issued(both) == 1
        # Past the refresh point (a tenth of the 1 s lifetime before expiry), not yet expired:
        # the old token would still be accepted, so only a renewal explains a second token.
        await anyio.sleep(0.92)
        [image async for image in client.list_images()]
        assert tokens_issued(both) == 2


async def test_a_bare_root_is_asked_which_version_the_credentials_can_use(
    both: Emulator,
) -> None:
    src = both.tenants[0]
    v2_shaped = Credentials(
        name="nhn-like",
        identity_url=both.identity_root,
        tenant_id=src.tenant_id,
        username=src.username,
        password=Secret(src.password),
    )
    for creds, version in ((v2_shaped, "v2.0"), (v3_credentials(both, both.identity_root), "v3")):
        async with CloudSession(creds, settings=FAST) as cloud:
            assert await cloud.tenant_id() == src.tenant_id
            assert cloud.identity_version == version


async def test_refusals_name_the_cloud_and_host_and_never_the_secret(both: Emulator) -> None:
    wrong = "not-the-password-51f3"
    creds = replace(v3_credentials(both), password=Secret(wrong))
    async with CloudSession(creds, settings=FAST) as cloud:
        with pytest.raises(AuthError) as caught:
            await cloud.tenant_id()
    assert str(caught.value) == (
        "the credentials for cloud 'private' were refused by 127.0.0.1: user "
        f"'{creds.username}' for tenant '{creds.tenant_name}': the user name, the password or "
        "the tenant is wrong (the identity service does not say which)"
    )
    assert wrong not in repr(caught.value.__cause__)

    unknown = replace(v3_credentials(both), tenant_name="no-such-project")
    async with CloudSession(unknown, settings=FAST) as cloud:
        with pytest.raises(AuthError, match=r"cloud 'private' were refused by 127\.0\.0\.1"):
            await cloud.tenant_id()

    app_on_v2 = Credentials(
        name="appcred",
        identity_url=both.identity_url,
        application_credential_id="abc",
        application_credential_secret=Secret("s3cr3t-value"),
    )
    async with CloudSession(app_on_v2, settings=FAST) as cloud:
        with pytest.raises(AuthError, match=r"cloud 'appcred': Keystone v2\.0 .* password only"):
            await cloud.tenant_id()


async def test_only_v2_offered_to_v3_credentials_says_so() -> None:
    async with Emulator(regions=("KR1",)) as nhn:
        creds = v3_credentials(nhn, nhn.identity_root)
        async with CloudSession(creds, settings=FAST) as cloud:
            with pytest.raises(AuthError) as caught:
                await cloud.tenant_id()
    assert str(caught.value) == (
        "cloud 'private': the identity service 127.0.0.1 offers v2.0, and the credentials "
        "need Keystone v3"
    )


async def test_an_unreachable_identity_service_is_named_with_its_cloud() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    creds = Credentials(
        name="private",
        identity_url=f"http://127.0.0.1:{port}/v3",
        tenant_id="p",
        username="u",
        user_domain_id="default",
        password=Secret("pw-never-shown"),
    )
    quick = HttpSettings(attempts=2, backoff_base=0.01, backoff_cap=0.01, retry_total=1.0)
    async with CloudSession(creds, settings=quick) as cloud:
        with pytest.raises(ConnectError) as caught:
            await cloud.tenant_id()
    assert str(caught.value).startswith(
        "cloud 'private': the identity service 127.0.0.1 cannot be reached: "
    )
    assert "pw-never-shown" not in str(caught.value)


def test_an_identity_url_with_another_path_is_refused_up_front() -> None:
    creds = Credentials(
        name="odd",
        identity_url="https://keystone.example/identity",
        tenant_id="p",
        username="u",
        password=Secret("x"),
    )
    with pytest.raises(ConfigError, match=r"cloud 'odd': identity_url: expected .* /v3 or /v2\.0"):
        CloudSession(creds)
