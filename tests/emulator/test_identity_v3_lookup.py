"""What OpenStack clients look up in the emulator's Keystone v3: projects (any by id or name,
as openstackclient resolves the project it shares an image with), the caller's user and
projects, the Default domain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from transfer.emulator import DEFAULT_TENANTS, Emulator, TenantSpec, derive_tenant_id

pytestmark = pytest.mark.asyncio(loop_scope="module")

SRC, DST = DEFAULT_TENANTS
EXTRA = TenantSpec("demo-extra", derive_tenant_id("demo-extra"), SRC.username, "extra-password")


class Caller:
    """GETs under /v3 with one token (empty: none), and that token's user id."""

    def __init__(self, http: aiohttp.ClientSession, v3: str, token: str, user_id: str) -> None:
        self.http, self.v3, self.token, self.user_id = http, v3, token, user_id

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        headers = {"X-Auth-Token": self.token} if self.token else {}
        async with self.http.get(self.v3 + path, headers=headers, params=params) as resp:
            return resp.status, await resp.json()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(tenants=(SRC, DST, EXTRA), identity_versions=("v3",)) as emu:
        yield emu


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def src(emu: Emulator) -> AsyncIterator[Caller]:
    user = {"name": SRC.username, "domain": {"id": "default"}, "password": SRC.password}
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"id": SRC.tenant_id}},
        }
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(emu.identity_v3_url + "/auth/tokens", json=body) as resp:
            assert resp.status == 201
            token = resp.headers["X-Subject-Token"]
            user_id = (await resp.json())["token"]["user"]["id"]
        yield Caller(http, emu.identity_v3_url, token, user_id)


async def test_any_project_by_id_and_by_name(src: Caller) -> None:
    status, body = await src.get(f"/projects/{DST.tenant_id}")
    assert status == 200
    project = body["project"]
    assert (project["name"], project["domain_id"], project["enabled"]) == (
        "demo-dst",
        "default",
        True,
    )
    assert project["links"]["self"].endswith(f"/v3/projects/{DST.tenant_id}")
    status, body = await src.get("/projects", name="demo-dst")
    assert status == 200 and [p["id"] for p in body["projects"]] == [DST.tenant_id]
    _, body = await src.get("/projects", name="demo-dst", domain_id="default")
    assert len(body["projects"]) == 1
    _, body = await src.get("/projects", name="demo-dst", domain_id="elsewhere")
    assert body["projects"] == []
    _, body = await src.get("/projects", name="nothing-like-this")
    assert body["projects"] == []
    status, body = await src.get(f"/projects/{'0' * 32}")
    assert (status, body["error"]["code"]) == (404, 404)


async def test_the_users_own_projects_and_user(src: Caller) -> None:
    for path in (f"/users/{src.user_id}/projects", "/auth/projects"):
        status, body = await src.get(path)
        assert status == 200
        assert sorted(p["name"] for p in body["projects"]) == ["demo-extra", "demo-src"]
    status, body = await src.get(f"/users/{src.user_id}")
    assert status == 200
    assert (body["user"]["name"], body["user"]["domain_id"]) == (SRC.username, "default")
    _, body = await src.get("/users", name=SRC.username, domain_id="default")
    assert [u["id"] for u in body["users"]] == [src.user_id]


async def test_other_users_are_not_visible(emu: Emulator, src: Caller) -> None:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": DST.username,
                        "domain": {"name": "Default"},
                        "password": DST.password,
                    }
                },
            }
        }
    }
    async with src.http.post(emu.identity_v3_url + "/auth/tokens", json=body) as resp:
        other_id = (await resp.json())["token"]["user"]["id"]
    status, answer = await src.get(f"/users/{other_id}")
    assert (status, answer["error"]["code"]) == (403, 403)
    assert (await src.get(f"/users/{other_id}/projects"))[0] == 403
    assert (await src.get(f"/users/{'0' * 32}"))[0] == 404
    _, body = await src.get("/users", name=DST.username)
    assert body["users"] == []


async def test_the_default_domain(src: Caller) -> None:
    status, body = await src.get("/domains/default")
    assert (status, body["domain"]["name"]) == (200, "Default")
    _, body = await src.get("/domains", name="Default")
    assert [d["id"] for d in body["domains"]] == ["default"]
    _, body = await src.get("/domains", name="Other")
    assert body["domains"] == []
    assert (await src.get("/domains/other"))[0] == 404
    _, body = await src.get("/auth/domains")
    assert [d["id"] for d in body["domains"]] == ["default"]


@pytest.mark.parametrize(
    "path", ["/projects", f"/projects/{DST.tenant_id}", "/auth/projects", "/domains/default"]
)
@pytest.mark.parametrize("token", ["", "0" * 32])
async def test_lookups_need_a_live_token(src: Caller, path: str, token: str) -> None:
    anonymous = Caller(src.http, src.v3, token, "")
    status, body = await anonymous.get(path)
    assert (status, body["error"]["message"]) == (
        401,
        "The request you have made requires authentication.",
    )
