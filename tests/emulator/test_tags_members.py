"""Tags and members (sharing between tenants)."""

from __future__ import annotations

import pytest

from tests.emulator.helpers import Api
from transfer.emulator import Emulator

SRC_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
DST_ID = "0f9e8d7c6b5a49382716a5b4c3d2e1f0"


async def test_tags_are_added_once_and_removed(src: Api) -> None:
    image_id = (await src.create())["id"]
    for _ in range(2):
        assert (await src.call("PUT", f"/v2/images/{image_id}/tags/golden")).status == 204
    assert (await src.call("PUT", f"/v2/images/{image_id}/tags/ubuntu%2022")).status == 204
    assert (await src.show(image_id)).json()["tags"] == ["golden", "ubuntu 22"]
    assert (await src.call("DELETE", f"/v2/images/{image_id}/tags/golden")).status == 204
    assert (await src.show(image_id)).json()["tags"] == ["ubuntu 22"]
    assert (await src.call("DELETE", f"/v2/images/{image_id}/tags/golden")).status == 404


@pytest.mark.parametrize("tag", ["_private", "t" * 256])
async def test_bad_tags_are_refused(src: Api, tag: str) -> None:
    image_id = (await src.create())["id"]
    assert (await src.call("PUT", f"/v2/images/{image_id}/tags/{tag}")).status == 400
    assert (await src.call("PUT", f"/v2/images/{image_id}/tags/{'t' * 255}")).status == 204


async def test_only_the_owner_tags(emulator: Emulator, src: Api, dst: Api) -> None:
    public_id = await emulator.seed_image("KR1", SRC_ID, data=b"p", visibility="public")
    private_id = (await src.create())["id"]
    assert (await dst.call("PUT", f"/v2/images/{public_id}/tags/x")).status == 403
    assert (await dst.call("PUT", f"/v2/images/{private_id}/tags/x")).status == 404


async def _share(src: Api, image_id: str, member: str = DST_ID) -> int:
    return (
        await src.call("POST", f"/v2/images/{image_id}/members", json={"member": member})
    ).status


async def _listed(api: Api, **params: str) -> set[str]:
    reply = await api.list(**params)
    assert reply.status == 200
    return {image["id"] for image in reply.json()["images"]}


async def test_sharing_flow_pending_then_accepted(src: Api, dst: Api) -> None:
    image_id = (await src.create(visibility="private"))["id"]
    assert await _share(src, image_id) == 403  # still private
    await src.patch(image_id, [{"op": "replace", "path": "/visibility", "value": "shared"}])
    reply = await src.call("POST", f"/v2/images/{image_id}/members", json={"member": DST_ID})
    assert reply.status == 200
    member = reply.json()
    assert member["status"] == "pending"
    assert (member["image_id"], member["member_id"]) == (image_id, DST_ID)
    assert member["schema"] == "/v2/schemas/member"
    assert await _share(src, image_id) == 409  # duplicate

    # The member sees the image by id at once, but lists it only once accepted.
    assert (await dst.show(image_id)).status == 200
    assert image_id not in await _listed(dst)
    assert image_id in await _listed(dst, member_status="pending")
    assert image_id in await _listed(dst, member_status="all")

    url = f"/v2/images/{image_id}/members/{DST_ID}"
    assert (await src.call("PUT", url, json={"status": "accepted"})).status == 403  # owner
    assert (await dst.call("PUT", url, json={"status": "bogus"})).status == 400
    accepted = await dst.call("PUT", url, json={"status": "accepted"})
    assert accepted.status == 200 and accepted.json()["status"] == "accepted"
    assert image_id in await _listed(dst)
    assert image_id in await _listed(dst, visibility="shared")
    assert image_id not in await _listed(dst, member_status="pending")

    rejected = await dst.call("PUT", url, json={"status": "rejected"})
    assert rejected.json()["status"] == "rejected"
    assert image_id not in await _listed(dst)
    assert image_id in await _listed(dst, member_status="rejected")
    assert (await dst.show(image_id)).status == 200


