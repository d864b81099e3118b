"""What the fan-out and spool tests share: a config whose clouds may live in different emulators
(a "far" region with faults of its own), an in-process run, and checks that read the clouds and
the spool directory themselves."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.engine.helpers import (
    COPIED_FIELDS,
    DST,
    JOB,
    SRC,
    TENANTS,
    copies,
    custom_properties,
    password_env,
)
from transfer.cloud.sessions import open_clouds
from transfer.config.loader import load_config
from transfer.config.settings import HttpSettings
from transfer.emulator import Emulator, TenantSpec
from transfer.engine.planning import build_plan
from transfer.engine.results import RunSummary
from transfer.engine.runner import run_plan
from transfer.journal.sqlite import SqliteJournal

#: Retries fast enough for tests, still several attempts deep.
FAST = HttpSettings(attempts=6, backoff_base=0.01, backoff_cap=0.1, retry_total=20.0)


@dataclass(frozen=True)
class Cloud:
    """A config cloud: a tenant of one emulator."""

    emu: Emulator
    tenant: TenantSpec


def environment(clouds: Mapping[str, Cloud]) -> dict[str, str]:
    return {password_env(name): cloud.tenant.password for name, cloud in clouds.items()}


def write_config(directory: Path, clouds: Mapping[str, Cloud], job: str) -> Path:
    """A config with the journal beside it, each cloud pointed at its own emulator."""
    parts = ['[journal]\npath = "journal.db"\n\n[log]\nlevel = "warning"\nformat = "json"\n']
    for name, cloud in clouds.items():
        parts.append(
            f"[clouds.{name}]\n"
            f'identity_url = "{cloud.emu.identity_url}"\n'
            f'tenant_id = "{cloud.tenant.tenant_id}"\n'
            f'username = "{cloud.tenant.username}"\n'
            f'password_env = "{password_env(name)}"\n'
        )
    parts.append(job)
    path = directory / "config.toml"
    path.write_text("\n".join(parts))
    return path


def job_toml(
    targets: Sequence[tuple[str, str]],
    *,
    spool: str = "off",
    retries: int = 3,
    transfers: int = 2,
    verify: str = "auto",
) -> str:
    listed = ", ".join(f'{{ cloud = "{c}", region = "{r}" }}' for c, r in targets)
    return f"""
[[jobs]]
name = "{JOB}"
source = {{ cloud = "src", region = "KR1" }}
targets = [ {listed} ]
transfers = {transfers}
retries = {retries}
verify = "{verify}"
spool = "{spool}"

[jobs.select]
owner = "{SRC.tenant_id}"
"""


def new_far_emulator(seed: int = 5) -> Emulator:
    """A second cloud holding only region JP1, so its faults touch no other target."""
    return Emulator(regions=("JP1",), tenants=TENANTS, seed=seed)


async def run_job(
    config_path: Path, clouds: Mapping[str, Cloud], *, clean: bool = False
) -> RunSummary:
    config = load_config(config_path, environ=environment(clouds))
    async with (
        SqliteJournal(config.journal.path) as journal,
        open_clouds(config, FAST) as clouds_,
    ):
        plan = await build_plan(config, config.jobs[JOB], clouds_, journal)
        return await run_plan(plan, journal=journal, clean_spool=clean)


def copy_problems_in(
    source_emu: Emulator,
    emu: Emulator,
    region: str,
    sources: Iterable[str],
    owner: TenantSpec = DST,
) -> list[str]:
    """Why ``owner``'s images in ``region`` of ``emu`` are not one exact copy per source
    (sources in ``source_emu``'s KR1); a shorter form of ``tests.engine.helpers.copy_problems``
    for a target in another emulator (private images, no members)."""
    problems = []
    held = copies(emu, region, owner.tenant_id)
    for source_id in sources:
        src = source_emu.image_record("KR1", source_id)
        records = held.get(source_id, [])
        if len(records) != 1:
            problems.append(f"{region} {src['name']}: {len(records)} copies, expected one")
            continue
        copy = records[0]
        for name in (*COPIED_FIELDS, "status"):
            if copy[name] != src[name]:
                problems.append(f"{region} {src['name']}: {name} {copy[name]!r} != {src[name]!r}")
        if sorted(copy["tags"]) != sorted(src["tags"]):
            problems.append(f"{region} {src['name']}: tags {copy['tags']} != {src['tags']}")
        want = custom_properties(src)
        want.update(
            image_transfer_source_region="KR1",
            image_transfer_source_id=source_id,
            image_transfer_source_checksum=src["checksum"],
            image_transfer_job=JOB,
        )
        if custom_properties(copy) != want:
            problems.append(f"{region} {src['name']}: properties {custom_properties(copy)}")
    return problems


def same_bytes(emu: Emulator, region: str, image_id: str, other: Emulator, source_id: str) -> bool:
    """Whether a copy's stored bytes are exactly its source's (read from the emulators' disks)."""
    copy = emu.image_path(region, image_id)
    original = other.image_path("KR1", source_id)
    assert copy is not None and original is not None
    return copy.read_bytes() == original.read_bytes()


def served(emu: Emulator, region: str = "KR1") -> int:
    """Body bytes the region has sent in downloads so far."""
    return int(emu.counters(region)["bytes_served"])


def uploads(emu: Emulator, region: str) -> int:
    """Upload requests the region has received so far."""
    return int(emu.counters(region)["requests"].get("upload", 0))


def spool_files(directory: Path) -> list[Path]:
    """Every file under the spool directory."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file())


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)
