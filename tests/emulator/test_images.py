"""Create, show, update (JSON Patch) and delete, with Glance's and NHN's rules."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.emulator.helpers import Api
from transfer.emulator import Emulator

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SRC_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


async def test_create_answers_a_queued_image_shaped_like_the_seed_example(
    emulator: Emulator, src: Api
) -> None:
    reply = await src.call(
        "POST",
        "/v2/images",
        json={
            "name": "Ubuntu Image",
            "container_format": "bare",
            "disk_format": "qcow2",
            "os_type": "linux",
            "os_distro": "ubuntu",
            "os_version": "Server 22.04 LTS",
            "tags": ["base", "base", "lts"],
            "min_disk": 20,
        },
    )
    assert reply.status == 201
    image = reply.json()
    image_id = image["id"]
    assert uuid.UUID(image_id)
    assert image["status"] == "queued"
    assert image["size"] is None and image["virtual_size"] is None
    assert image["checksum"] is None
    assert image["os_hash_algo"] is None and image["os_hash_value"] is None
    assert image["owner"] == SRC_ID
    assert image["visibility"] == "private"  # the seed example's (the glance flavour: shared)
    assert image["protected"] is False and image["os_hidden"] is False
    assert image["tags"] == ["base", "lts"]
    assert image["min_disk"] == 20 and image["min_ram"] == 0
    assert image["self"] == f"/v2/images/{image_id}"
    assert image["file"] == f"/v2/images/{image_id}/file"
    assert image["schema"] == "/v2/schemas/image"
    assert "locations" not in image  # Glance shows none unless show_multiple_locations is on
    assert TIMESTAMP.match(image["created_at"]) and TIMESTAMP.match(image["updated_at"])
    # Custom properties are top-level keys.
    assert image["os_type"] == "linux" and image["os_distro"] == "ubuntu"
    assert reply.headers["Location"] == f"{src.base}/v2/images/{image_id}"
    shown = await src.show(image_id)
    assert shown.status == 200 and shown.json() == image
    assert emulator.image_record("KR1", image_id) == image


@pytest.mark.parametrize("os_type", [None, "bsd", 1])
async def test_create_needs_os_type_linux_or_windows(src: Api, os_type: Any) -> None:
    body: dict[str, Any] = {"name": "x"}
    if os_type is not None:
        body["os_type"] = os_type
    reply = await src.call("POST", "/v2/images", json=body)
    assert reply.status == 400
    assert reply.json()["code"] == "400 Bad Request"
    assert reply.json()["title"] == "Bad Request"


@pytest.mark.parametrize(
    "key",
    ["status", "checksum", "owner", "size", "created_at", "self", "locations", "os_glance_x"],
)
async def test_create_refuses_read_only_and_reserved_keys(src: Api, key: str) -> None:
    reply = await src.call("POST", "/v2/images", json={"os_type": "linux", key: "x"})
    assert reply.status == 403


async def test_caller_chosen_id_is_kept_and_never_reused(src: Api, dst: Api) -> None:
    chosen = str(uuid.uuid4())
    image = await src.create(id=chosen)
    assert image["id"] == chosen
    again = await src.call("POST", "/v2/images", json={"id": chosen, "os_type": "linux"})
    assert again.status == 409
    # Ids are unique across tenants, and stay taken after deletion.
    other = await dst.call("POST", "/v2/images", json={"id": chosen, "os_type": "linux"})
    assert other.status == 409
    assert (await src.call("DELETE", f"/v2/images/{chosen}")).status == 204
    reuse = await src.call("POST", "/v2/images", json={"id": chosen, "os_type": "linux"})
    assert reuse.status == 409


async def test_caller_chosen_id_must_be_a_uuid(src: Api) -> None:
    reply = await src.call("POST", "/v2/images", json={"id": "not-a-uuid", "os_type": "linux"})
    assert reply.status == 400


@pytest.mark.parametrize(
    ("visibility", "status"), [("public", 403), ("community", 403), ("x", 400)]
)
async def test_create_allows_only_private_or_shared(src: Api, visibility: str, status: int) -> None:
    reply = await src.call(
        "POST", "/v2/images", json={"os_type": "linux", "visibility": visibility}
    )
    assert reply.status == status
    assert (await src.create(visibility="shared"))["visibility"] == "shared"


@pytest.mark.parametrize(
    "fields",
    [
        {"hw_disk_bus": 5},
        {"hw_disk_bus": None},
        {"k" * 256: "v"},
        {"disk_format": "floppy"},
        {"min_disk": -1},
        {"protected": "yes"},
        {"tags": ["_hidden"]},
    ],
    ids=[
        "int-property",
        "null-property",
        "long-key",
        "disk-format",
        "min-disk",
        "protected",
        "tag",
    ],
)
async def test_create_refuses_bad_values(src: Api, fields: dict[str, Any]) -> None:
    reply = await src.call("POST", "/v2/images", json={"os_type": "linux", **fields})
    assert reply.status == 400


async def test_create_keeps_property_keys_of_255_characters(src: Api) -> None:
    image = await src.create(**{"k" * 255: "v"})
    assert image["k" * 255] == "v"


async def test_create_refuses_a_body_that_is_not_an_object(src: Api) -> None:
    assert (await src.call("POST", "/v2/images", json=["os_type"])).status == 400
    assert (await src.call("POST", "/v2/images", data=b"{oops")).status == 400


async def test_other_tenants_private_images_are_not_found(src: Api, dst: Api) -> None:
    image = await src.create()
    reply = await dst.show(image["id"])
    assert reply.status == 404
    assert reply.json()["code"] == "404 Not Found"
    assert (await src.show(str(uuid.uuid4()))).status == 404


async def test_patch_needs_the_json_patch_media_type(src: Api) -> None:
    image = await src.create()
    reply = await src.call(
        "PATCH",
        f"/v2/images/{image['id']}",
        json=[{"op": "add", "path": "/a", "value": "1"}],
    )
    assert reply.status == 415


async def test_patch_adds_replaces_and_removes_properties(src: Api) -> None:
    image_id = (await src.create())["id"]
    added = await src.patch(
        image_id,
        [
            {"op": "add", "path": "/metadata1", "value": "value1"},
            {"op": "add", "path": "/metadata2", "value": "1"},
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "add", "path": "/min_ram", "value": 512},
        ],
    )
    assert added.status == 200
    body = added.json()
    assert (body["metadata1"], body["metadata2"], body["name"]) == ("value1", "1", "renamed")
    assert body["min_ram"] == 512
    # add of an existing key replaces it
    readd = await src.patch(image_id, [{"op": "add", "path": "/metadata1", "value": "v2"}])
    assert readd.json()["metadata1"] == "v2"
    replaced = await src.patch(image_id, [{"op": "replace", "path": "/metadata1", "value": "v3"}])
    assert replaced.json()["metadata1"] == "v3"
    removed = await src.patch(image_id, [{"op": "remove", "path": "/metadata1"}])
    assert "metadata1" not in removed.json()
    assert "metadata1" not in (await src.show(image_id)).json()


async def test_patch_of_a_missing_property_is_a_conflict_and_changes_nothing(src: Api) -> None:
    image_id = (await src.create())["id"]
    for op in ("replace", "remove"):
        reply = await src.patch(
            image_id,
            [
                {"op": "add", "path": "/kept", "value": "no"},
                {"op": op, "path": "/missing", "value": "x"},
            ],
        )
        assert reply.status == 409
    # The whole patch failed: its first operation was not applied either.
    assert "kept" not in (await src.show(image_id)).json()


@pytest.mark.parametrize("key", ["id", "status", "checksum", "owner", "size", "os_glance_x"])
async def test_patch_of_read_only_keys_is_forbidden(src: Api, key: str) -> None:
    image_id = (await src.create())["id"]
    reply = await src.patch(image_id, [{"op": "replace", "path": f"/{key}", "value": "x"}])
    assert reply.status == 403


@pytest.mark.parametrize(("value", "status"), [("public", 403), ("community", 403), ("x", 400)])
async def test_patch_sets_visibility_only_to_private_or_shared(
    src: Api, value: str, status: int
) -> None:
    image_id = (await src.create())["id"]
    reply = await src.patch(image_id, [{"op": "replace", "path": "/visibility", "value": value}])
    assert reply.status == status
    ok = await src.patch(image_id, [{"op": "replace", "path": "/visibility", "value": "shared"}])
    assert ok.status == 200 and ok.json()["visibility"] == "shared"


async def test_patch_refuses_non_string_property_values(src: Api) -> None:
    image_id = (await src.create())["id"]
    reply = await src.patch(image_id, [{"op": "add", "path": "/count", "value": 3}])
    assert reply.status == 400


async def test_protected_images_change_only_their_protected_flag(src: Api) -> None:
    image_id = (await src.create(protected=True))["id"]
    blocked = await src.patch(image_id, [{"op": "replace", "path": "/name", "value": "n"}])
    assert blocked.status == 403
    assert (await src.call("PUT", f"/v2/images/{image_id}/tags/t")).status == 403
    assert (await src.call("DELETE", f"/v2/images/{image_id}")).status == 403
    unprotect = await src.patch(image_id, [{"op": "replace", "path": "/protected", "value": False}])
    assert unprotect.status == 200 and unprotect.json()["protected"] is False
    renamed = await src.patch(image_id, [{"op": "replace", "path": "/name", "value": "n"}])
    assert renamed.status == 200


async def test_non_owners_get_403_on_images_they_see_and_404_on_others(
    emulator: Emulator, src: Api, dst: Api
) -> None:
    public_id = await emulator.seed_image("KR1", SRC_ID, data=b"x", visibility="public")
    private_id = (await src.create())["id"]
    op = [{"op": "add", "path": "/a", "value": "b"}]
    assert (await dst.patch(public_id, op)).status == 403
    assert (await dst.patch(private_id, op)).status == 404
    assert (await dst.call("DELETE", f"/v2/images/{public_id}")).status == 403
    assert (await dst.call("DELETE", f"/v2/images/{private_id}")).status == 404


async def test_delete_removes_the_image_for_good(emulator: Emulator, src: Api) -> None:
    image_id = (await src.create())["id"]
    assert (await src.call("DELETE", f"/v2/images/{image_id}")).status == 204
    assert (await src.show(image_id)).status == 404
    assert (await src.call("DELETE", f"/v2/images/{image_id}")).status == 404
    assert all(r["id"] != image_id for r in emulator.list_all("KR1"))


async def test_public_images_cannot_be_deleted(emulator: Emulator, src: Api) -> None:
    public_id = await emulator.seed_image("KR1", SRC_ID, data=b"x", visibility="public")
    assert (await src.call("DELETE", f"/v2/images/{public_id}")).status == 403
    assert (await src.show(public_id)).status == 200


async def test_disk_format_changes_only_while_queued(emulator: Emulator, src: Api) -> None:
    queued = (await src.create())["id"]
    ok = await src.patch(queued, [{"op": "replace", "path": "/disk_format", "value": "raw"}])
    assert ok.status == 200 and ok.json()["disk_format"] == "raw"
    active = await emulator.seed_image("KR1", SRC_ID, data=b"abc")
    late = await src.patch(active, [{"op": "replace", "path": "/disk_format", "value": "raw"}])
    assert late.status == 403


async def test_unknown_paths_and_methods_answer_json_errors(src: Api) -> None:
    missing = await src.call("GET", "/v2/nothing")
    assert missing.status == 404 and missing.json()["code"] == "404 Not Found"
    wrong = await src.call("POST", f"/v2/images/{uuid.uuid4()}")
    assert wrong.status == 405 and wrong.json()["title"] == "Method Not Allowed"
