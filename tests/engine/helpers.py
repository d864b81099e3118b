"""What the engine tests share: config files pointed at an emulator, the real CLI as a child
process, and the checks a user would make by looking at the clouds themselves.

The checks read the emulator's own records (``Emulator.list_all``) and ask the Image API for
members with the owner's token; they never read the engine's report, so a report that lies is
caught.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import token
from tests.emulator.helpers import Api
from transfer.emulator import Emulator, TenantSpec, tenant_from_name
from transfer.journal.records import JournalEntry
from transfer.journal.sqlite import SqliteJournal

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
JOB = "move"
MARKER = "image_transfer_source_id"
MARKERS = frozenset(
    {
        "image_transfer_source_region",
        "image_transfer_source_id",
        "image_transfer_source_checksum",
        "image_transfer_job",
    }
)
# Keys of an image as the API (emulator or real Glance) shows it that are not custom properties.
NOT_PROPERTIES = frozenset(
    {
        "id",
        "name",
        "status",
        "visibility",
        "protected",
        "os_hidden",
        "owner",
        "size",
        "virtual_size",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "disk_format",
        "container_format",
        "min_disk",
        "min_ram",
        "tags",
        "created_at",
        "updated_at",
        "self",
        "file",
        "schema",
        "locations",
        "stores",
    }
)
#: Fields a copy must carry exactly as its source has them.
COPIED_FIELDS = (
    "name",
    "size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "visibility",
    "protected",
)

SRC = tenant_from_name("src", "src@example.com", "src-password")
DST = tenant_from_name("dst", "dst@example.com", "dst-password")
PARTNER = tenant_from_name("partner", "partner@example.com", "partner-password")
OUTSIDER = tenant_from_name("outsider", "outsider@example.com", "outsider-password")
TENANTS = (SRC, DST, PARTNER, OUTSIDER)
#: The clouds a config names: the outsider's credentials are never given.
CLOUDS: Mapping[str, TenantSpec] = {"src": SRC, "dst": DST, "partner": PARTNER}
CONFIG_TENANTS = frozenset(spec.tenant_id for spec in CLOUDS.values())


def password_env(cloud: str) -> str:
    return f"ENGINE_TEST_{cloud.upper()}_PASSWORD"


def environment(clouds: Mapping[str, TenantSpec] = CLOUDS) -> dict[str, str]:
    """The password variables a config written by ``write_config`` reads."""
    return {password_env(name): spec.password for name, spec in clouds.items()}


def job_toml(
    *,
    targets: Sequence[tuple[str, str]] = (("src", "KR2"), ("dst", "KR1")),
    transfers: int = 4,
    retries: int = 3,
    retry_backoff: str = "0.05s..0.5s",
    name: str = JOB,
    extra: str = "",
) -> str:
    """One job from src/KR1 (images owned by src) to ``targets``, copying everything (with
    short waits between an image's attempts, unless ``retry_backoff`` says otherwise)."""
    listed = ", ".join(f'{{ cloud = "{c}", region = "{r}" }}' for c, r in targets)
    return f"""
[[jobs]]
name = "{name}"
source = {{ cloud = "src", region = "KR1" }}
targets = [ {listed} ]
transfers = {transfers}
checkers = 8
retries = {retries}
retry_backoff = "{retry_backoff}"
{extra}
[jobs.select]
owner = "{SRC.tenant_id}"

[jobs.copy]
protected = true
members = true
accept = true
"""


def write_config(
    directory: Path,
    emu: Emulator,
    job: str,
    *,
    clouds: Mapping[str, TenantSpec] = CLOUDS,
    name: str = "config.toml",
) -> Path:
    """A config file with the journal beside it and every password read from the environment."""
    parts = ['[journal]\npath = "journal.db"\n\n[log]\nlevel = "warning"\nformat = "json"\n']
    for cloud, spec in clouds.items():
        parts.append(
            f"[clouds.{cloud}]\n"
            f'identity_url = "{emu.identity_url}"\n'
            f'tenant_id = "{spec.tenant_id}"\n'
            f'username = "{spec.username}"\n'
            f'password_env = "{password_env(cloud)}"\n'
        )
    parts.append(job)
    path = directory / name
    path.write_text("\n".join(parts))
    return path


def new_emulator(**kwargs: Any) -> Emulator:
    return Emulator(regions=("KR1", "KR2"), tenants=TENANTS, **kwargs)


def emulator_fixture(*, seed: int) -> Callable[[], AsyncIterator[Emulator]]:
    """An ``emu`` fixture: a fresh emulated cloud per test, its fault dice seeded with ``seed``
    (``emu = emulator_fixture(seed=N)`` in a test module)."""

    @pytest.fixture
    async def emu() -> AsyncIterator[Emulator]:
        async with new_emulator(seed=seed) as emulator:
            yield emulator

    return emu


# -- the real command line -------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    out: str
    err: str


async def start_cli(*args: str, env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
    """``image-transfer ARGS`` as a child process (stdout and stderr piped)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_TEST_")}
    child_env.update(env or {})
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transfer",
        *args,
        cwd=REPO,
        env=child_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, within: float = 60.0) -> Outcome:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"the child did not finish in {within}s:\n{out.decode()}\n{err.decode()}"
        ) from None
    assert proc.returncode is not None
    return Outcome(proc.returncode, out.decode(), err.decode())


async def cli(*args: str, env: Mapping[str, str] | None = None, within: float = 60.0) -> Outcome:
    return await finish(await start_cli(*args, env=env), within)


async def kill(proc: asyncio.subprocess.Process, signum: int = signal.SIGKILL) -> int:
    if proc.returncode is None:
        proc.send_signal(signum)
    await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode


# -- what the clouds hold --------------------------------------------------------------------


def custom_properties(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in NOT_PROPERTIES}


def copies(emu: Emulator, region: str, owner: str) -> dict[str, list[dict[str, Any]]]:
    """Every image of ``owner`` in ``region`` that names a source, by that source's id."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in emu.list_all(region):
        if record["owner"] == owner and MARKER in record:
            found[record[MARKER]].append(record)
    return found


@dataclass(frozen=True)
class Target:
    key: str  # as the config names it: cloud/REGION
    region: str
    owner: TenantSpec


TARGETS = (Target("src/KR2", "KR2", SRC), Target("dst/KR1", "KR1", DST))


async def members_of(
    emu: Emulator, http: aiohttp.ClientSession, region: str, owner: TenantSpec, image_id: str
) -> dict[str, str]:
    """Member tenant -> status, as the image's owner sees them through the API."""
    api = Api(http, emu.regions[region], await token(emu, owner, http))
    reply = await api.call("GET", f"/v2/images/{image_id}/members")
    if reply.status == 403:  # a private image has no member list
        return {}
    assert reply.status == 200, reply.body
    return {m["member_id"]: m["status"] for m in reply.json()["members"]}


async def copy_problems(
    emu: Emulator,
    http: aiohttp.ClientSession,
    sources: Iterable[str],
    targets: Sequence[Target] = TARGETS,
    *,
    source_region: str = "KR1",
    source_owner: TenantSpec = SRC,
    job: str = JOB,
    config_tenants: Iterable[str] = CONFIG_TENANTS,
) -> list[str]:
    """Why the targets are not exactly one faithful copy per source (empty when they are).

    Also reports any copy left ``queued``/``saving``, and copies of sources not in ``sources``.
    """
    problems: list[str] = []
    wanted = list(sources)
    accepted_by = set(config_tenants)
    for target in targets:
        owner = target.owner.tenant_id
        held = copies(emu, target.region, owner)
        for source_id, records in sorted(held.items()):
            for record in records:
                if record["status"] in ("queued", "saving"):
                    problems.append(f"{target.key}: {record['id']} left {record['status']}")
            if source_id not in wanted:
                problems.append(f"{target.key}: copies of unselected source {source_id}")
        for source_id in wanted:
            src = emu.image_record(source_region, source_id)
            records = held.get(source_id, [])
            where = f"{target.key} {src['name']}"
            if len(records) != 1:
                shown = [(r["id"], r["status"]) for r in records]
                problems.append(f"{where}: {len(records)} copies, expected one: {shown}")
                continue
            copy = records[0]
            for name in COPIED_FIELDS:
                if copy[name] != src[name]:
                    problems.append(f"{where}: {name} {copy[name]!r} != source {src[name]!r}")
            if sorted(copy["tags"]) != sorted(src["tags"]):
                problems.append(f"{where}: tags {copy['tags']} != source {src['tags']}")
            want_props = custom_properties(src)
            want_props.update(
                image_transfer_source_region=source_region,
                image_transfer_source_id=source_id,
                image_transfer_source_checksum=src["checksum"],
                image_transfer_job=job,
            )
            have_props = custom_properties(copy)
            if have_props != want_props:
                problems.append(f"{where}: properties {have_props} != wanted {want_props}")
            if src["visibility"] == "shared":
                source_members = await members_of(emu, http, source_region, source_owner, source_id)
                want_members = {
                    tenant: "accepted" if tenant in accepted_by else "pending"
                    for tenant in source_members
                    if tenant != owner
                }
                have_members = await members_of(emu, http, target.region, target.owner, copy["id"])
                if have_members != want_members:
                    problems.append(f"{where}: members {have_members} != wanted {want_members}")
    return problems


async def journal_entries(config_dir: Path, job: str = JOB) -> dict[tuple[str, str], JournalEntry]:
    async with SqliteJournal(config_dir / "journal.db") as journal:
        return await journal.entries(job)


async def journal_problems(
    config_dir: Path, sources: Iterable[str], targets: Sequence[Target] = TARGETS, job: str = JOB
) -> list[str]:
    """Which (source, target) pairs the journal does not record as ``done``."""
    entries = await journal_entries(config_dir, job)
    problems = []
    for source_id in sources:
        for target in targets:
            entry = entries.get((source_id, target.key))
            state = entry.state if entry else "missing"
            if state != "done":
                problems.append(f"{source_id} -> {target.key}: journal says {state}")
    return problems


def received(emu: Emulator) -> int:
    """Bytes every region has received in upload bodies so far."""
    return sum(int(emu.counters(region)["bytes_received"]) for region in ("KR1", "KR2"))


async def share(
    emu: Emulator, http: aiohttp.ClientSession, image_id: str, members: Iterable[TenantSpec]
) -> None:
    """Add members to a source image through the API, as its owner would."""
    api = Api(http, emu.regions["KR1"], await token(emu, SRC, http))
    for member in members:
        reply = await api.call(
            "POST", f"/v2/images/{image_id}/members", json={"member": member.tenant_id}
        )
        assert reply.status == 200, reply.body


async def seed_many(
    emu: Emulator, sizes: Sequence[int], prefix: str = "img", shared: Iterable[int] = ()
) -> list[str]:
    """Source images of these sizes in src/KR1, each with a property and a tag; those at the
    ``shared`` positions have visibility ``shared``."""
    shared = set(shared)
    ids = []
    for index, size in enumerate(sizes):
        ids.append(
            await emu.seed_image(
                "KR1",
                SRC.tenant_id,
                size=size,
                fill_seed=100 + index,
                name=f"{prefix}-{index:02d}",
                build=str(index),
                tags=[f"n{index}"],
                visibility="shared" if index in shared else "private",
            )
        )
    return ids
