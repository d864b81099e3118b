"""The tour's steps for the API's surface around the images: version negotiation, the schemas,
error bodies under each ``Accept``, both patch media types, ``owner`` on create, bad list
parameters, a create without name or visibility, and the deactivate/reactivate actions with
what a deactivated image answers.  Run after the rest of the tour (see ``run_tour``'s ``more``).
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

from tests.emulator.helpers import OCTET, PATCH_TYPE
from tests.interop.tour import Tour, side_tenant

LEGACY_PATCH = "application/openstack-images-v2.0-json-patch"
#: Accept headers of the error steps (None: no Accept header at all).
ACCEPTS: dict[str, str | None] = {
    "json": "application/json",
    "any": "*/*",
    "none": None,
    "html": "text/html",
    "plain": "text/plain",
    "xml": "application/xml",
    "json preferred": "text/html;q=0.5, application/json",
}


async def surface(t: Tour) -> None:
    await _versions(t)
    await _schemas(t)
    await _creates(t)
    await _patch_types(t)
    await _lists(t)
    await _errors(t)
    await _actions(t)


async def _versions(t: Tour) -> None:
    for step, method, path, auth in (
        ("versions: root", "GET", "/", False),
        ("versions: /versions", "GET", "/versions", False),
        ("versions: /versions/", "GET", "/versions/", False),
        ("versions: POST root", "POST", "/", False),
        ("versions: unknown version v3", "GET", "/v3/", False),
        ("versions: removed version v1", "GET", "/v1/images", False),
        ("versions: unserved minor v2.14", "GET", "/v2.14/images", False),
        ("versions: unknown path", "GET", "/nothing", False),
        ("versions: /v2 without a token", "GET", "/v2", False),
        ("versions: /v2", "GET", "/v2", True),
        ("versions: /v2.1", "GET", "/v2.1", True),
        ("versions: /v2/", "GET", "/v2/", True),
        ("versions: list under /v2.1", "GET", "/v2.1/images?limit=0", True),
        ("versions: list under /v2.17", "GET", "/v2.17/images?limit=0", True),
        ("versions: unknown route under /v2", "GET", "/v2/nothing", True),
    ):
        await t.call(step, "owner", method, path, auth=auth, allow_redirects=False)
    await t.call(
        "versions: as another Host sees it",
        "owner",
        "GET",
        "/versions",
        auth=False,
        headers={"Host": "images.example.com:8443"},
    )


async def _schemas(t: Tour) -> None:
    for name in ("image", "images", "member", "members"):
        await t.call(f"schemas: {name}", "owner", "GET", f"/v2/schemas/{name}")
    await t.call("schemas: unknown", "owner", "GET", "/v2/schemas/bogus")
    await t.call("schemas: no token", "owner", "GET", "/v2/schemas/image", auth=False)


async def _creates(t: Tour) -> None:
    base = {"os_type": "linux", "disk_format": "qcow2", "container_format": "bare"}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("create: without name", {"visibility": "shared"}),
        ("create: without visibility", {"name": "no visibility"}),
        (
            "create: owner, own tenant",
            {"name": "own", "visibility": "shared", "owner": side_tenant(t, "owner")},
        ),
    ]
    for step, fields in cases:
        reply = await t.call(step, "owner", "POST", "/v2/images", json={**base, **fields})
        if reply.status == 201:
            made = t.name(reply.json()["id"], step.removeprefix("create: "))
            await t.apis["owner"].call("DELETE", f"/v2/images/{made}")


async def _patch_types(t: Tour) -> None:
    image = await t.create("patch setup: create", "patched")
    ops_v20 = [{"add": "/legacy", "value": "1"}, {"replace": "/name", "value": "patched-2"}]
    await t.patch("update: v2.0 media type", "owner", image, ops_v20, content_type=LEGACY_PATCH)
    await t.patch(
        "update: v2.0 media type, remove",
        "owner",
        image,
        [{"remove": "/legacy"}],
        content_type=LEGACY_PATCH,
    )
    await t.patch(
        "update: v2.0 media type, RFC 6902 operations",
        "owner",
        image,
        [{"op": "add", "path": "/x", "value": "1"}],
        content_type=LEGACY_PATCH,
    )
    await t.patch(
        "update: v2.1 media type with a charset",
        "owner",
        image,
        [{"op": "add", "path": "/charset", "value": "1"}],
        content_type="application/openstack-images-v2.1-json-patch; charset=UTF-8",
    )
    await t.quiet("DELETE", f"/v2/images/{image}")


async def _lists(t: Tour) -> None:
    for step, params in (
        ("list: sort_key bogus", {"sort_key": "bogus"}),
        ("list: sort_key of a custom property", {"sort_key": "os_type"}),
        ("list: second sort_key bogus", {"sort_key": ["name", "bogus"]}),
        ("list: sort with a bogus key", {"sort": "bogus:asc"}),
        ("list: sort_dir bogus", {"sort_dir": "bogus"}),
        ("list: status bogus", {"status": "bogus"}),
        ("list: visibility bogus", {"visibility": "bogus"}),
        ("list: limit -1", {"limit": "-1"}),
        ("list: marker unknown", {"marker": str(uuid.UUID(int=13))}),
    ):
        query = "&".join(
            f"{key}={value}"
            for key, values in params.items()
            for value in (values if isinstance(values, list) else [values])
        )
        await t.call(step, "owner", "GET", f"/v2/images?{query}")


async def _errors(t: Tour) -> None:
    """One error of each status, under each Accept: the media type and the body's shape."""
    image = await t.create("errors setup: create", "errors")
    await t.upload("errors setup: upload", image)
    bad = {"name": "x", "os_type": "linux", "visibility": "everyone"}
    missing = json.dumps([{"op": "replace", "path": "/nope", "value": "x"}])
    cases: list[tuple[str, str, str, dict[str, Any]]] = [
        ("400", "POST", "/v2/images", {"json": bad}),
        ("403", "POST", "/v2/images", {"json": {"name": "x", "status": "active"}}),
        ("404", "GET", f"/v2/images/{uuid.UUID(int=14)}", {}),
        ("404 route", "GET", "/v2/nothing", {}),
        ("405", "PUT", "/v2/images", {}),
        ("409", "PATCH", f"/v2/images/{image}", {"data": missing, "type": PATCH_TYPE}),
        ("415", "PATCH", f"/v2/images/{image}", {"data": "[]", "type": "application/json"}),
        ("416", "GET", f"/v2/images/{image}/file", {"range": "bytes=9999999-"}),
    ]
    for status, method, path, spec in cases:
        for label, accept in ACCEPTS.items():
            headers: dict[str, str | None] = {"Accept": accept}
            if "type" in spec:
                headers["Content-Type"] = spec["type"]
            if "range" in spec:
                headers["Range"] = spec["range"]
            await t.call(
                f"errors: {status}, Accept {label}",
                "owner",
                method,
                path,
                json=spec.get("json"),
                data=spec.get("data"),
                headers=headers,
            )
    await t.quiet("DELETE", f"/v2/images/{image}")


