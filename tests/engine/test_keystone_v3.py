"""Jobs across Keystone versions: a "private OpenStack" (the emulator's glance flavour, Keystone
v3 only, region RegionOne) and NHN Cloud (the nhn flavour, Keystone v2.0), each the source of a
job into the other, through the real CLI.  The copies are then listed with plain HTTP on the
target, each side with a token of its own identity version."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.conftest import token as v2_token
from tests.engine.helpers import DST, MARKER, SRC, TENANTS, MiB, cli
from transfer.cloud.sessions import open_clouds
from transfer.config.loader import load_config
from transfer.config.settings import HttpSettings
from transfer.emulator import Emulator, TenantSpec
from transfer.engine.planning import build_plan
from transfer.engine.runner import run_plan
from transfer.journal.sqlite import SqliteJournal

PRIVATE_REGION = "RegionOne"
PRIVATE_PW = "V3_TEST_PRIVATE_PASSWORD"
NHN_PW = "V3_TEST_NHN_PASSWORD"
APP_SECRET = "V3_TEST_APP_SECRET"
FAST = HttpSettings(backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture
async def private() -> AsyncIterator[Emulator]:
    """The private OpenStack: upstream Glance's rules, Keystone v3 only."""
    async with Emulator(
        flavour="glance", identity_versions=("v3",), regions=(PRIVATE_REGION,), tenants=TENANTS
    ) as emu:
        yield emu


@pytest.fixture
async def nhn() -> AsyncIterator[Emulator]:
    async with Emulator(regions=("KR1",), tenants=TENANTS) as emu:
        yield emu


async def v3_token(http: aiohttp.ClientSession, emu: Emulator, spec: TenantSpec) -> tuple[str, str]:
    """A project-scoped v3 token for ``spec`` and the id of its user, as a user gets them."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": spec.username,
                        "domain": {"name": "Default"},
                        "password": spec.password,
                    }
                },
            },
            "scope": {"project": {"id": spec.tenant_id}},
        }
    }
    async with http.post(f"{emu.identity_v3_url}/auth/tokens", json=body) as reply:
        assert reply.status == 201, await reply.text()
        return reply.headers["X-Subject-Token"], (await reply.json())["token"]["user"]["id"]


async def application_credential(
    http: aiohttp.ClientSession, emu: Emulator, spec: TenantSpec
) -> tuple[str, str]:
    """A new application credential of ``spec``'s user for its project: (id, secret)."""
    value, user_id = await v3_token(http, emu, spec)
    async with http.post(
        f"{emu.identity_v3_url}/users/{user_id}/application_credentials",
        json={"application_credential": {"name": "migration"}},
        headers={"X-Auth-Token": value},
    ) as reply:
        assert reply.status == 201, await reply.text()
        created = (await reply.json())["application_credential"]
    return created["id"], created["secret"]


async def listed(http: aiohttp.ClientSession, endpoint: str, value: str) -> list[dict[str, Any]]:
    """Every image the token's tenant sees in a region, page by page."""
    images: list[dict[str, Any]] = []
    url: str | None = f"{endpoint}/v2/images?limit=5"
    while url is not None:
        async with http.get(url, headers={"X-Auth-Token": value}) as reply:
            assert reply.status == 200, await reply.text()
            page = await reply.json()
        images += page["images"]
        url = endpoint + page["next"] if page.get("next") else None
    return images


