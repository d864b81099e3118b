"""``GET /v2/images``: what a tenant sees, filters, sort order and paging."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from tests.conftest import token
from tests.emulator.helpers import Api
from transfer.emulator import Emulator

SRC_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
DST_ID = "0f9e8d7c6b5a49382716a5b4c3d2e1f0"


async def _follow(api: Api, first: dict[str, Any]) -> list[list[str]]:
    """Every page's ids, following ``next`` links as a client would."""
    pages: list[list[str]] = []
    reply = await api.list(**first)
    while True:
        assert reply.status == 200, reply.body
        body = reply.json()
        pages.append([image["id"] for image in body["images"]])
        if "next" not in body:
            return pages
        assert body["next"].startswith("/v2/images?")  # relative, on the same endpoint
        reply = await api.call("GET", body["next"])


async def test_paging_follows_next_until_an_empty_page(emulator: Emulator, src: Api) -> None:
    ids = [await emulator.seed_image("KR1", SRC_ID, name=f"img-{i}") for i in range(6)]
    pages = await _follow(src, {"limit": 3})
    assert [len(p) for p in pages] == [3, 3, 0]  # a full last page is followed by an empty one
    assert sorted(pages[0] + pages[1]) == sorted(ids)


async def test_next_keeps_every_query_parameter(emulator: Emulator, src: Api) -> None:
    for i in range(5):
        await emulator.seed_image("KR1", SRC_ID, name=f"n{i}", tags=["a", "b"])
    reply = await src.call(
        "GET", "/v2/images?limit=2&sort_key=name&sort_dir=asc&tag=a&tag=b&os_type=linux"
    )
    body = reply.json()
    assert [i["name"] for i in body["images"]] == ["n0", "n1"]
    query = parse_qsl(urlsplit(body["next"]).query)
    assert query == [
        ("limit", "2"),
        ("sort_key", "name"),
        ("sort_dir", "asc"),
        ("tag", "a"),
        ("tag", "b"),
        ("os_type", "linux"),
        ("marker", body["images"][-1]["id"]),
    ]
    assert body["first"] == (
        "/v2/images?limit=2&sort_key=name&sort_dir=asc&tag=a&tag=b&os_type=linux"
    )
    assert body["schema"] == "/v2/schemas/images"


async def test_default_and_maximum_page_sizes(http: aiohttp.ClientSession) -> None:
    async with Emulator(default_page_size=4, max_page_size=6) as emu:
        for _ in range(10):
            await emu.seed_image("KR1", SRC_ID)
        api = Api(http, emu.regions["KR1"], await token(emu, "demo-src", http))
        assert len((await api.list()).json()["images"]) == 4
        clamped = (await api.list(limit=500)).json()
        assert len(clamped["images"]) == 6
        assert "limit=500" in clamped["next"]


async def test_seed_default_page_size_is_25(emulator: Emulator, src: Api) -> None:
    for _ in range(27):
        await emulator.seed_image("KR1", SRC_ID)
    assert len((await src.list()).json()["images"]) == 25


async def test_default_order_is_newest_first_with_id_as_tie_breaker(
    emulator: Emulator, src: Api
) -> None:
    for _ in range(8):
        await emulator.seed_image("KR1", SRC_ID)
    images = (await src.list()).json()["images"]
    keys = [(i["created_at"], i["id"]) for i in images]
    assert keys == sorted(keys, reverse=True)
    ascending = (await src.list(sort_dir="asc")).json()["images"]
    assert [i["id"] for i in ascending] == [i["id"] for i in reversed(images)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"sort_key": "size", "sort_dir": "asc"}, [1, 2, 3, 4, 5]),
        ({"sort": "size:asc"}, [1, 2, 3, 4, 5]),
        ({"sort": "size"}, [5, 4, 3, 2, 1]),
    ],
)
async def test_sort_by_size_across_pages(
    emulator: Emulator, src: Api, params: dict[str, str], expected: list[int]
) -> None:
    for size in (5, 1, 4, 2, 3):
        await emulator.seed_image("KR1", SRC_ID, data=b"x" * size)
    pages = await _follow(src, {**params, "limit": 2})
    sizes = [emulator.image_record("KR1", i)["size"] for page in pages for i in page]
    assert sizes == expected


