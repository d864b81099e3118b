"""Who a ``POST /v3/auth/tokens`` request authenticates, and to which project.

Methods: ``password`` (user by id, or name and domain), ``token`` (re-scope a live token; the
new token keeps the old one's expiry, as Keystone's does) and ``application_credential`` (by
id, or name and user; always scoped to the credential's project).  Scope: a project by id,
or by name and domain; none (or ``"unscoped"``) gives an unscoped token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transfer.emulator.identity.appcreds import AppCred, AppCredBook
from transfer.emulator.identity.common import bad, member, opt_str, unauthorized
from transfer.emulator.identity.directory import (
    DOMAIN_ID,
    DOMAIN_NAME,
    Directory,
    TenantSpec,
    User,
)
from transfer.emulator.identity.tokens import TokenBook
from transfer.emulator.responses import HttpError

METHODS = ("password", "token", "application_credential")


@dataclass(frozen=True)
class Grant:
    """What a token request earned: its user, project (None = unscoped) and method."""

    user: User
    tenant: TenantSpec | None
    method: str
    app_cred: AppCred | None = None
    not_after: float | None = None


class V3Authenticator:
    def __init__(
        self,
        directory: Directory,
        tokens: TokenBook,
        appcreds: AppCredBook,
        root: Callable[[], str],
    ) -> None:
        self._directory = directory
        self._tokens = tokens
        self._appcreds = appcreds
        self._root = root

    def _denied(self, message: str | None = None) -> HttpError:
        return (
            unauthorized(self._root()) if message is None else unauthorized(self._root(), message)
        )

    def authenticate(self, body: dict[str, Any]) -> Grant:
        auth = member(body, "auth", "the request body")
        identity = member(auth, "identity", "auth")
        methods = identity.get("methods")
        if (
            not isinstance(methods, list)
            or not methods
            or not all(isinstance(m, str) for m in methods)
        ):
            raise bad("Invalid input for field 'identity/methods': expected a list of strings.")
        if len(set(methods)) != 1 or methods[0] not in METHODS:
            raise self._denied("Attempted to authenticate with an unsupported method.")
        method = methods[0]
        payload = member(identity, method, "identity")
        scope = auth.get("scope")
        if method == "application_credential":
            if scope is not None:
                raise self._denied("Application credentials cannot request a scope.")
            return self._app_cred(payload)
        tenant = self._scope(scope)
        if method == "password":
            return Grant(self._password(payload, tenant), tenant, method)
        return self._rescope(payload, tenant)

    def _scope(self, scope: Any) -> TenantSpec | None:
        if scope is None or scope == "unscoped":
            return None
        if not isinstance(scope, dict):
            raise bad("Invalid input for field 'auth/scope': expected an object or 'unscoped'.")
        if "project" not in scope:
            raise self._denied(
                "Only project scope is served: the emulated cloud has no domain "
                "or system role assignments."
            )
        project = member(scope, "project", "scope")
        project_id = opt_str(project, "id", "scope/project")
        if project_id is not None:
            tenant = self._directory.tenant(project_id)
        else:
            name = opt_str(project, "name", "scope/project")
            if name is None:
                raise bad("Expecting to find id or name in scope/project.")
            self._domain(member(project, "domain", "scope/project"), "scope/project/domain")
            tenant = self._directory.tenant_named(name)
        if tenant is None:
            raise self._denied()
        return tenant

    def _domain(self, domain: dict[str, Any], where: str) -> None:
        domain_id = opt_str(domain, "id", where)
        domain_name = opt_str(domain, "name", where)
        if domain_id is None and domain_name is None:
            raise bad(f"Expecting to find id or name in {where}.")
        if (domain_id is not None and domain_id != DOMAIN_ID) or (
            domain_name is not None and domain_name != DOMAIN_NAME
        ):
            raise self._denied()

    def _user(self, given: dict[str, Any], where: str) -> User:
        user_id = opt_str(given, "id", where)
        if user_id is not None:
            user = self._directory.user(user_id)
        else:
            name = opt_str(given, "name", where)
            if name is None:
                raise bad(f"Expecting to find id or name in {where}.")
            self._domain(member(given, "domain", where), where + "/domain")
            user = self._directory.user_named(name)
        if user is None:
            raise self._denied()
        return user

    def _password(self, payload: dict[str, Any], tenant: TenantSpec | None) -> User:
        given = member(payload, "user", "identity/password")
        password = given.get("password")
        if not isinstance(password, str):
            raise bad("Expecting to find password in identity/password/user: a string.")
        user = self._user(given, "identity/password/user")
        usable = tenant is None or self._directory.may_use(user, tenant)
        if not self._directory.password_ok(user, password, tenant if usable else None):
            raise self._denied()
        if not usable:
            assert tenant is not None
            raise self._denied(f"User {user.id} has no access to project {tenant.tenant_id}.")
        return user

    def _rescope(self, payload: dict[str, Any], tenant: TenantSpec | None) -> Grant:
        token_id = payload.get("id")
        if not isinstance(token_id, str):
            raise bad("Expecting to find id in identity/token: a string.")
        token = self._tokens.get(token_id)
        user = self._directory.user_of(token.username, token.tenant_id) if token else None
        if token is None or user is None:
            raise self._denied()
        if (
            token.app_cred_id is not None
            and tenant is not None
            and (tenant.tenant_id != token.tenant_id)
        ):
            raise self._denied("A token from an application credential cannot be re-scoped.")
        if tenant is not None and not self._directory.may_use(user, tenant):
            raise self._denied(f"User {user.id} has no access to project {tenant.tenant_id}.")
        cred = self._appcreds.get(token.app_cred_id) if token.app_cred_id else None
        if cred is not None and tenant is None:
            tenant = self._directory.tenant(cred.project_id)
        return Grant(user, tenant, "token", cred, token.expires_at)

    def _app_cred(self, payload: dict[str, Any]) -> Grant:
        secret = payload.get("secret")
        if not isinstance(secret, str):
            raise bad("Expecting to find secret in identity/application_credential: a string.")
        cred_id = opt_str(payload, "id", "identity/application_credential")
        if cred_id is not None:
            cred = self._appcreds.get(cred_id)
        else:
            name = opt_str(payload, "name", "identity/application_credential")
            if name is None:
                raise bad("Expecting to find id or name in identity/application_credential.")
            where = "identity/application_credential/user"
            user = self._user(member(payload, "user", "identity/application_credential"), where)
            cred = self._appcreds.named(user.id, name)
        if cred is None or not cred.secret_ok(secret) or not cred.live():
            raise self._denied()
        owner = self._directory.user(cred.user_id)
        tenant = self._directory.tenant(cred.project_id)
        if owner is None or tenant is None or not self._directory.may_use(owner, tenant):
            raise self._denied()
        return Grant(owner, tenant, "application_credential", cred, cred.expires_at)
