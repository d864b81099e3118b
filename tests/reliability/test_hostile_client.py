"""The same hostile answers as ``test_hostile_engine``, one client call each: which error each
becomes decides whether the engine retries it, so the class is part of the contract."""

from __future__ import annotations

import hashlib

import pytest

from tests.client.test_hostile_servers import FAST
from tests.reliability.hostile import (
    DOWNLOADS,
    IDENTITIES,
    LISTINGS,
    SOURCE_PASSWORD,
    TENANT,
    TOKEN,
    Foreign,
    HostileCloud,
    SourceImage,
    fill,
)
from transfer.cloud.sessions import CloudSession
from transfer.config.settings import Credentials, Secret
from transfer.errors import (
    AuthError,
    CatalogError,
    Forbidden,
    NotFound,
    ProtocolError,
    ServerError,
    TransferError,
    TransportError,
    Unauthorized,
)

LISTING_CLASSES: dict[str, type[TransferError] | None] = {
    "ok": None,
    "invalid-json": ProtocolError,
    "html-200": ProtocolError,
    "token-in-html": ProtocolError,
    "no-images-key": ProtocolError,
    "json-array": ProtocolError,
    "image-without-id": ProtocolError,
    "image-without-status": ProtocolError,
    "size-not-a-number": ProtocolError,
    "tags-a-string": ProtocolError,
    "next-to-another-host": ProtocolError,
    "next-loops": ProtocolError,
    "next-a-number": ProtocolError,
    "redirect-to-another-host": ProtocolError,
    "huge-error-body": Forbidden,
    "token-refused": Unauthorized,
    "truncated": TransportError,
    "503-huge-body": ServerError,
    "hang-up": TransportError,
    "members-not-json": ProtocolError,  # from list_members of its shared image
}
#: None: the client cannot tell; the engine's length and checksum checks must catch it.
DOWNLOAD_CLASSES: dict[str, type[TransferError] | None] = {
    "ok": None,
    "truncated": TransportError,
    "short-content-length": None,
    "longer-than-declared": None,
    "content-md5-mismatch": None,
    "content-md5-unreadable": ProtocolError,
    "corrupt-bytes": None,
    "html-200": None,
    "redirect-to-another-host": ProtocolError,
    "huge-403-echoing-the-token": Forbidden,
    "204-for-a-sized-image": None,
    "206-from-the-wrong-offset": ProtocolError,
    "404-gone-meanwhile": NotFound,
}
IDENTITY_CLASSES: dict[str, type[TransferError]] = {
    "token-without-expires": AuthError,
    "token-already-expired": AuthError,
    "catalog-without-the-region": CatalogError,
    "no-catalog": CatalogError,
    "identity-html-200": AuthError,
    "identity-redirect": AuthError,
    "identity-refuses-and-quotes": AuthError,
}


def test_every_hostile_answer_is_in_a_table() -> None:
    assert set(LISTING_CLASSES) == set(LISTINGS)
    assert set(DOWNLOAD_CLASSES) == set(DOWNLOADS)
    assert set(IDENTITY_CLASSES) == set(IDENTITIES)


def assert_clean(error: BaseException | None) -> None:
    """No secret in the error, its cause or its repr; and short enough to read."""
    while error is not None:
        text = f"{error} {error!r}"
        assert TOKEN not in text and SOURCE_PASSWORD not in text, text[:300]
        assert len(str(error)) < 1000, len(str(error))
        error = error.__cause__ or error.__context__


@pytest.mark.parametrize("case", sorted(LISTING_CLASSES))
async def test_a_listing_answer_becomes_the_right_error(case: str) -> None:
    expected = LISTING_CLASSES[case]
    async with Foreign().running() as foreign, HostileCloud(foreign).running() as cloud:
        credentials = Credentials(
            name="hostile", token=Secret(TOKEN), endpoints={"KR1": cloud.endpoint(case)}
        )
        async with CloudSession(credentials, settings=FAST) as session:
            client = await session.image_client("KR1")
            caught: BaseException | None = None
            try:
                images = [image async for image in client.list_images()]
                if case == "members-not-json":
                    shared = [i for i in images if i.visibility == "shared"]
                    await client.list_members(shared[0].id)
            except TransferError as exc:
                caught = exc
    assert type(caught) is expected if expected else caught is None, repr(caught)
    assert_clean(caught)
    assert foreign.recorder.requests == []
    # What was sent home carried the token; nothing went anywhere else.
    assert all(h.get("X-Auth-Token") == TOKEN for _, _, h in cloud.recorder.requests)


@pytest.mark.parametrize("case", sorted(DOWNLOAD_CLASSES))
async def test_a_download_answer_becomes_the_right_error(case: str) -> None:
    image = SourceImage("d1", fill(200_000, 3), download=case)
    async with Foreign().running() as foreign, HostileCloud(foreign, [image]).running() as cloud:
        credentials = Credentials(
            name="hostile", token=Secret(TOKEN), endpoints={"KR1": cloud.endpoint("images")}
        )
        async with CloudSession(credentials, settings=FAST) as session:
            client = await session.image_client("KR1")
            caught: BaseException | None = None
            body, declared = b"", None
            try:
                async with client.download_image(image.id) as download:
                    body = b"".join([chunk async for chunk in download.chunks()])
                    declared = download.content_md5
            except TransferError as exc:
                caught = exc
    expected = DOWNLOAD_CLASSES[case]
    assert type(caught) is expected if expected else caught is None, repr(caught)
    assert_clean(caught)
    assert foreign.recorder.requests == []
    md5 = hashlib.md5(image.data).hexdigest()
    honest = body == image.data and declared in (None, md5)
    # The client hands over what it got; where it cannot tell, the bytes or the declared MD5
    # differ from what the listing declared, for the engine's checks to catch.
    assert honest if case == "ok" else (caught is not None or not honest), case


@pytest.mark.parametrize("case", sorted(IDENTITY_CLASSES))
async def test_an_identity_answer_becomes_the_right_error(case: str) -> None:
    async with Foreign().running() as foreign, HostileCloud(foreign).running() as cloud:
        credentials = Credentials(
            name="hostile",
            identity_url=f"{cloud.endpoint(case)}/v2.0",
            tenant_id=TENANT,
            username="op",
            password=Secret(SOURCE_PASSWORD),
        )
        async with CloudSession(credentials, settings=FAST) as session:
            with pytest.raises(TransferError) as caught:
                await session.image_client("KR1")
    assert type(caught.value) is IDENTITY_CLASSES[case], repr(caught.value)
    assert caught.value.fatal
    assert_clean(caught.value)
    assert foreign.recorder.requests == []  # the password never left for the other host
    assert [path for _, path, _ in cloud.recorder.requests] == [f"/{case}/v2.0/tokens"]
