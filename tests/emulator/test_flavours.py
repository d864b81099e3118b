"""The two flavours of emulated cloud as a client sees them: ``nhn`` (the seed's rules) and
``glance`` (upstream Glance 33's), over real sockets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.emulator.helpers import OCTET, Api
from transfer.emulator import Emulator

LEGACY_PATCH = "application/openstack-images-v2.0-json-patch"
DATA = b"flavoured bytes " * 64


async def _api(emu: Emulator, http: aiohttp.ClientSession, tenant: str = "demo-src") -> Api:
    return Api(http, emu.regions["KR1"], emu.issue_token(emu.tenant(tenant).tenant_id))


@pytest.fixture
async def glance() -> AsyncIterator[Emulator]:
    async with Emulator(regions=("KR1",), flavour="glance") as emu:
        yield emu


@pytest.fixture
async def nhn() -> AsyncIterator[Emulator]:
    async with Emulator(regions=("KR1",)) as emu:
        yield emu


def test_a_bad_flavour_is_refused_naming_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"'openstack' is not a flavour; choose one of glance, nhn"
    ):
        Emulator(flavour="openstack")


async def test_identity_versions_follow_the_flavour_unless_given() -> None:
    assert Emulator().identity_versions == ("v2.0",)
    assert Emulator(flavour="glance").identity_versions == ("v3",)
    given = Emulator(flavour="glance", identity_versions=("v2.0", "v3"))
    assert given.identity_versions == ("v2.0", "v3")
    assert given.flavour == "glance"
    async with Emulator(regions=("KR1",), flavour="glance") as v3_only:
        assert v3_only.identity_url == v3_only.identity_root + "/v3" == v3_only.identity_v3_url
        assert v3_only.admin_url == v3_only.identity_root + "/admin"


async def test_nhn_create_needs_a_name_and_defaults_to_private(
    nhn: Emulator, http: aiohttp.ClientSession
) -> None:
    src = await _api(nhn, http)
    body = {"os_type": "linux", "disk_format": "qcow2", "container_format": "bare"}
    nameless = await src.call("POST", "/v2/images", json=body)
    assert nameless.status == 400
    assert "name" in nameless.json()["message"]
    made = await src.call("POST", "/v2/images", json={**body, "name": "n"})
    assert made.status == 201 and made.json()["visibility"] == "private"
    # The seeded image of an operator needs no name.
    seeded = await nhn.seed_image("KR1", nhn.tenant("demo-src").tenant_id, data=b"x")
    assert nhn.image_record("KR1", seeded)["name"] is None


async def test_glance_rules_are_glance_33s(glance: Emulator, http: aiohttp.ClientSession) -> None:
    src = await _api(glance, http)
    made = await src.call("POST", "/v2/images", json={"tags": ["_hidden"], "os_type": "bsd"})
    assert made.status == 201
    image = made.json()
    assert (image["name"], image["visibility"], image["tags"]) == (None, "shared", ["_hidden"])
    assert image["os_type"] == "bsd"
    community = await src.call("POST", "/v2/images", json={"visibility": "community"})
    assert community.status == 201
    assert (await src.call("POST", "/v2/images", json={"visibility": "public"})).status == 403
    image_id = image["id"]
    assert (await src.call("PUT", f"/v2/images/{image_id}/tags/_more")).status == 204
    protect = [{"op": "replace", "path": "/protected", "value": True}]
    assert (await src.patch(image_id, protect)).status == 200
    # Protected blocks deletion only.
    assert (await src.patch(image_id, [{"op": "add", "path": "/k", "value": "v"}])).status == 200
    assert (await src.call("PUT", f"/v2/images/{image_id}/tags/t")).status == 204
    refused = await src.call("DELETE", f"/v2/images/{image_id}")
    assert refused.status == 403 and "protected" in refused.json()["message"]


async def test_glance_has_no_download_rule_and_nhn_has(
    glance: Emulator, nhn: Emulator, http: aiohttp.ClientSession
) -> None:
    for emu, status in ((glance, 200), (nhn, 403)):
        owner = emu.tenant("demo-src").tenant_id
        image_id = await emu.seed_image(
            "KR1", owner, data=DATA, nhncloud_allow_download="false", name="gated"
        )
        reply = await (await _api(emu, http)).call("GET", f"/v2/images/{image_id}/file")
        assert reply.status == status, emu.flavour
        if status == 200:
            assert hashlib.md5(reply.body).hexdigest() == hashlib.md5(DATA).hexdigest()


async def test_deactivate_and_reactivate_on_glance(
    glance: Emulator, http: aiohttp.ClientSession
) -> None:
    src, dst = await _api(glance, http), await _api(glance, http, "demo-dst")
    made = (
        await src.call(
            "POST",
            "/v2/images",
            json={"name": "d", "disk_format": "raw", "container_format": "bare"},
        )
    ).json()
    image_id = made["id"]
    act = f"/v2/images/{image_id}/actions"
    queued = await src.call("POST", f"{act}/deactivate")
    assert queued.status == 403
    assert queued.json()["message"].startswith("Not allowed to deactivate image in status 'queued'")
    upload = await src.call(
        "PUT", f"/v2/images/{image_id}/file", data=DATA, headers={"Content-Type": OCTET}
    )
    assert upload.status == 204
    assert (await dst.call("POST", f"{act}/deactivate")).status == 404  # dst cannot see it
    member = {"member": glance.tenant("demo-dst").tenant_id}
    assert (await src.call("POST", f"/v2/images/{image_id}/members", json=member)).status == 200
    assert (await dst.call("POST", f"{act}/deactivate")).status == 403  # a member sees it
    assert (await src.call("POST", f"{act}/deactivate", json={})).status == 400
    for _ in range(2):
        assert (await src.call("POST", f"{act}/deactivate")).status == 204
    assert (await src.show(image_id)).json()["status"] == "deactivated"
    download = await src.call("GET", f"/v2/images/{image_id}/file")
    assert download.status == 403 and "deactivated" in download.json()["message"]
    again = await src.call(
        "PUT", f"/v2/images/{image_id}/file", data=b"x", headers={"Content-Type": OCTET}
    )
    assert again.status == 409
    assert (await src.patch(image_id, [{"op": "add", "path": "/k", "value": "v"}])).status == 200
    assert (await src.call("GET", f"{act}/deactivate")).status == 405
    assert (await src.call("POST", f"{act}/reactivate")).status == 204
    reply = await src.call("GET", f"/v2/images/{image_id}/file")
    assert reply.status == 200 and reply.body == DATA


async def test_nhn_has_no_image_actions(nhn: Emulator, http: aiohttp.ClientSession) -> None:
    src = await _api(nhn, http)
    image_id = await nhn.seed_image("KR1", nhn.tenant("demo-src").tenant_id, data=DATA, name="a")
    reply = await src.call("POST", f"/v2/images/{image_id}/actions/deactivate")
    assert reply.status == 404
    assert reply.json()["message"].startswith("The resource could not be found.")
    assert (await src.show(image_id)).json()["status"] == "active"


@pytest.mark.parametrize("flavour", ["nhn", "glance"])
async def test_both_patch_media_types_and_owner_on_create(
    flavour: str, http: aiohttp.ClientSession
) -> None:
    async with Emulator(regions=("KR1",), flavour=flavour) as emu:
        src = await _api(emu, http)
        mine, other = emu.tenant("demo-src").tenant_id, emu.tenant("demo-dst").tenant_id
        body = {"name": "p", "os_type": "linux", "owner": mine}
        made = await src.call("POST", "/v2/images", json=body)
        assert made.status == 201 and made.json()["owner"] == mine
        theirs = await src.call("POST", "/v2/images", json={**body, "owner": other})
        assert theirs.status == 403
        path = f"/v2/images/{made.json()['id']}"
        legacy = [{"add": "/a", "value": "1"}, {"replace": "/name", "value": "q"}]
        headers = {"Content-Type": LEGACY_PATCH}
        reply = await src.call("PATCH", path, data=json.dumps(legacy), headers=headers)
        assert reply.status == 200
        assert (reply.json()["a"], reply.json()["name"]) == ("1", "q")
        modern = [{"op": "add", "path": "/b", "value": "2"}]
        wrong = await src.call("PATCH", path, data=json.dumps(modern), headers=headers)
        assert wrong.status == 400
        json_type = {"Content-Type": "application/json"}
        refused = await src.call("PATCH", path, data=json.dumps(modern), headers=json_type)
        assert refused.status == 415
        assert LEGACY_PATCH in refused.json()["message"]