@pytest.mark.parametrize(
    "params",
    [
        {"marker": "00000000-0000-0000-0000-000000000000"},
        {"limit": "many"},
        {"limit": "-1"},
        {"sort_dir": "sideways"},
        {"sort": "size:sideways"},
        {"sort": "size", "sort_key": "name"},
        {"visibility": "everyone"},
        {"member_status": "maybe"},
        {"size_min": "big"},
    ],
)
async def test_bad_list_parameters_are_400(src: Api, params: dict[str, str]) -> None:
    assert (await src.list(**params)).status == 400


async def test_an_unknown_status_filter_matches_nothing(src: Api) -> None:
    await src.create()
    reply = await src.list(status="happy")  # Glance does not check the value
    assert reply.status == 200 and reply.json()["images"] == []


async def test_marker_of_another_tenants_private_image_is_400(src: Api, dst: Api) -> None:
    hidden = (await dst.create())["id"]
    assert (await src.list(marker=hidden)).status == 400


async def test_default_listing_is_own_public_and_accepted_shares(
    emulator: Emulator, src: Api, dst: Api
) -> None:
    own = (await dst.create(visibility="private"))["id"]
    public = await emulator.seed_image("KR1", SRC_ID, data=b"p", visibility="public")
    foreign = (await src.create())["id"]
    pending = (await src.create(visibility="shared"))["id"]
    accepted = (await src.create(visibility="shared"))["id"]
    for image_id in (pending, accepted):
        await src.call("POST", f"/v2/images/{image_id}/members", json={"member": DST_ID})
    await dst.call("PUT", f"/v2/images/{accepted}/members/{DST_ID}", json={"status": "accepted"})
    deleted = (await dst.create())["id"]
    await dst.call("DELETE", f"/v2/images/{deleted}")
    seen = {i["id"] for i in (await dst.list()).json()["images"]}
    assert seen == {own, public, accepted}
    assert foreign not in seen and pending not in seen and deleted not in seen
    private = {i["id"] for i in (await dst.list(visibility="private")).json()["images"]}
    assert private == {own}
    public_only = {i["id"] for i in (await dst.list(visibility="public")).json()["images"]}
    assert public_only == {public}


async def test_filters(emulator: Emulator, src: Api) -> None:
    a = await emulator.seed_image(
        "KR1", SRC_ID, data=b"1" * 10, name="alpha", tags=["x", "y"], nhncloud_product="compute"
    )
    b = await emulator.seed_image(
        "KR1", SRC_ID, data=b"2" * 100, name="beta", tags=["x"], nhncloud_product="gpu"
    )
    queued = await emulator.seed_image("KR1", SRC_ID, name="gamma")
    other = await emulator.seed_image("KR1", DST_ID, data=b"3", visibility="public")

    async def ids(**params: Any) -> set[str]:
        reply = await src.list(**params)
        assert reply.status == 200
        return {i["id"] for i in reply.json()["images"]}

    assert await ids(name="alpha") == {a}
    assert await ids(status="queued") == {queued}
    assert await ids(status="active") == {a, b, other}
    assert await ids(owner=DST_ID) == {other}
    assert await ids(size_min=50) == {b}
    assert await ids(size_max=50) == {a, other}
    assert await ids(nhncloud_product="gpu") == {b}
    assert await ids(tag="x") == {a, b}
    reply = await src.call("GET", "/v2/images?tag=x&tag=y")
    assert {i["id"] for i in reply.json()["images"]} == {a}
    assert await ids(visibility="public") == {other}
