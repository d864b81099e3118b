"""The tour every client makes of one cloud, each step checked through plain HTTP as well.

List with paging; create and upload; show; download (bytes and md5 equal); update properties
and make the image shared; add and remove a tag; add the member project, accept as the member
with its own credentials, list, remove; delete.  And the errors a user meets: a 404 (show of a
missing id), a 403 (the member changing the owner's image), a 409 (the member added twice),
each printed by the client as its own message, exit code non-zero, no Python traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass

import aiohttp

from tests.ecosystem.clients import Client, Outcome
from tests.ecosystem.cloud import PATCH_TYPE, Http

#: The images already in the owner's project before the tour: more than one page.
PAGED = 3
PAGE = 2
SIZE = 300 * 1024
TAG = "tour-tag"


@dataclass(frozen=True)
class Expect:
    """How a client words the three errors (a regular expression each), and in which of
    them it quotes the server's own message (the emulator's words must then be in it).

    openstackclient looks a missing id up by name as well and says only that it found
    nothing; openstacksdk sends its PATCH with an empty ``Accept``, gets Glance's plain-text
    error body (webob's choice, as real Glance answers) and shows only the reason phrase."""

    not_found: str
    forbidden: str
    conflict: str
    quotes: frozenset[int] = frozenset({403, 404, 409})


_SDK_403 = r"ForbiddenException: 403: Client Error for url: \S+/v2/images/[0-9a-f-]{36}, Forbidden"
EXPECT = {
    "glance": Expect(r"^HTTP 404 Not Found: ", r"^HTTP 403 Forbidden: ", r"^HTTP 409 Conflict: "),
    "openstack": Expect(
        r"^No Image found for [0-9a-f-]{36}$",
        rf"^{_SDK_403}",
        r"^ConflictException: 409: Client Error for url: \S+, 409 Conflict: ",
        quotes=frozenset({409}),
    ),
    "sdk": Expect(
        r"^NotFoundException: No Image found for .*404 Not Found: ",
        rf"^{_SDK_403}",
        r"^ConflictException: 409: Client Error for url: \S+, 409 Conflict: ",
        quotes=frozenset({404, 409}),
    ),
}


def succeeded(outcome: Outcome) -> Outcome:
    assert outcome.code == 0, f"step failed:\n{outcome}"
    assert "Traceback (most recent call last)" not in outcome.err, str(outcome)
    return outcome


def refused(outcome: Outcome, pattern: str, server_said: str | None) -> None:
    """A clean error: non-zero exit, the client's own words, the server's message, no crash."""
    said = outcome.out + outcome.err
    assert outcome.code != 0, f"expected an error:\n{outcome}"
    assert "Traceback (most recent call last)" not in said, f"the client crashed:\n{outcome}"
    assert re.search(pattern, said.strip(), re.MULTILINE), f"expected {pattern!r} in:\n{outcome}"
    if server_said is not None:
        assert server_said in said, f"the emulator's message {server_said!r} is not in:\n{outcome}"


async def tour(client: Client, session: aiohttp.ClientSession) -> None:
    cloud = client.cloud
    owner, member = (Http(session, cloud.image_url, "") for _ in range(2))
    owner.token = await cloud.token(session, client.tenant_name("owner"))
    member.token = await cloud.token(session, client.tenant_name("member"))
    expect = EXPECT[client.name]
    nhn = {"os_type": "linux"} if cloud.kind.needs_os_type else {}
    member_id = client.project_id("member")

    # List with paging: the page is smaller than the images; each is seen once.
    paged = [
        (await owner.create(name=f"{client.name}-page-{n}", **nhn))["id"] for n in range(PAGED)
    ]
    first = json.loads((await owner.call("GET", "/v2/images")).body)  # the cloud pages too
    assert (len(first["images"]), "next" in first) == (PAGE, True), first
    listed = succeeded(await client.run("list", limit=str(PAGE)))
    assert [listed.out.count(i) for i in paged] == [1] * PAGED, str(listed)

    # Create and upload.
    data = os.urandom(SIZE)
    source = client.work / "upload.bin"
    source.write_bytes(data)
    name = f"{client.name}-tour-image"
    made = succeeded(
        await client.run("create", name=name, path=str(source), properties=json.dumps(nhn))
    )
    found = json.loads((await owner.call("GET", "/v2/images", params={"name": name})).body)
    assert len(found["images"]) == 1, found
    image_id = found["images"][0]["id"]
    assert image_id in made.out, str(made)
    image = await owner.shown(image_id)
    md5 = hashlib.md5(data).hexdigest()
    assert (image["status"], image["checksum"], image["size"]) == ("active", md5, SIZE)
    assert image.get("os_type") == nhn.get("os_type"), image
    assert await owner.md5_of_file(image_id) == md5

    # Show: what the client prints is what the server holds.
    shown = succeeded(await client.run("show", id=image_id))
    assert image_id in shown.out and md5 in shown.out and name in shown.out, str(shown)

    # Download: equal bytes, equal checksum.
    target = client.work / "download.bin"
    succeeded(await client.run("download", id=image_id, path=str(target)))
    assert hashlib.md5(target.read_bytes()).hexdigest() == md5
    assert target.read_bytes() == data

    # Update properties and share it.
    props = json.dumps({"tour_colour": "blue"})
    succeeded(await client.run("update", id=image_id, properties=props, visibility="shared"))
    image = await owner.shown(image_id)
    assert (image.get("tour_colour"), image["visibility"]) == ("blue", "shared"), image

    # Tags: add, then remove.
    succeeded(await client.run("tag-add", id=image_id, tag=TAG))
    assert TAG in (await owner.shown(image_id))["tags"]
    succeeded(await client.run("tag-remove", id=image_id, tag=TAG))
    assert TAG not in (await owner.shown(image_id))["tags"]

    await members_and_errors(client, owner, member, image_id, member_id, expect)

    # Delete.
    succeeded(await client.run("delete", id=image_id))
    assert (await owner.image(image_id)).status == 404


async def members_and_errors(
    client: Client, owner: Http, member: Http, image_id: str, member_id: str, expect: Expect
) -> None:
    # Add the member project; adding it again is a 409.
    succeeded(await client.run("member-add", id=image_id, member=member_id))
    assert [(m["member_id"], m["status"]) for m in await owner.members(image_id)] == [
        (member_id, "pending")
    ]
    again = await client.run("member-add", id=image_id, member=member_id)
    server = await owner.call("POST", f"/v2/images/{image_id}/members", json={"member": member_id})
    assert server.status == 409, (server.status, server.body)
    refused(again, expect.conflict, server.message() if 409 in expect.quotes else None)
    assert len(await owner.members(image_id)) == 1

    # Accept as the member, with the member's own credentials.
    succeeded(await client.run("member-accept", "member", id=image_id, member=member_id))
    assert [m["status"] for m in await owner.members(image_id)] == ["accepted"]
    listing = json.loads((await member.call("GET", "/v2/images")).body)
    assert image_id in [i["id"] for i in listing["images"]]

    listed = succeeded(await client.run("member-list", id=image_id))
    assert member_id in listed.out and "accepted" in listed.out, str(listed)

    # The member may see the owner's image but not change it: 403.
    forbidden = await client.run("update", "member", id=image_id, properties='{"by": "member"}')
    ops = json.dumps([{"op": "add", "path": "/by", "value": "member"}])
    server = await member.call(
        "PATCH", f"/v2/images/{image_id}", data=ops, headers={"Content-Type": PATCH_TYPE}
    )
    assert server.status == 403, (server.status, server.body)
    refused(forbidden, expect.forbidden, server.message() if 403 in expect.quotes else None)
    assert "by" not in await owner.shown(image_id)

    # Remove the member: the image is gone from its view.
    succeeded(await client.run("member-remove", id=image_id, member=member_id))
    assert await owner.members(image_id) == []
    assert (await member.image(image_id)).status == 404

    # Show of an id the outsider cannot see (to it, a missing id): 404.
    outsider = Http(
        owner.session,
        owner.base,
        await client.cloud.token(owner.session, client.tenant_name("outsider")),
    )
    server = await outsider.image(image_id)
    assert server.status == 404, (server.status, server.body)
    said = server.message() if 404 in expect.quotes else None
    refused(await client.run("show", "outsider", id=image_id), expect.not_found, said)