async def test_member_lists_show_owners_everything_and_members_themselves(
    emulator: Emulator, src: Api, dst: Api
) -> None:
    image_id = (await src.create(visibility="shared"))["id"]
    await _share(src, image_id, DST_ID)
    await _share(src, image_id, "c" * 32)
    owner_view = await src.call("GET", f"/v2/images/{image_id}/members")
    assert owner_view.status == 200
    assert owner_view.json()["schema"] == "/v2/schemas/members"
    assert {m["member_id"] for m in owner_view.json()["members"]} == {DST_ID, "c" * 32}
    member_view = await dst.call("GET", f"/v2/images/{image_id}/members")
    assert [m["member_id"] for m in member_view.json()["members"]] == [DST_ID]
    assert (await dst.call("GET", f"/v2/images/{image_id}/members/{DST_ID}")).status == 200
    assert (await dst.call("GET", f"/v2/images/{image_id}/members/{'c' * 32}")).status == 404
    shown = await src.call("GET", f"/v2/images/{image_id}/members/{'c' * 32}")
    assert shown.status == 200 and shown.json()["status"] == "pending"
    assert (await src.call("GET", f"/v2/images/{image_id}/members/{'d' * 32}")).status == 404


async def test_strangers_see_no_members(src: Api, dst: Api) -> None:
    image_id = (await src.create(visibility="shared"))["id"]
    assert (await dst.call("GET", f"/v2/images/{image_id}/members")).status == 404
    assert (await dst.call("PUT", f"/v2/images/{image_id}/members/{DST_ID}")).status == 404


async def test_shared_images_cannot_be_reshared_by_members(src: Api, dst: Api) -> None:
    image_id = (await src.create(visibility="shared"))["id"]
    await _share(src, image_id)
    assert await _share(dst, image_id, "e" * 32) == 403


async def test_only_the_owner_removes_members(src: Api, dst: Api) -> None:
    image_id = (await src.create(visibility="shared"))["id"]
    await _share(src, image_id)
    url = f"/v2/images/{image_id}/members/{DST_ID}"
    assert (await dst.call("DELETE", url)).status == 403
    assert (await src.call("DELETE", url)).status == 204
    assert (await src.call("DELETE", url)).status == 404
    assert (await dst.show(image_id)).status == 404


async def test_unsharing_hides_the_image_from_members(src: Api, dst: Api) -> None:
    image_id = (await src.create(visibility="shared"))["id"]
    await _share(src, image_id)
    assert (await dst.show(image_id)).status == 200
    await src.patch(image_id, [{"op": "replace", "path": "/visibility", "value": "private"}])
    assert (await dst.show(image_id)).status == 404


async def test_only_shared_images_have_members_to_see_or_change(src: Api, dst: Api) -> None:
    image_id = (await src.create(visibility="shared"))["id"]
    assert await _share(src, image_id) == 200
    await src.patch(image_id, [{"op": "replace", "path": "/visibility", "value": "private"}])
    members = f"/v2/images/{image_id}/members"
    assert (await src.call("GET", members)).status == 403
    assert (await src.call("GET", f"{members}/{DST_ID}")).status == 404
    assert (await src.call("DELETE", f"{members}/{DST_ID}")).status == 403
    # Kept, not forgotten: sharing the image again brings the member back.
    await src.patch(image_id, [{"op": "replace", "path": "/visibility", "value": "shared"}])
    listed = (await src.call("GET", members)).json()["members"]
    assert [m["member_id"] for m in listed] == [DST_ID]
    reply = await dst.call("PUT", f"{members}/{DST_ID}", json={"status": "accepted"})
    assert reply.status == 200


async def test_add_member_needs_a_member_id(src: Api) -> None:
    image_id = (await src.create(visibility="shared"))["id"]
    for body in ({}, {"member": 5}, ["x"]):
        reply = await src.call("POST", f"/v2/images/{image_id}/members", json=body)
        assert reply.status == 400


async def test_public_images_have_no_members(emulator: Emulator, dst: Api) -> None:
    image_id = await emulator.seed_image("KR1", SRC_ID, data=b"p", visibility="public")
    assert (await dst.call("GET", f"/v2/images/{image_id}/members")).status == 403