async def _actions(t: Tour) -> None:
    image = await t.create("actions setup: create", "deactivated")
    act = f"/v2/images/{image}/actions"
    await t.call("actions: deactivate a queued image", "owner", "POST", f"{act}/deactivate")
    await t.call("actions: reactivate a queued image", "owner", "POST", f"{act}/reactivate")
    await t.upload("actions setup: upload", image)
    await t.call("actions: deactivate, outsider", "outsider", "POST", f"{act}/deactivate")
    await t.call("actions: deactivate", "owner", "POST", f"{act}/deactivate")
    await t.call("actions: deactivate again", "owner", "POST", f"{act}/deactivate")
    await t.show("actions: show a deactivated image", image)
    await t.call(
        "actions: download a deactivated image", "owner", "GET", f"/v2/images/{image}/file"
    )
    await t.patch(
        "actions: update a deactivated image",
        "owner",
        image,
        [{"op": "add", "path": "/while", "value": "deactivated"}],
    )
    await t.call("actions: tag a deactivated image", "owner", "PUT", f"/v2/images/{image}/tags/d")
    await t.call(
        "actions: upload to a deactivated image",
        "owner",
        "PUT",
        f"/v2/images/{image}/file",
        data=io.BytesIO(b"refused?"),
        headers={"Content-Type": OCTET},
    )
    await t.call(
        "actions: list deactivated images", "owner", "GET", "/v2/images?status=deactivated"
    )
    await t.call("actions: reactivate, outsider", "outsider", "POST", f"{act}/reactivate")
    await t.call("actions: deactivate with a body", "owner", "POST", f"{act}/deactivate", json={})
    await t.call("actions: GET deactivate", "owner", "GET", f"{act}/deactivate")
    await t.call("actions: unknown action", "owner", "POST", f"{act}/bogus")
    await t.call("actions: reactivate", "owner", "POST", f"{act}/reactivate")
    await t.call("actions: reactivate again", "owner", "POST", f"{act}/reactivate")
    await t.show("actions: show a reactivated image", image)
    await t.call(
        "actions: deactivate an unknown image",
        "owner",
        "POST",
        f"/v2/images/{uuid.UUID(int=15)}/actions/deactivate",
    )
    await t.call("actions: deactivate to delete", "owner", "POST", f"{act}/deactivate")
    await t.call("actions: delete a deactivated image", "owner", "DELETE", f"/v2/images/{image}")
