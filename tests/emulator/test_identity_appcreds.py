"""Application credentials in the emulator's Keystone v3: create (the secret shown once),
list, show, delete, authenticate by id or by name and user, and use at the image regions."""

from __future__ import annotations

import calendar
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from transfer.emulator import DEFAULT_TENANTS, Emulator

pytestmark = pytest.mark.asyncio(loop_scope="module")

SRC, DST = DEFAULT_TENANTS


class User:
    """One tenant's user with a v3 token scoped to that tenant."""

    def __init__(self, http: aiohttp.ClientSession, emu: Emulator, token: str, uid: str) -> None:
        self.http, self.emu, self.token, self.id = http, emu, token, uid

    @property
    def base(self) -> str:
        return f"{self.emu.identity_v3_url}/users/{self.id}/application_credentials"

    async def call(
        self, method: str, path: str = "", token: str | None = None, **kw: Any
    ) -> tuple[int, Any, str]:
        headers = {"X-Auth-Token": self.token if token is None else token}
        async with self.http.request(method, self.base + path, headers=headers, **kw) as resp:
            text = await resp.text()
            return resp.status, (await resp.json(content_type=None)) if text else None, text

    async def create(self, **fields: Any) -> dict[str, Any]:
        status, body, text = await self.call("POST", json={"application_credential": fields})
        assert status == 201, text
        cred: dict[str, Any] = body["application_credential"]
        return cred


async def v3_token(emu: Emulator, http: aiohttp.ClientSession, body: Any) -> tuple[int, Any, str]:
    async with http.post(emu.identity_v3_url + "/auth/tokens", json=body) as resp:
        return resp.status, await resp.json(), resp.headers.get("X-Subject-Token", "")


def by_id(cred_id: str, secret: str) -> dict[str, Any]:
    identity = {"id": cred_id, "secret": secret}
    return {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": identity,
            }
        }
    }


async def images_status(emu: Emulator, http: aiohttp.ClientSession, token: str) -> int:
    async with http.get(emu.regions["KR1"] + "/v2/images", headers={"X-Auth-Token": token}) as r:
        return r.status


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(identity_versions=("v2.0", "v3")) as emu:
        yield emu


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def src(emu: Emulator) -> AsyncIterator[User]:
    user = {"name": SRC.username, "domain": {"name": "Default"}, "password": SRC.password}
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"name": SRC.name, "domain": {"id": "default"}}},
        }
    }
    async with aiohttp.ClientSession() as http:
        status, answer, token = await v3_token(emu, http, body)
        assert status == 201
        yield User(http, emu, token, answer["token"]["user"]["id"])


async def test_create_shows_the_secret_once_and_it_authenticates(emu: Emulator, src: User) -> None:
    cred = await src.create(name="backup-job", description="nightly copy")
    secret = cred["secret"]
    assert len(secret) >= 64
    assert (cred["project_id"], cred["user_id"], cred["expires_at"]) == (
        SRC.tenant_id,
        src.id,
        None,
    )
    assert cred["unrestricted"] is False and cred["description"] == "nightly copy"
    status, listed, text = await src.call("GET")
    assert status == 200 and secret not in text
    assert [c["id"] for c in listed["application_credentials"]] == [cred["id"]]
    _, named, _ = await src.call("GET", params={"name": "backup-job"})
    assert len(named["application_credentials"]) == 1
    status, shown, text = await src.call("GET", "/" + cred["id"])
    assert status == 200 and shown["application_credential"]["name"] == "backup-job"
    assert secret not in text and "secret" not in shown["application_credential"]

    status, answer, token = await v3_token(emu, src.http, by_id(cred["id"], secret))
    assert status == 201, answer
    body = answer["token"]
    assert body["methods"] == ["application_credential"]
    assert body["project"]["id"] == SRC.tenant_id
    assert body["application_credential"] == {
        "id": cred["id"],
        "name": "backup-job",
        "restricted": True,
    }
    assert any(s["type"] == "image" for s in body["catalog"])
    assert await images_status(emu, src.http, token) == 200


async def test_by_name_and_user_with_a_chosen_secret(emu: Emulator, src: User) -> None:
    cred = await src.create(name="chosen", secret="my-own-secret-value")
    assert cred["secret"] == "my-own-secret-value"
    identity = {
        "name": "chosen",
        "secret": "my-own-secret-value",
        "user": {"name": SRC.username, "domain": {"id": "default"}},
    }
    body = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": identity,
            }
        }
    }
    status, answer, _ = await v3_token(emu, src.http, body)
    assert (status, answer["token"]["project"]["name"]) == (201, SRC.name)
    identity["user"] = {"id": src.id}
    assert (await v3_token(emu, src.http, body))[0] == 201
    identity["secret"] = "not-the-secret"
    status, answer, _ = await v3_token(emu, src.http, body)
    assert (status, answer["error"]["code"]) == (401, 401)
    assert "not-the-secret" not in str(answer)


