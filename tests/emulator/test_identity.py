"""The identity service: tokens, the catalog, refusals, expiry."""

from __future__ import annotations

import asyncio
import calendar
import re
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import token
from tests.emulator.helpers import Api
from transfer.emulator import DEFAULT_TENANTS, Emulator, TenantSpec, derive_tenant_id

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _auth(tenant: TenantSpec, *, by: str = "tenantId", password: str | None = None) -> Any:
    auth: dict[str, Any] = {
        "passwordCredentials": {
            "username": tenant.username,
            "password": tenant.password if password is None else password,
        }
    }
    auth[by] = tenant.tenant_id if by == "tenantId" else tenant.name
    return {"auth": auth}


async def _post(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.post(url, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_token_carries_tenant_expiry_and_every_region_in_the_catalog(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    tenant = DEFAULT_TENANTS[0]
    before = time.time()
    status, body = await _post(http, emulator.identity_url + "/tokens", json=_auth(tenant))
    assert status == 200
    access = body["access"]
    tok = access["token"]
    assert re.fullmatch(r"[0-9a-f]{32}", tok["id"])
    assert tok["tenant"]["id"] == tenant.tenant_id
    assert tok["tenant"]["name"] == tenant.name
    assert TIMESTAMP.match(tok["expires"]) and TIMESTAMP.match(tok["issued_at"])
    expires = calendar.timegm(time.strptime(tok["expires"], "%Y-%m-%dT%H:%M:%SZ"))
    assert before + 43200 - 2 <= expires <= time.time() + 43200
    image = [e for e in access["serviceCatalog"] if e["type"] == "image"]
    assert len(image) == 1
    endpoints = {e["region"]: e["publicURL"] for e in image[0]["endpoints"]}
    assert endpoints == emulator.regions
    assert all(not url.endswith("/v2") for url in endpoints.values())
    identity = [e for e in access["serviceCatalog"] if e["type"] == "identity"]
    assert identity[0]["endpoints"][0]["publicURL"] == emulator.identity_url
    assert access["user"]["username"] == tenant.username


async def test_token_by_tenant_name_and_tokens_are_distinct(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    tenant = DEFAULT_TENANTS[1]
    url = emulator.identity_url + "/tokens"
    status, first = await _post(http, url, json=_auth(tenant, by="tenantName"))
    assert status == 200
    assert first["access"]["token"]["tenant"]["id"] == tenant.tenant_id
    _, second = await _post(http, url, json=_auth(tenant, by="tenantName"))
    assert first["access"]["token"]["id"] != second["access"]["token"]["id"]


@pytest.mark.parametrize(
    "body",
    [
        _auth(DEFAULT_TENANTS[0], password="wrong"),
        _auth(TenantSpec("nobody", "f" * 32, "demo-src@example.com", "demo-src-password")),
        # A known tenant with another tenant's user.
        {
            "auth": {
                "tenantId": DEFAULT_TENANTS[1].tenant_id,
                "passwordCredentials": {
                    "username": DEFAULT_TENANTS[0].username,
                    "password": DEFAULT_TENANTS[0].password,
                },
            }
        },
    ],
    ids=["wrong-password", "unknown-tenant", "other-tenants-user"],
)
async def test_bad_credentials_are_401_in_keystone_shape(
    emulator: Emulator, http: aiohttp.ClientSession, body: Any
) -> None:
    status, answer = await _post(http, emulator.identity_url + "/tokens", json=body)
    assert status == 401
    assert answer["error"]["code"] == 401
    assert answer["error"]["title"] == "Unauthorized"
    assert "password" not in answer["error"]["message"].lower()


@pytest.mark.parametrize(
    "payload",
    [
        {"data": b"{not json"},
        {"json": {"nothing": 1}},
        {"json": {"auth": {"tenantId": "x"}}},
        {"json": {"auth": {"passwordCredentials": {"username": "u", "password": "p"}}}},
        {
            "json": {
                "auth": {"tenantId": 5, "passwordCredentials": {"username": "u", "password": "p"}}
            }
        },
    ],
    ids=["not-json", "no-auth", "no-credentials", "no-tenant", "tenant-not-a-string"],
)
async def test_malformed_token_requests_are_400(
    emulator: Emulator, http: aiohttp.ClientSession, payload: dict[str, Any]
) -> None:
    status, answer = await _post(http, emulator.identity_url + "/tokens", **payload)
    assert status == 400
    assert answer["error"]["code"] == 400


async def test_image_api_refuses_missing_and_unknown_tokens(
    emulator: Emulator, http: aiohttp.ClientSession, src: Api
) -> None:
    missing = await src.call("GET", "/v2/images", auth=False)
    assert missing.status == 401
    assert missing.json()["error"]["code"] == 401
    assert "Keystone" in missing.headers["WWW-Authenticate"]
    unknown = await src.call("GET", "/v2/images", headers={"X-Auth-Token": "0" * 32}, auth=False)
    assert unknown.status == 401
    assert (await src.list()).status == 200


async def test_tokens_expire_after_their_lifetime(http: aiohttp.ClientSession) -> None:
    async with Emulator(token_ttl=0.3) as emu:
        api = Api(http, emu.regions["KR1"], await token(emu, "demo-src", http))
        assert (await api.list()).status == 200
        await asyncio.sleep(0.4)
        assert (await api.list()).status == 401
        api.token = await token(emu, "demo-src", http)
        assert (await api.list()).status == 200


async def test_expire_tokens_invalidates_every_token_at_once(
    emulator: Emulator, src: Api, dst: Api
) -> None:
    issued = emulator.issue_token(emulator.tenant("demo-dst").tenant_id)
    emulator.expire_tokens()
    assert (await src.list()).status == 401
    assert (await dst.list()).status == 401
    assert (await dst.list()).status == 401
    other = Api(src.session, src.base, issued)
    assert (await other.list()).status == 401


async def test_issue_token_in_process_works_over_http_and_refuses_unknown_tenants(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    issued = emulator.issue_token(DEFAULT_TENANTS[0].tenant_id)
    api = Api(http, emulator.regions["KR2"], issued)
    assert (await api.list()).status == 200
    with pytest.raises(ValueError, match="unknown tenant"):
        emulator.issue_token("0" * 32)


def test_tenant_repr_hides_the_password_and_ids_derive_from_names() -> None:
    spec = DEFAULT_TENANTS[0]
    assert spec.password not in repr(spec)
    assert re.fullmatch(r"[0-9a-f]{32}", derive_tenant_id("team-a"))
    assert derive_tenant_id("team-a") == derive_tenant_id("team-a") != derive_tenant_id("team-b")
