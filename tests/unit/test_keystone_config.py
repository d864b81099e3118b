"""Keystone v3 in the config: ``[clouds.NAME]`` keys, clouds.yaml entries and ``OS_*``
variables, with the problems a user sees for each mistake (and never a secret in them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config_files import write_private
from transfer.config.loader import load_config, load_credentials
from transfer.config.settings import Secret
from transfer.errors import ConfigError

V3 = "https://keystone.private.example:5000/v3"
ENV = {"PW": "pw-secret-1", "APP": "app-secret-2", "HOME": "/home/op"}
JOB = """
[[jobs]]
name = "migrate"
source = { cloud = "private", region = "RegionOne" }
targets = [ { cloud = "private", region = "RegionTwo" } ]
"""


def cloud(body: str) -> str:
    return f"[clouds.private]\n{body}\n" + JOB


def load(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> Path:
    return write_private(tmp_path / "config.toml", text)


def problems(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(load(text, tmp_path), environ=ENV if environ is None else environ)
    for secret in ENV.values():
        assert secret not in str(caught.value.problems)
    return [p.split(": ", 1)[1] for p in caught.value.problems]


def test_a_v3_password_cloud_by_names_and_domains(tmp_path: Path) -> None:
    path = load(
        cloud(
            f'identity_url = "{V3}"\nproject_name = "web"\nproject_domain_name = "Default"\n'
            'username = "op"\nuser_domain_id = "default"\npassword_env = "PW"\n'
            'region = "regionone"'
        ),
        tmp_path,
    )
    creds = load_config(path, environ=ENV).clouds["private"]
    assert (creds.tenant_name, creds.tenant_id) == ("web", None)
    assert (creds.project_domain_name, creds.user_domain_id) == ("Default", "default")
    assert creds.password == Secret("pw-secret-1")
    assert creds.region == "REGIONONE"


def test_an_application_credential_cloud_needs_no_project(tmp_path: Path) -> None:
    path = load(
        cloud(
            f'identity_url = "{V3}"\napplication_credential_id = "ac1"\n'
            'application_credential_secret_env = "APP"'
        ),
        tmp_path,
    )
    creds = load_config(path, environ=ENV).clouds["private"]
    assert creds.application_credential_secret == Secret("app-secret-2")
    assert creds.password is None and creds.tenant_id is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            f'identity_url = "{V3}"\nproject_id = "p"\nusername = "op"\npassword_env = "PW"',
            "expected user_domain_name or user_domain_id with a Keystone v3 user name, got "
            "neither (most clouds name it user_domain_name = 'Default')",
        ),
        (
            f'identity_url = "{V3}"\nproject_name = "web"\nusername = "op"\n'
            'user_domain_name = "Default"\npassword_env = "PW"',
            "expected project_domain_name or project_domain_id with project_name (or "
            "project_id alone), got neither",
        ),
        (
            f'identity_url = "{V3}"\ntenant_id = "t"\nproject_id = "p"\nusername = "op"\n'
            'user_domain_name = "Default"\npassword_env = "PW"',
            "expected project_id or tenant_id (the Keystone v3 and v2.0 names of one "
            "setting), got both",
        ),
        (
            'identity_url = "https://id.example/v2.0"\ntenant_id = "t"\nusername = "op"\n'
            'user_domain_name = "Default"\npassword_env = "PW"',
            "is a Keystone v3 setting, but identity_url ends in /v2.0 (use the /v3 URL)",
        ),
        (
            'identity_url = "https://id.example/v2.0"\napplication_credential_id = "a"\n'
            'application_credential_secret_env = "APP"',
            "an application credential needs Keystone v3, but identity_url ends in /v2.0",
        ),
        (
            f'identity_url = "{V3}"\napplication_credential_secret_env = "APP"',
            "expected application_credential_id (or application_credential_name with "
            "username) beside the application credential secret",
        ),
        (
            f'identity_url = "{V3}"\napplication_credential_id = "a"\n'
            'application_credential_secret_env = "APP"\npassword_env = "PW"\nusername = "op"',
            "expected either a password or an application credential, got both "
            "(password_env, application_credential_secret_env)",
        ),
        (
            'identity_url = "https://id.example/identity"\ntenant_id = "t"\nusername = "op"\n'
            'password_env = "PW"',
            "expected an identity URL ending in /v3 or /v2.0, or the bare root of the identity "
            "service (its versions are discovered), got 'https://id.example/identity'",
        ),
        (
            f'identity_url = "{V3}"\nproject_id = "p"\nusername = "op"\n'
            'user_domain = "Default"\npassword_env = "PW"',
            "unknown key (did you mean 'user_domain_id'?)",
        ),
    ],
    ids=[
        "no user domain",
        "no project domain",
        "both spellings",
        "v3 key on v2.0",
        "app credential on v2.0",
        "app secret without id",
        "two modes",
        "other path",
        "typo",
    ],
)
def test_v3_mistakes_are_named(body: str, expected: str, tmp_path: Path) -> None:
    found = problems(cloud(body), tmp_path)
    assert any(p.endswith(expected) for p in found), found


def test_an_inline_application_credential_secret_is_warned_about_not_shown(
    tmp_path: Path,
) -> None:
    path = load(
        cloud(
            f'identity_url = "{V3}"\napplication_credential_id = "a"\n'
            'application_credential_secret = "inline-app-secret"'
        ),
        tmp_path,
    )
    config = load_config(path, environ=ENV)
    assert any("a plain application credential secret" in w for w in config.warnings)
    assert "inline-app-secret" not in repr(config)


def write_clouds_yaml(tmp_path: Path, entry: str) -> dict[str, str]:
    (tmp_path / "clouds.yaml").write_text("clouds:\n  private:\n" + entry)
    return {**ENV, "OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml")}


def test_a_clouds_yaml_application_credential_with_its_region(tmp_path: Path) -> None:
    env = write_clouds_yaml(
        tmp_path,
        "    auth_type: v3applicationcredential\n"
        "    auth:\n"
        "      auth_url: https://keystone.private.example:5000\n"
        "      application_credential_id: ac1\n"
        "      application_credential_secret: yaml-app-secret\n"
        "      password: ignored-by-auth-type\n"
        "    identity_api_version: 3\n"
        "    region_name: RegionOne\n",
    )
    path = load('[clouds.private]\nos_cloud = "private"\n', tmp_path)
    creds = load_credentials(path, "private", environ=env)
    assert creds.identity_url == "https://keystone.private.example:5000/v3"
    assert creds.application_credential_secret == Secret("yaml-app-secret")
    assert creds.password is None
    assert creds.region == "REGIONONE"


def test_clouds_yaml_auth_type_and_interface_mistakes(tmp_path: Path) -> None:
    env = write_clouds_yaml(
        tmp_path,
        "    auth_type: v3oidcpassword\n"
        "    interface: internal\n"
        "    identity_api_version: 2\n"
        "    auth: {auth_url: 'https://k.example/v3', username: u, password: p}\n",
    )
    found = problems('[clouds.private]\nos_cloud = "private"\n' + JOB, tmp_path, env)
    joined = "\n".join(found)
    assert "auth_type 'v3oidcpassword' is not supported (expected one of password," in joined
    assert "interface 'internal' is not supported: only the public endpoints are used" in joined
    assert "identity_api_version is 2, but the identity URL https://k.example/v3 ends in /v3" in (
        joined
    )


def test_os_variables_of_a_v3_cloud(tmp_path: Path) -> None:
    env = {
        **ENV,
        "OS_AUTH_URL": "https://keystone.private.example:5000/",
        "OS_IDENTITY_API_VERSION": "3",
        "OS_USERNAME": "op",
        "OS_PASSWORD": "os-password-3",
        "OS_PROJECT_NAME": "web",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_ID": "default",
        "OS_REGION_NAME": "RegionOne",
    }
    path = load("[clouds.private]\nfrom_env = true\n", tmp_path)
    creds = load_credentials(path, "private", environ=env)
    assert creds.identity_url == "https://keystone.private.example:5000/v3"
    assert (creds.user_domain_name, creds.project_domain_id) == ("Default", "default")
    assert (creds.tenant_name, creds.region) == ("web", "REGIONONE")
    assert creds.password == Secret("os-password-3")

    env["OS_AUTH_TYPE"] = "v3applicationcredential"
    env["OS_APPLICATION_CREDENTIAL_SECRET"] = "os-app-secret-4"
    env["OS_APPLICATION_CREDENTIAL_ID"] = "ac9"
    creds = load_credentials(path, "private", environ=env)
    assert creds.application_credential_secret == Secret("os-app-secret-4")
    assert creds.password is None
