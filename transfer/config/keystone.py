"""The Keystone rules of a cloud's credentials, shared by the config's ``[clouds.NAME]`` tables
and the ``images`` command: which version an ``identity_url`` names, and what each mode
(password, application credential, token) needs with it.

Keystone v3 names users and projects within a domain, so a v3 user name needs its domain
(``user_domain_name`` or ``user_domain_id``) and a project name its own
(``project_domain_name`` or ``project_domain_id``).  Like openstacksdk, nothing assumes the
``Default`` domain: most clouds use it, but a silent default would send a password to the wrong
user of another domain.  A bare identity root (no ``/v3`` or ``/v2.0``) is asked for its
versions when the first token is issued, and these rules are checked then.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from transfer.config.settings import IdentityVersion

#: Keys only Keystone v3 knows.
V3_KEYS = (
    "user_domain_name",
    "user_domain_id",
    "project_domain_name",
    "project_domain_id",
    "application_credential_id",
    "application_credential_name",
)


class Mode(enum.StrEnum):
    PASSWORD = "password"
    APPLICATION_CREDENTIAL = "application credential"
    TOKEN = "token"


def keystone_problems(
    fields: Mapping[str, str | None],
    *,
    mode: Mode,
    version: IdentityVersion | None,
    names: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """What is wrong, as (key, message) pairs (key ``""``: the cloud as a whole), the keys
    spelled as ``names`` says (``OS_USER_DOMAIN_NAME``, ...).  ``fields`` holds the string keys
    of a cloud: ``username``, ``tenant_id``, ``tenant_name`` and the ``V3_KEYS``."""
    names = names or {}

    def name(key: str) -> str:
        return names.get(key, key)

    def either(first: str, second: str) -> str:
        return f"{name(first)} or {name(second)}"

    problems: list[tuple[str, str]] = []
    for kind in ("user_domain", "project_domain", "application_credential"):
        if fields.get(f"{kind}_id") and fields.get(f"{kind}_name"):
            both = either(f"{kind}_id", f"{kind}_name")
            problems.append(("", f"expected {both}, got both"))
    if version is IdentityVersion.V2:
        problems += [
            (key, "is a Keystone v3 setting, but identity_url ends in /v2.0 (use the /v3 URL)")
            for key in V3_KEYS
            if fields.get(key) and (mode is not Mode.TOKEN or not key.endswith("_id"))
        ]
        if mode is Mode.APPLICATION_CREDENTIAL:
            problems.append(
                ("", "an application credential needs Keystone v3, but identity_url ends in /v2.0")
            )
        return problems
    user_domain = fields.get("user_domain_id") or fields.get("user_domain_name")
    user_domain_needed = (
        f"expected {either('user_domain_name', 'user_domain_id')} with a Keystone v3 user "
        "name, got neither (most clouds name it user_domain_name = 'Default')"
    )
    if mode is Mode.APPLICATION_CREDENTIAL:
        if not fields.get("application_credential_id"):
            if not (fields.get("application_credential_name") and fields.get("username")):
                problems.append(
                    (
                        "",
                        f"expected {name('application_credential_id')} (or "
                        f"{name('application_credential_name')} with {name('username')}) "
                        "beside the application credential secret",
                    )
                )
            elif not user_domain and version is IdentityVersion.V3:
                problems.append(("", user_domain_needed))
    elif mode is Mode.PASSWORD:
        problems += [
            (key, f"expected with an application credential secret ({key} given, no secret)")
            for key in ("application_credential_id", "application_credential_name")
            if fields.get(key)
        ]
        if version is IdentityVersion.V3 and fields.get("username"):
            if not user_domain:
                problems.append(("", user_domain_needed))
            project_domain = fields.get("project_domain_id") or fields.get("project_domain_name")
            if fields.get("tenant_name") and not fields.get("tenant_id") and not project_domain:
                problems.append(
                    (
                        "",
                        f"expected {either('project_domain_name', 'project_domain_id')} with "
                        f"{name('tenant_name')} (or {name('tenant_id')} alone), got neither",
                    )
                )
    return problems
