"""Keystone v3 tokens in the emulator: password and token authentication, scopes, the token
document and catalog, validation and revocation, refusals, and use at the image regions."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from transfer.emulator import DEFAULT_TENANTS, Emulator, TenantSpec, derive_tenant_id

pytestmark = pytest.mark.asyncio(loop_scope="module")

SRC, DST = DEFAULT_TENANTS
EXTRA = TenantSpec("demo-extra", derive_tenant_id("demo-extra"), SRC.username, "extra-password")
AUTH_REQUIRED = "The request you have made requires authentication."
EXPIRES = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000000Z$")
ISSUED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(tenants=(SRC, DST, EXTRA), identity_versions=("v2.0", "v3")) as emu:
        yield emu


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def password_auth(
    spec: TenantSpec,
    scope: Any = None,
    *,
    password: str | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """A v3 password request: the user by name in domain Default (or by ``user_id``)."""
    user: dict[str, Any] = {"password": spec.password if password is None else password}
    if user_id is None:
        user.update(name=spec.username, domain={"name": "Default"})
    else:
        user["id"] = user_id
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def project(spec: TenantSpec) -> dict[str, Any]:
    return {"project": {"id": spec.tenant_id}}


async def issue(
    emu: Emulator, http: aiohttp.ClientSession, body: Any, query: str = ""
) -> tuple[int, str | None, Any]:
    async with http.post(emu.identity_v3_url + "/auth/tokens" + query, json=body) as resp:
        return resp.status, resp.headers.get("X-Subject-Token"), await resp.json()


async def scoped(emu: Emulator, http: aiohttp.ClientSession, spec: TenantSpec) -> str:
    status, token, body = await issue(emu, http, password_auth(spec, project(spec)))
    assert status == 201 and token is not None, body
    return token


async def images_status(emu: Emulator, http: aiohttp.ClientSession, token: str, region: str) -> int:
    async with http.get(emu.regions[region] + "/v2/images", headers={"X-Auth-Token": token}) as r:
        return r.status


async def test_password_token_scoped_by_project_id_with_catalog(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, token_id, body = await issue(emu, http, password_auth(SRC, project(SRC)))
    assert status == 201
    assert token_id is not None and re.fullmatch(r"[0-9a-f]{32}", token_id)
    token = body["token"]
    assert token["methods"] == ["password"]
    assert token["user"]["name"] == SRC.username
    assert token["user"]["domain"] == {"id": "default", "name": "Default"}
    assert token["project"] == {
        "id": SRC.tenant_id,
        "name": SRC.name,
        "domain": {"id": "default", "name": "Default"},
    }
    assert token["is_domain"] is False
    assert {r["name"] for r in token["roles"]} >= {"member"}
    assert EXPIRES.match(token["expires_at"]) and ISSUED.match(token["issued_at"])
    assert len(token["audit_ids"]) == 1
    image = next(s for s in token["catalog"] if s["type"] == "image")
    by_interface: dict[str, dict[str, str]] = {}
    for ep in image["endpoints"]:
        assert ep["region"] == ep["region_id"]
        by_interface.setdefault(ep["interface"], {})[ep["region"]] = ep["url"]
    assert by_interface == {i: emu.regions for i in ("public", "internal", "admin")}
    assert len({ep["id"] for ep in image["endpoints"]}) == 3 * len(emu.regions)
    identity = next(s for s in token["catalog"] if s["type"] == "identity")
    assert {ep["url"] for ep in identity["endpoints"]} == {emu.identity_v3_url}
    assert await images_status(emu, http, token_id, "KR1") == 200
    assert await images_status(emu, http, token_id, "KR2") == 200


async def test_scope_by_project_name_and_domain_user_by_id_and_nocatalog(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    _, _, first = await issue(emu, http, password_auth(DST, project(DST)))
    user_id = first["token"]["user"]["id"]
    scope = {"project": {"name": DST.name, "domain": {"id": "default"}}}
    body = password_auth(DST, scope, user_id=user_id)
    status, token_id, answer = await issue(emu, http, body, "?nocatalog")
    assert status == 201, answer
    assert answer["token"]["project"]["id"] == DST.tenant_id
    assert answer["token"]["user"]["id"] == user_id
    assert "catalog" not in answer["token"]
    assert token_id is not None and await images_status(emu, http, token_id, "KR1") == 200


async def test_unscoped_token_lists_projects_and_rescopes(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, unscoped, body = await issue(emu, http, password_auth(SRC))
    assert status == 201 and unscoped is not None
    assert "project" not in body["token"] and "catalog" not in body["token"]
    assert await images_status(emu, http, unscoped, "KR1") == 401
    async with http.get(
        emu.identity_v3_url + "/auth/projects", headers={"X-Auth-Token": unscoped}
    ) as resp:
        names = sorted(p["name"] for p in (await resp.json())["projects"])
    assert names == ["demo-extra", "demo-src"]
    rescope = {
        "auth": {
            "identity": {"methods": ["token"], "token": {"id": unscoped}},
            "scope": {"project": {"name": EXTRA.name, "domain": {"name": "Default"}}},
        }
    }
    status, token_id, answer = await issue(emu, http, rescope)
    assert status == 201, answer
    assert answer["token"]["methods"] == ["token"]
    assert answer["token"]["project"]["id"] == EXTRA.tenant_id
    assert answer["token"]["expires_at"] == body["token"]["expires_at"]
    assert token_id is not None and await images_status(emu, http, token_id, "KR1") == 200
    rescope["auth"]["scope"] = project(DST)
    status, _, refused = await issue(emu, http, rescope)
    assert (status, refused["error"]["code"]) == (401, 401)


async def test_the_password_of_the_scoped_tenant_is_the_one_accepted(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    status, _, _ = await issue(emu, http, password_auth(EXTRA, project(EXTRA)))
    assert status == 201
    body = password_auth(SRC, project(EXTRA))  # demo-src's password, for demo-extra
    assert (await issue(emu, http, body))[0] == 401


def _body(**changes: Any) -> dict[str, Any]:
    base = password_auth(SRC, project(SRC))
    auth = base["auth"]
    for path, value in changes.items():
        where, key = path.rsplit("__", 1) if "__" in path else ("", path)
        target = auth
        for part in filter(None, where.split("__")):
            target = target[part]
        if value is None:
            del target[key]
        else:
            target[key] = value
    return base


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (password_auth(SRC, project(SRC), password="wrong"), 401, AUTH_REQUIRED),
        (_body(identity__password__user__name="nobody"), 401, AUTH_REQUIRED),
        (_body(identity__password__user__domain={"name": "Other"}), 401, AUTH_REQUIRED),
        (_body(scope=project(DST)), 401, "has no access to project"),
        (_body(scope={"project": {"id": "0" * 32}}), 401, AUTH_REQUIRED),
        (_body(scope={"domain": {"id": "default"}}), 401, "Only project scope"),
        (_body(identity__methods=["totp"]), 401, "unsupported method"),
        ({"nothing": 1}, 400, "auth"),
        (_body(identity__methods="password"), 400, "identity/methods"),
        (_body(identity__password__user__password=None), 400, "password"),
        (_body(identity__password__user__domain=None), 400, "domain"),
        (_body(scope={"project": {"name": SRC.name}}), 400, "domain"),
    ],
    ids=[
        "wrong-password",
        "unknown-user",
        "unknown-domain",
        "other-users-project",
        "unknown-project",
        "domain-scope",
        "unsupported-method",
        "no-auth",
        "methods-not-a-list",
        "no-password",
        "user-name-without-domain",
        "project-name-without-domain",
    ],
)
async def test_refusals_in_keystone_shape(
    emu: Emulator, http: aiohttp.ClientSession, body: Any, status: int, message: str
) -> None:
    async with http.post(emu.identity_v3_url + "/auth/tokens", json=body) as resp:
        text = await resp.text()
        assert resp.status == status, text
        assert "X-Subject-Token" not in resp.headers
        if status == 401:
            assert resp.headers["WWW-Authenticate"].startswith("Keystone uri=")
        error = (await resp.json())["error"]
    assert error["code"] == status and message in error["message"]
    assert SRC.password not in text and "wrong" not in text


async def test_not_json_is_400(emu: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.post(emu.identity_v3_url + "/auth/tokens", data=b"{nope") as resp:
        assert resp.status == 400
        assert "not valid JSON" in (await resp.json())["error"]["message"]


async def test_validate_head_and_revoke(emu: Emulator, http: aiohttp.ClientSession) -> None:
    caller = await scoped(emu, http, DST)
    subject = await scoped(emu, http, SRC)
    url = emu.identity_v3_url + "/auth/tokens"
    both = {"X-Auth-Token": caller, "X-Subject-Token": subject}
    async with http.get(url, headers=both) as resp:
        assert resp.status == 200
        assert resp.headers["X-Subject-Token"] == subject
        token = (await resp.json())["token"]
    assert token["project"]["id"] == SRC.tenant_id and "catalog" in token
    async with http.get(url + "?nocatalog", headers=both) as resp:
        assert "catalog" not in (await resp.json())["token"]
    async with http.head(url, headers=both) as resp:
        assert resp.status == 200
    async with http.get(url, headers={"X-Subject-Token": subject}) as resp:
        assert resp.status == 401
    async with http.get(url, headers={"X-Auth-Token": caller}) as resp:
        assert resp.status == 400
    async with http.delete(url, headers=both) as resp:
        assert resp.status == 204
    async with http.get(url, headers=both) as resp:
        assert (resp.status, (await resp.json())["error"]["code"]) == (404, 404)
        assert subject not in await resp.text()
    async with http.head(url, headers=both) as resp:
        assert resp.status == 404
    assert await images_status(emu, http, subject, "KR1") == 401
    assert await images_status(emu, http, caller, "KR1") == 200


async def test_catalog_of_the_caller(emu: Emulator, http: aiohttp.ClientSession) -> None:
    token = await scoped(emu, http, SRC)
    async with http.get(
        emu.identity_v3_url + "/auth/catalog", headers={"X-Auth-Token": token}
    ) as resp:
        catalog = (await resp.json())["catalog"]
    assert {s["type"] for s in catalog} == {"image", "identity"}
    _, unscoped, _ = await issue(emu, http, password_auth(SRC))
    assert unscoped is not None
    async with http.get(
        emu.identity_v3_url + "/auth/catalog", headers={"X-Auth-Token": unscoped}
    ) as resp:
        assert resp.status == 403


async def test_expiry_and_faults_apply_to_v3_tokens(http: aiohttp.ClientSession) -> None:
    async with Emulator(identity_versions=("v3",)) as emu:
        token = await scoped(emu, http, SRC)
        v2_era = emu.issue_token(DST.tenant_id)
        emu.expire_tokens()
        assert await images_status(emu, http, token, "KR1") == 401
        assert await images_status(emu, http, v2_era, "KR1") == 401
        emu.set_faults(error_rate=1.0, error_routes={"token"}, error_statuses=(503,))
        status, subject, body = await issue(emu, http, password_auth(SRC, project(SRC)))
        assert (status, subject, body["error"]["code"]) == (503, None, 503)
        assert emu.identity_counters()["requests"]["token"] == 2
        emu.set_faults(error_rate=0.0)
        assert await images_status(emu, http, await scoped(emu, http, SRC), "KR1") == 200


async def test_tokens_live_for_token_ttl(http: aiohttp.ClientSession) -> None:
    async with Emulator(identity_versions=("v3",), token_ttl=0.3) as emu:
        token = await scoped(emu, http, SRC)
        assert await images_status(emu, http, token, "KR1") == 200
        await asyncio.sleep(0.4)
        assert await images_status(emu, http, token, "KR1") == 401
