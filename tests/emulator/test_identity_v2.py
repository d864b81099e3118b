"""Keystone v2.0 in the emulator beyond token issuing: version discovery, the tenant calls
OpenStack clients make, token re-scoping and validation, and the versions not served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from transfer.emulator import DEFAULT_TENANTS, Emulator, TenantSpec, derive_tenant_id

pytestmark = pytest.mark.asyncio(loop_scope="module")

SRC, DST = DEFAULT_TENANTS
# A second tenant of demo-src's user, with its own API password.
EXTRA = TenantSpec("demo-extra", derive_tenant_id("demo-extra"), SRC.username, "extra-password")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(tenants=(SRC, DST, EXTRA), identity_versions=("v2.0", "v3")) as emu:
        yield emu


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kw: Any
) -> tuple[int, Any]:
    headers = {"X-Auth-Token": token} if token else {}
    async with http.request(method, url, headers=headers, **kw) as resp:
        text = await resp.text()
        return resp.status, (await resp.json(content_type=None)) if text else None


async def v2_token(emu: Emulator, http: aiohttp.ClientSession, spec: TenantSpec) -> str:
    body = {
        "auth": {
            "tenantId": spec.tenant_id,
            "passwordCredentials": {"username": spec.username, "password": spec.password},
        }
    }
    status, answer = await call(http, "POST", emu.identity_url + "/tokens", json=body)
    assert status == 200, answer
    token_id: str = answer["access"]["token"]["id"]
    return token_id


async def test_root_discovery_lists_the_served_versions_as_keystone_does(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(emu.identity_root + "/") as resp:
        assert resp.status == 300
        values = (await resp.json())["versions"]["values"]
    assert [(v["id"], v["status"]) for v in values] == [("v3.14", "stable"), ("v2.0", "deprecated")]
    hrefs = [v["links"][0]["href"] for v in values]
    assert hrefs == [emu.identity_v3_url + "/", emu.identity_url + "/"]
    assert values[0]["media-types"][0]["type"] == "application/vnd.openstack.identity-v3+json"
    for path, version in (
        ("/v2.0", "v2.0"),
        ("/v2.0/", "v2.0"),
        ("/v3", "v3.14"),
        ("/v3/", "v3.14"),
    ):
        status, doc = await call(http, "GET", emu.identity_root + path)
        assert (status, doc["version"]["id"]) == (200, version)


@pytest.mark.parametrize(
    ("served", "absent", "listed"),
    [(("v2.0",), "/v3", ["v2.0"]), (("v3",), "/v2.0", ["v3.14"])],
)
async def test_only_the_served_versions_answer(
    http: aiohttp.ClientSession, served: tuple[str, ...], absent: str, listed: list[str]
) -> None:
    tokens = "/auth/tokens" if absent == "/v3" else "/tokens"
    async with Emulator(identity_versions=served) as emu:
        status, answer = await call(http, "POST", emu.identity_root + absent + tokens, json={})
        assert status == 404
        assert answer["error"]["code"] == 404
        assert (await call(http, "GET", emu.identity_root + absent))[0] == 404
        status, doc = await call(http, "GET", emu.identity_root + "/")
        assert status == 300
        assert [v["id"] for v in doc["versions"]["values"]] == listed
        assert doc["versions"]["values"][0]["status"] == "stable"


async def test_tenants_lists_the_users_own_tenants(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, body = await call(
        http, "GET", emu.identity_url + "/tenants", await v2_token(emu, http, SRC)
    )
    assert status == 200
    assert sorted(t["name"] for t in body["tenants"]) == ["demo-extra", "demo-src"]
    assert body["tenants_links"] == []
    _, other = await call(
        http, "GET", emu.identity_url + "/tenants", await v2_token(emu, http, DST)
    )
    assert [(t["id"], t["enabled"]) for t in other["tenants"]] == [(DST.tenant_id, True)]
    assert (await call(http, "GET", emu.identity_url + "/tenants"))[0] == 401
    assert (await call(http, "GET", emu.identity_url + "/tenants", "f" * 32))[0] == 401


async def test_any_tenant_can_be_read_by_id_or_name(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    token = await v2_token(emu, http, SRC)
    status, body = await call(http, "GET", f"{emu.identity_url}/tenants/{DST.tenant_id}", token)
    assert (status, body["tenant"]["name"]) == (200, "demo-dst")
    status, body = await call(
        http, "GET", emu.identity_url + "/tenants", token, params={"name": "demo-dst"}
    )
    assert (status, body["tenant"]["id"]) == (200, DST.tenant_id)
    status, body = await call(http, "GET", f"{emu.identity_url}/tenants/{'0' * 32}", token)
    assert (status, body["error"]["code"]) == (404, 404)
    status, _ = await call(http, "GET", emu.identity_url + "/tenants", token, params={"name": "x"})
    assert status == 404


@pytest.mark.parametrize("by", ["tenantId", "tenantName"])
async def test_a_token_rescopes_to_another_tenant_of_its_user(
    emu: Emulator, http: aiohttp.ClientSession, by: str
) -> None:
    token = await v2_token(emu, http, SRC)
    target = EXTRA.tenant_id if by == "tenantId" else EXTRA.name
    body = {"auth": {"token": {"id": token}, by: target}}
    status, answer = await call(http, "POST", emu.identity_url + "/tokens", json=body)
    assert status == 200, answer
    access = answer["access"]
    assert access["token"]["tenant"]["id"] == EXTRA.tenant_id
    assert access["token"]["id"] != token
    assert access["user"]["name"] == SRC.username
    image = {
        "name": "rescoped",
        "os_type": "linux",
        "disk_format": "raw",
        "container_format": "bare",
    }
    new_token = access["token"]["id"]
    status, created = await call(
        http, "POST", emu.regions["KR1"] + "/v2/images", new_token, json=image
    )
    assert (status, created["owner"]) == (201, EXTRA.tenant_id)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"token": {"id": "LIVE"}, "tenantId": DST.tenant_id}, 401),
        ({"token": {"id": "0" * 32}, "tenantId": EXTRA.tenant_id}, 401),
        ({"token": {"id": "LIVE"}, "tenantId": "0" * 32}, 401),
        ({"token": {"id": 7}, "tenantId": EXTRA.tenant_id}, 400),
        ({"token": {"id": "LIVE"}}, 400),
    ],
    ids=["other-users-tenant", "unknown-token", "unknown-tenant", "id-not-a-string", "no-tenant"],
)
async def test_rescoping_refusals(
    emu: Emulator, http: aiohttp.ClientSession, body: dict[str, Any], status: int
) -> None:
    token = await v2_token(emu, http, SRC)
    if body["token"]["id"] == "LIVE":
        body = {**body, "token": {"id": token}}
    got, answer = await call(http, "POST", emu.identity_url + "/tokens", json={"auth": body})
    assert (got, answer["error"]["code"]) == (status, status)
    assert token not in str(answer)


async def test_password_by_user_id(emu: Emulator, http: aiohttp.ClientSession) -> None:
    token = await v2_token(emu, http, DST)
    _, access = await call(http, "GET", f"{emu.identity_url}/tokens/{token}", token)
    user_id = access["access"]["user"]["id"]
    creds = {"userId": user_id, "password": DST.password}
    body = {"auth": {"tenantName": DST.name, "passwordCredentials": creds}}
    status, answer = await call(http, "POST", emu.identity_url + "/tokens", json=body)
    assert (status, answer["access"]["token"]["tenant"]["id"]) == (200, DST.tenant_id)


async def test_validating_a_token(emu: Emulator, http: aiohttp.ClientSession) -> None:
    caller = await v2_token(emu, http, DST)
    subject = await v2_token(emu, http, SRC)
    url = f"{emu.identity_url}/tokens/{subject}"
    status, body = await call(http, "GET", url, caller)
    assert status == 200
    assert body["access"]["token"]["id"] == subject
    assert body["access"]["token"]["tenant"]["id"] == SRC.tenant_id
    assert body["access"]["user"]["username"] == SRC.username
    assert (await call(http, "HEAD", url, caller)) == (200, None)
    assert (await call(http, "GET", url, caller, params={"belongsTo": DST.tenant_id}))[0] == 401
    assert (await call(http, "GET", url))[0] == 401
    status, body = await call(http, "GET", f"{emu.identity_url}/tokens/{'0' * 32}", caller)
    assert (status, body["error"]["code"]) == (404, 404)
    # Revoked through v3: one token book for both APIs.
    async with http.delete(
        emu.identity_v3_url + "/auth/tokens",
        headers={"X-Auth-Token": caller, "X-Subject-Token": subject},
    ) as resp:
        assert resp.status == 204
    assert (await call(http, "GET", url, caller))[0] == 404
    assert (await call(http, "HEAD", url, caller)) == (404, None)
    assert (await call(http, "GET", emu.regions["KR1"] + "/v2/images", subject))[0] == 401