async def test_delete_revokes_the_credential_and_its_tokens(emu: Emulator, src: User) -> None:
    cred = await src.create(name="short-lived")
    _, _, token = await v3_token(emu, src.http, by_id(cred["id"], cred["secret"]))
    assert await images_status(emu, src.http, token) == 200
    status, _, _ = await src.call("DELETE", "/" + cred["id"])
    assert status == 204
    assert await images_status(emu, src.http, token) == 401
    assert (await v3_token(emu, src.http, by_id(cred["id"], cred["secret"])))[0] == 401
    assert (await src.call("GET", "/" + cred["id"]))[0] == 404
    assert (await src.call("DELETE", "/" + cred["id"]))[0] == 404


async def test_expiry_caps_the_token(emu: Emulator, src: User) -> None:
    ends = int(time.time()) + 120  # well before the emulator's 12-hour token lifetime
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ends))
    cred = await src.create(name="expiring", expires_at=stamp + "Z")
    assert cred["expires_at"] == stamp + ".000000Z"
    _, answer, _ = await v3_token(emu, src.http, by_id(cred["id"], cred["secret"]))
    expires = answer["token"]["expires_at"]
    assert calendar.timegm(time.strptime(expires[:19], "%Y-%m-%dT%H:%M:%S")) == ends


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"name": "twice"}, 409, "Duplicate entry"),
        ({}, 400, "application_credential/name"),
        ({"name": "x", "secret": ""}, 400, "application_credential/secret"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, 400, "already passed"),
        ({"name": "x", "expires_at": "next tuesday"}, 400, "not an ISO 8601 time"),
        ({"name": "x", "colour": "red"}, 400, "colour"),
        ({"name": "x", "unrestricted": "yes"}, 400, "unrestricted"),
    ],
    ids=["duplicate", "no-name", "empty-secret", "past", "bad-time", "unknown-field", "flag"],
)
async def test_create_refusals(
    src: User, fields: dict[str, Any], status: int, message: str
) -> None:
    if status == 409:
        await src.create(name="twice")
    got, body, _ = await src.call("POST", json={"application_credential": fields})
    assert (got, body["error"]["code"]) == (status, status)
    assert message in body["error"]["message"]


async def test_who_may_manage_credentials(emu: Emulator, src: User) -> None:
    dst_token = emu.issue_token(DST.tenant_id)
    status, body, _ = await src.call("GET", token=dst_token)  # another user's credentials
    assert (status, body["error"]["code"]) == (403, 403)
    assert (await src.call("POST", token=dst_token, json={"application_credential": {}}))[0] == 403
    cred = await src.create(name="restricted")
    _, _, app_token = await v3_token(emu, src.http, by_id(cred["id"], cred["secret"]))
    status, body, _ = await src.call(
        "POST", token=app_token, json={"application_credential": {"name": "more"}}
    )
    assert status == 403 and "not allowed" in body["error"]["message"]
    assert (await src.call("GET", token=app_token))[0] == 200
    user = {"id": src.id, "password": SRC.password}
    unscoped_body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}}
    _, _, unscoped = await v3_token(emu, src.http, unscoped_body)
    status, body, _ = await src.call(
        "POST", token=unscoped, json={"application_credential": {"name": "u"}}
    )
    assert status == 403 and "project-scoped" in body["error"]["message"]
    assert (await src.call("GET", token="0" * 32))[0] == 401


async def test_a_credential_token_stays_in_its_project(emu: Emulator, src: User) -> None:
    cred = await src.create(name="pinned")
    body = by_id(cred["id"], cred["secret"])
    body["auth"]["scope"] = {"project": {"id": SRC.tenant_id}}
    status, answer, _ = await v3_token(emu, src.http, body)
    assert status == 401 and "cannot request a scope" in answer["error"]["message"]


async def test_in_process_creation_gives_a_working_secret(emu: Emulator, src: User) -> None:
    cred_id, secret = emu.create_application_credential(DST.tenant_id, "demo")
    status, answer, token = await v3_token(emu, src.http, by_id(cred_id, secret))
    assert (status, answer["token"]["project"]["id"]) == (201, DST.tenant_id)
    assert await images_status(emu, src.http, token) == 200
    with pytest.raises(ValueError, match="already exists"):
        emu.create_application_credential(DST.tenant_id, "demo")
    with pytest.raises(ValueError, match="unknown tenant"):
        emu.create_application_credential("0" * 32, "demo")
