"""Messages that name things, as a user meets them through the CLI: refused credentials name the
cloud, the tenant and the user (never the password); a wrong tenant reads differently from a
wrong password where the identity service tells them apart (Keystone v3 does, v2.0 does not);
an identity service nobody listens on fails within seconds, naming the cloud and the URL."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from tests.engine.helpers import DST, SRC, TENANTS, Outcome, cli, job_toml
from transfer.cli.main import ExitCode
from transfer.emulator import Emulator, TenantSpec

pytestmark = pytest.mark.asyncio(loop_scope="module")

WRONG_PASSWORD = "not-the-password-7c1e"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(
        regions=("KR1", "KR2"), tenants=TENANTS, identity_versions=("v2.0", "v3")
    ) as emulator:
        yield emulator


def _config(directory: Path, identity_url: str, src: TenantSpec, *, v3: bool = False) -> Path:
    """A config whose cloud ``src`` uses these credentials (the password inline in a private
    file: the test reads stderr, and the password must not be in it)."""
    directory.mkdir()
    domain = 'user_domain_name = "Default"\n' if v3 else ""
    clouds = []
    for name, spec in (("src", src), ("dst", DST)):
        clouds.append(
            f'[clouds.{name}]\nidentity_url = "{identity_url}"\n'
            f'tenant_id = "{spec.tenant_id}"\nusername = "{spec.username}"\n'
            f'password_file = "{name}.password"\n{domain}'
        )
        secret = directory / f"{name}.password"
        secret.write_text(spec.password)
        secret.chmod(0o600)
    path = directory / "config.toml"
    path.write_text(
        '[journal]\npath = "journal.db"\n\n'
        + "\n".join(clouds)
        + job_toml(targets=(("src", "KR2"),))
    )
    return path


async def _plan(directory: Path, identity_url: str, src: TenantSpec, v3: bool = False) -> Outcome:
    return await cli("plan", "-c", str(_config(directory, identity_url, src, v3=v3)))


def _refused(outcome: Outcome) -> str:
    assert outcome.code == ExitCode.FATAL, outcome.err
    assert "Traceback" not in outcome.err
    assert WRONG_PASSWORD not in outcome.err and SRC.password not in outcome.err
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1, outcome.err
    return lines[0]


async def test_refused_credentials_name_the_cloud_tenant_and_user(
    emu: Emulator, tmp_path: Path
) -> None:
    wrong_password = replace(SRC, password=WRONG_PASSWORD)
    wrong_tenant = replace(SRC, tenant_id=DST.tenant_id)  # SRC's user and password, DST's tenant
    v2_password, v2_tenant, v3_password, v3_tenant = await asyncio.gather(
        _plan(tmp_path / "v2-password", emu.identity_url, wrong_password),
        _plan(tmp_path / "v2-tenant", emu.identity_url, wrong_tenant),
        _plan(tmp_path / "v3-password", emu.identity_v3_url, wrong_password, v3=True),
        _plan(tmp_path / "v3-tenant", emu.identity_v3_url, wrong_tenant, v3=True),
    )
    for outcome, tenant in (
        (v2_password, SRC.tenant_id),
        (v2_tenant, DST.tenant_id),
        (v3_password, SRC.tenant_id),
        (v3_tenant, DST.tenant_id),
    ):
        line = _refused(outcome)
        assert "cloud 'src'" in line
        assert f"user '{SRC.username}'" in line
        assert f"tenant '{tenant}'" in line
    # Keystone v2.0 answers both with the same bare 401: the message says it cannot tell.
    assert "the user name, the password or the tenant is wrong" in v2_password.err
    assert "the user name, the password or the tenant is wrong" in v2_tenant.err
    # Keystone v3 says when the password was right and the project was not the user's.
    assert "the user name, the password or the tenant is wrong" in v3_password.err
    assert "the password is right, but the user has no access to that tenant" in v3_tenant.err


async def test_an_identity_service_nobody_listens_on_fails_fast_naming_cloud_and_url(
    tmp_path: Path,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v2.0"
    started = time.monotonic()
    outcome = await _plan(tmp_path / "refused", url, SRC)
    took = time.monotonic() - started
    line = _refused(outcome)
    assert line.startswith("image-transfer: error: cloud 'src': the identity service 127.0.0.1")
    assert f"cannot be reached: POST {url}/tokens: " in line
    assert "connection refused" in line
    assert "gave up after 3 attempts" in line
    assert took < 10, f"took {took:.1f} s"
