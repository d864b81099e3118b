"""What the emulated Image API serves around the images, as Glance 33 does: version documents,
schemas that agree with what create accepts, bad list parameters, and error bodies negotiated on
``Accept`` that the project's client and glanceclient's way of reading both turn into the
message."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.emulator.helpers import Api
from transfer.cloud.transport import _server_message
from transfer.emulator import Emulator


async def _api(emu: Emulator, http: aiohttp.ClientSession) -> Api:
    return Api(http, emu.regions["KR1"], emu.issue_token(emu.tenant("demo-src").tenant_id))


async def test_version_documents_and_negotiation(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    base = emulator.regions["KR1"]
    async with http.get(base + "/") as resp:
        assert resp.status == 300
        doc = await resp.json()
    current = [v["id"] for v in doc["versions"] if v["status"] == "CURRENT"]
    assert current == ["v2.17"] and len(doc["versions"]) == 16
    assert {link["href"] for v in doc["versions"] for link in v["links"]} == {base + "/v2/"}
    headers = {"Host": "images.example.com:8443"}
    async with http.get(base + "/versions", headers=headers) as resp:
        assert resp.status == 200
        hrefs = {v["links"][0]["href"] for v in (await resp.json())["versions"]}
        assert hrefs == {"http://images.example.com:8443/v2/"}
    for path in ("/v3/", "/v1/images", "/v2.14/images", "/nothing"):
        async with http.get(base + path) as resp:
            assert resp.status == 300, path
    src = await _api(emulator, http)
    assert (await src.call("GET", "/v2", auth=False, allow_redirects=False)).status == 401
    moved = await src.call("GET", "/v2.1", allow_redirects=False)
    assert moved.status == 302 and moved.headers["Location"] == base + "/v2/"
    assert (await src.call("GET", "/v2/")).status == 404
    listed = await src.call("GET", "/v2.9/images")
    assert listed.status == 200 and listed.json()["first"] == "/v2/images"


@pytest.mark.parametrize("flavour", ["nhn", "glance"])
async def test_schemas_describe_what_the_flavour_accepts(
    flavour: str, http: aiohttp.ClientSession
) -> None:
    async with Emulator(regions=("KR1",), flavour=flavour) as emu:
        src = await _api(emu, http)
        image = (await src.call("GET", "/v2/schemas/image")).json()
        listing = (await src.call("GET", "/v2/schemas/images")).json()
        assert listing["properties"]["images"]["items"] == image
        for name in ("member", "members"):
            assert (await src.call("GET", f"/v2/schemas/{name}")).json()["name"] == name
        assert (await src.call("GET", "/v2/schemas/image", auth=False)).status == 401
        props = image["properties"]
        assert image["additionalProperties"] == {"type": "string"}
        made = await src.call("POST", "/v2/images", json={"name": "s", "os_type": "windows"})
        shown = made.json()
        # Every core field shown is described by the schema, with a value its enum allows.
        assert props["visibility"]["enum"].count(shown["visibility"]) == 1
        assert "deactivated" in props["status"]["enum"]
        if flavour == "nhn":
            assert props["os_type"]["enum"] == ["windows", "linux"]
            assert props["visibility"]["enum"] == ["public", "private", "shared"]
            assert props["nhncloud_product"]["enum"] == ["compute", "gpu"]
        else:
            assert "os_type" not in props
            assert props["visibility"]["enum"] == ["community", "public", "private", "shared"]


async def test_list_parameters_glance_refuses(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    src = await _api(emulator, http)
    bad = await src.call("GET", "/v2/images", params={"sort_key": "bogus"})
    assert bad.status == 400
    assert bad.json()["message"].startswith("Invalid sort key: bogus. It must be one of")
    assert (await src.call("GET", "/v2/images", params={"sort": "os_type:asc"})).status == 400
    assert (await src.call("GET", "/v2/images", params={"status": "bogus"})).status == 200
    for params in ({"sort_dir": "bogus"}, {"visibility": "bogus"}, {"limit": "-1"}):
        assert (await src.call("GET", "/v2/images", params=params)).status == 400, params


def _glanceclient_details(body: str) -> str:
    """How glanceclient reads an HTML error: lines without tags, de-duplicated, joined."""
    lines = [re.sub(r"<.+?>", "", line.strip()) for line in body.splitlines()]
    return ": ".join(dict.fromkeys(line for line in lines if line))


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("application/json", "application/json"),
        ("*/*", "text/html"),
        ("text/html", "text/html"),
        (None, "text/plain"),
        ("text/plain", "text/plain"),
        ("application/xml", "text/plain"),
        ("text/html;q=0.5, application/json", "application/json"),
    ],
)
async def test_error_bodies_follow_accept_and_keep_the_message(
    emulator: Emulator, http: aiohttp.ClientSession, accept: str | None, media: str
) -> None:
    src = await _api(emulator, http)
    path = "/v2/images/00000000-0000-0000-0000-000000000007"
    reply = await src.call("GET", path, headers={"Accept": accept})
    assert reply.status == 404
    assert reply.headers["Content-Type"].split(";")[0] == media
    text = reply.body.decode()
    expected = "No image found with ID 00000000-0000-0000-0000-000000000007."
    # What the project's client reports holds the message (whatever webob wraps around it).
    assert expected in _server_message(reply.body, 404, "Not Found")
    if media == "text/html":
        assert _glanceclient_details(text) == f"404 Not Found: {expected}"
    elif media == "application/json":
        assert reply.json()["code"] == "404 Not Found"
    else:
        assert text.startswith(f"404 Not Found\n\n{expected}")
    # The token check's 401 stays keystonemiddleware's JSON, whatever the Accept.
    unauthorized = await src.call("GET", path, auth=False, headers={"Accept": accept})
    assert unauthorized.status == 401 and unauthorized.json()["error"]["code"] == 401