def copy_problems(
    sources: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Each source must have exactly one active copy on the target with its size and checksum."""
    problems = []
    for source in sources:
        found = [t for t in targets if t.get(MARKER) == source["id"]]
        if len(found) != 1:
            problems.append(f"{source['name']}: {len(found)} copies")
            continue
        copy = found[0]
        for key in ("status", "size", "checksum", "os_hash_value", "name", "disk_format"):
            if copy.get(key) != source.get(key):
                problems.append(f"{source['name']}: {key} {copy.get(key)!r} != {source.get(key)!r}")
    return problems


async def seed(emu: Emulator, region: str, owner: str, sizes: Sequence[int]) -> None:
    for index, size in enumerate(sizes):
        await emu.seed_image(
            region, owner, size=size, fill_seed=index + 1, name=f"vm-{index}", disk_format="qcow2"
        )


def config_text(source: str, target: str, source_key: str, target_key: str) -> str:
    return f"""\
[journal]
path = "journal.db"

[log]
level = "warning"
format = "json"

{source}
{target}
[[jobs]]
name = "migrate"
source = {source_key}
targets = [ {target_key} ]
transfers = 2
retries = 5
retry_backoff = "0.05s..0.2s"
"""


def private_password_cloud(emu: Emulator) -> str:
    """The private cloud as a clouds.yaml user would write it: project and user by name."""
    return f"""[clouds.private]
identity_url = "{emu.identity_v3_url}"
project_name = "{SRC.name}"
project_domain_name = "Default"
username = "{SRC.username}"
user_domain_name = "Default"
password_env = "{PRIVATE_PW}"
"""


def nhn_cloud(emu: Emulator, spec: TenantSpec) -> str:
    return f"""[clouds.nhn]
identity_url = "{emu.identity_url}"
tenant_id = "{spec.tenant_id}"
username = "{spec.username}"
password_env = "{NHN_PW}"
"""


async def test_a_private_openstack_on_keystone_v3_migrates_to_nhn(
    private: Emulator, nhn: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await seed(private, PRIVATE_REGION, SRC.tenant_id, [2 * MiB + 3, 0, 700_000])
    config = tmp_path / "config.toml"
    config.write_text(
        config_text(
            private_password_cloud(private),
            nhn_cloud(nhn, DST),
            f'{{ cloud = "private", region = "{PRIVATE_REGION}" }}',
            '{ cloud = "nhn", region = "KR1" }',
        )
    )
    env = {PRIVATE_PW: SRC.password, NHN_PW: DST.password}
    run = await cli("run", "-c", str(config), "--no-progress", env=env)
    assert run.code == 0, run.err

    src_token, _ = await v3_token(http, private, SRC)
    sources = await listed(http, private.regions[PRIVATE_REGION], src_token)
    targets = await listed(http, nhn.regions["KR1"], await v2_token(nhn, DST, http))
    assert len(sources) == 3
    assert copy_problems(sources, targets) == []
    # NHN needs an os_type the private cloud's images lack: the job's default fills it in.
    assert {t["os_type"] for t in targets} == {"linux"}
    for secret in (SRC.password, DST.password):
        assert secret not in run.out + run.err

    again = await cli("run", "-c", str(config), "--no-progress", env=env)
    assert again.code == 0, again.err
    assert len(await listed(http, nhn.regions["KR1"], await v2_token(nhn, DST, http))) == 3


async def test_nhn_migrates_to_a_private_openstack_with_an_application_credential(
    private: Emulator, nhn: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await seed(nhn, "KR1", SRC.tenant_id, [MiB, 5, 3 * MiB])
    cred_id, secret = await application_credential(http, private, DST)
    # The bare root of the identity service: its version list says it speaks v3.
    target = f"""[clouds.private]
identity_url = "{private.identity_root}"
application_credential_id = "{cred_id}"
application_credential_secret_env = "{APP_SECRET}"
"""
    config = tmp_path / "config.toml"
    config.write_text(
        config_text(
            nhn_cloud(nhn, SRC),
            target,
            '{ cloud = "nhn", region = "KR1" }',
            f'{{ cloud = "private", region = "{PRIVATE_REGION}" }}',
        )
    )
    env = {NHN_PW: SRC.password, APP_SECRET: secret}
    run = await cli("run", "-c", str(config), "--no-progress", env=env)
    assert run.code == 0, run.err
    assert secret not in run.out + run.err

    sources = await listed(http, nhn.regions["KR1"], await v2_token(nhn, SRC, http))
    dst_token, _ = await v3_token(http, private, DST)
    targets = await listed(http, private.regions[PRIVATE_REGION], dst_token)
    assert len(sources) == 3
    assert copy_problems(sources, targets) == []
    assert {t["owner"] for t in targets} == {DST.tenant_id}


async def test_a_wrong_application_credential_secret_is_refused_with_a_clear_message(
    private: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cred_id, secret = await application_credential(http, private, DST)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""[clouds.private]
identity_url = "{private.identity_v3_url}"
application_credential_id = "{cred_id}"
application_credential_secret_env = "{APP_SECRET}"
"""
    )
    wrong = secret[::-1]
    args = ("images", "-c", str(config), "--cloud", "private", "--region", PRIVATE_REGION)
    refused = await cli(*args, "list", env={APP_SECRET: wrong})
    assert refused.code == 3, refused.err
    assert "credentials for cloud 'private' were refused by 127.0.0.1" in refused.err
    assert wrong not in refused.out + refused.err
    accepted = await cli(*args, "list", env={APP_SECRET: secret})
    assert accepted.code == 0, accepted.err


async def test_expired_v3_tokens_are_reissued_mid_run(
    private: Emulator, nhn: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await seed(private, PRIVATE_REGION, SRC.tenant_id, [MiB] * 6)
    config = tmp_path / "config.toml"
    config.write_text(
        config_text(
            private_password_cloud(private),
            nhn_cloud(nhn, DST),
            f'{{ cloud = "private", region = "{PRIVATE_REGION}" }}',
            '{ cloud = "nhn", region = "KR1" }',
        ).replace("transfers = 2", "transfers = 1")
    )
    private.set_faults(bandwidth=8_000_000)  # about 1/8 s per image: the run is still going
    loaded = load_config(config, environ={PRIVATE_PW: SRC.password, NHN_PW: DST.password})
    tokens_at_expiry = 0

    async def expire_after_the_first_copy() -> None:
        nonlocal tokens_at_expiry
        while not nhn.list_all("KR1"):  # noqa: ASYNC110 - the emulator signals no event
            await anyio.sleep(0.005)
        private.expire_tokens()
        nhn.expire_tokens()
        tokens_at_expiry = private.identity_counters()["requests"].get("token", 0)

    async with (
        SqliteJournal(loaded.journal.path) as journal,
        open_clouds(loaded, FAST) as clouds,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(expire_after_the_first_copy)
        plan = await build_plan(loaded, loaded.jobs["migrate"], clouds, journal)
        summary = await run_plan(plan, journal=journal)
        tg.cancel_scope.cancel()
    private.set_faults(bandwidth=None)

    assert summary.failed == [], [r.error for r in summary.failed]
    assert private.identity_counters()["requests"].get("token", 0) > tokens_at_expiry > 0
    src_token, _ = await v3_token(http, private, SRC)
    sources = await listed(http, private.regions[PRIVATE_REGION], src_token)
    targets = await listed(http, nhn.regions["KR1"], await v2_token(nhn, DST, http))
    assert copy_problems(sources, targets) == []
