"""What OpenStack clients look up in Keystone v3: projects, domains and the caller's user.

Any live token may read any project by id or list projects by name: openstackclient resolves
the project it shares an image with this way.  (Keystone's default policy lets a member read
its own projects only and answers 403 to the rest, which makes clients fall back to using the
given value as an id; the emulator is lenient so that names resolve too.)  A user may read
itself (``GET /v3/users`` lists only the caller) and list its own projects only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from transfer.emulator.identity.common import Caller, forbidden, not_found
from transfer.emulator.identity.directory import (
    DOMAIN_ID,
    DOMAIN_NAME,
    Directory,
    TenantSpec,
    User,
)
from transfer.emulator.identity.tokens import TokenBook
from transfer.emulator.middleware import RouteTable
from transfer.emulator.responses import json_response

Catalog = Callable[[], tuple[str, Mapping[str, str]]]


class V3Lookups:
    def __init__(self, directory: Directory, tokens: TokenBook, catalog: Catalog) -> None:
        self._directory = directory
        self._tokens = tokens
        self._catalog = catalog

    @property
    def _root(self) -> str:
        return self._catalog()[0]

    def add_routes(self, table: RouteTable) -> None:
        routes = [
            ("/v3/projects", self.list_projects),
            ("/v3/projects/{project_id}", self.show_project),
            ("/v3/auth/projects", self.auth_projects),
            ("/v3/auth/domains", self.auth_domains),
            ("/v3/users", self.list_users),
            ("/v3/users/{user_id}", self.show_user),
            ("/v3/users/{user_id}/projects", self.user_projects),
            ("/v3/domains", self.list_domains),
            ("/v3/domains/{domain_id}", self.show_domain),
        ]
        for path, handler in routes:
            table.add("GET", path, handler, "identity")

    def _caller(self, request: web.Request) -> Caller:
        return Caller.of(request, self._tokens, self._directory, self._root)

    def _links(self, request: web.Request) -> dict[str, Any]:
        return {"self": self._root + request.path_qs, "previous": None, "next": None}

    def project_doc(self, tenant: TenantSpec) -> dict[str, Any]:
        return {
            "id": tenant.tenant_id,
            "name": tenant.name,
            "domain_id": DOMAIN_ID,
            "description": f"Emulated tenant {tenant.name}",
            "enabled": True,
            "parent_id": DOMAIN_ID,
            "is_domain": False,
            "tags": [],
            "options": {},
            "links": {"self": f"{self._root}/v3/projects/{tenant.tenant_id}"},
        }

    def domain_doc(self) -> dict[str, Any]:
        return {
            "id": DOMAIN_ID,
            "name": DOMAIN_NAME,
            "description": "The default domain",
            "enabled": True,
            "tags": [],
            "options": {},
            "links": {"self": f"{self._root}/v3/domains/{DOMAIN_ID}"},
        }

    def _projects(self, request: web.Request, tenants: tuple[TenantSpec, ...]) -> web.Response:
        name = request.query.get("name")
        domain_id = request.query.get("domain_id")
        chosen = [
            t
            for t in tenants
            if (name is None or t.name == name) and domain_id in (None, DOMAIN_ID)
        ]
        docs = [self.project_doc(t) for t in chosen]
        return json_response({"projects": docs, "links": self._links(request)})

    async def list_projects(self, request: web.Request) -> web.StreamResponse:
        self._caller(request)
        return self._projects(request, self._directory.tenants)

    async def show_project(self, request: web.Request) -> web.StreamResponse:
        self._caller(request)
        project_id = request.match_info["project_id"]
        tenant = self._directory.tenant(project_id)
        if tenant is None:
            raise not_found("project", project_id)
        return json_response({"project": self.project_doc(tenant)})

    async def auth_projects(self, request: web.Request) -> web.StreamResponse:
        return self._projects(request, self._caller(request).user.tenants)

    async def auth_domains(self, request: web.Request) -> web.StreamResponse:
        self._caller(request)
        return json_response({"domains": [self.domain_doc()], "links": self._links(request)})

    async def user_projects(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request)
        if request.match_info["user_id"] != caller.user.id:
            raise forbidden("identity:list_user_projects")
        return self._projects(request, caller.user.tenants)

    async def show_user(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request)
        user_id = request.match_info["user_id"]
        if user_id != caller.user.id:
            if self._directory.user(user_id) is None:
                raise not_found("user", user_id)
            raise forbidden("identity:get_user")
        return json_response({"user": self.user_doc(caller.user)})

    async def list_users(self, request: web.Request) -> web.StreamResponse:
        """Only the caller itself, when it matches the filters (Keystone lets a member list
        no users; clients resolving ``user show NAME`` find themselves this way)."""
        user = self._caller(request).user
        name = request.query.get("name")
        domain_id = request.query.get("domain_id")
        found = name in (None, user.name) and domain_id in (None, DOMAIN_ID)
        docs = [self.user_doc(user)] if found else []
        return json_response({"users": docs, "links": self._links(request)})

    def user_doc(self, user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "name": user.name,
            "domain_id": DOMAIN_ID,
            "enabled": True,
            "password_expires_at": None,
            "options": {},
            "links": {"self": f"{self._root}/v3/users/{user.id}"},
        }

    async def list_domains(self, request: web.Request) -> web.StreamResponse:
        self._caller(request)
        name = request.query.get("name")
        docs = [self.domain_doc()] if name in (None, DOMAIN_NAME) else []
        return json_response({"domains": docs, "links": self._links(request)})

    async def show_domain(self, request: web.Request) -> web.StreamResponse:
        self._caller(request)
        domain_id = request.match_info["domain_id"]
        if domain_id != DOMAIN_ID:
            raise not_found("domain", domain_id)
        return json_response({"domain": self.domain_doc()})
