"""``image-transfer demo``: the embedded default, a real migration on emulated regions.

It starts the emulator on loopback (regions KR1 and KR2, tenants demo-src and demo-dst), seeds a
few images of mixed sizes with properties, tags, a protected flag and a member, writes an ordinary
config file and runs the real engine on it: plan, copy with progress, verify, and a second run that
finds nothing to do.  Then a second migration, the most common one into NHN Cloud: from a
"private OpenStack" (a second emulator: upstream Glance's rules, Keystone v3, a clouds.yaml
entry with project and user domains) to the NHN tenant (Keystone v2.0); see ``demo_private``.
Every byte crosses real sockets.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from transfer.cli.demo_private import private_openstack
from transfer.cli.display import show_progress
from transfer.cli.logs import configure_logging
from transfer.cli.report import format_differences, format_plan_summary, format_summary
from transfer.cloud.sessions import CloudSession, open_clouds
from transfer.config.loader import load_config
from transfer.config.settings import Config, Credentials, JobConfig, LogFormat, LogLevel, Secret
from transfer.emulator import Emulator
from transfer.engine.planning import build_plan
from transfer.engine.results import Progress
from transfer.engine.runner import run_plan
from transfer.engine.verification import verify_plan
from transfer.journal.sqlite import SqliteJournal
from transfer.planner import Code, format_plan

MiB = 1 << 20

CONFIG = """\
# Written by `image-transfer demo`: an ordinary config, pointed at the emulator.
[journal]
path = "journal.db"

[log]
level = "warning"
format = "console"

[clouds.src]
identity_url = "{identity_url}"
tenant_id = "{src_id}"
username = "{src_user}"
password_env = "DEMO_SRC_PASSWORD"

[clouds.dst]
identity_url = "{identity_url}"
tenant_id = "{dst_id}"
username = "{dst_user}"
password_env = "DEMO_DST_PASSWORD"

[[jobs]]
name = "demo"
source = {{ cloud = "src", region = "KR1" }}
targets = [ {{ cloud = "src", region = "KR2" }}, {{ cloud = "dst", region = "KR1" }} ]
transfers = 4
checkers = 8

[jobs.select]
owner = "{src_id}"

[jobs.copy]
protected = true
members = true
accept = true
"""


DESCRIPTION = """\
Run a real migration between emulated regions and tenants, then from an emulated private
OpenStack (Keystone v3) into NHN.  Every byte crosses real sockets: the emulator listens on
loopback, and the engine is the one `run` uses.  Nothing outside the work folder is written."""

EPILOG = """\
examples:
  image-transfer demo                           the whole tour, in a temporary folder
  image-transfer demo --workdir ./demo          keep config.toml, clouds.yaml and the journal
  image-transfer demo --scale 0.1 --no-private  small images, the NHN part only"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="keep the config and journal here (default: a temporary folder, removed after)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="multiply the seeded image sizes (default 1.0: about 140 MiB in all)",
    )
    parser.add_argument(
        "--no-private",
        dest="private",
        action="store_false",
        help="skip the second part: a private OpenStack (Keystone v3) migrated to NHN (v2.0)",
    )


def run(args: argparse.Namespace) -> int:
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return anyio.run(demo, args.workdir, args.scale, args.private)
    with tempfile.TemporaryDirectory(prefix="image-transfer-demo-") as tmp:
        return anyio.run(demo, Path(tmp), args.scale, args.private)


#: The seeded images: name, MiB before ``--scale``, the seed of their bytes, their metadata.
IMAGES: tuple[tuple[str, float, int, dict[str, Any]], ...] = (
    (
        "ubuntu-22.04-golden",
        48,
        1,
        {"os_distro": "ubuntu", "os_version": "22.04", "tags": ["golden", "ubuntu"]},
    ),
    ("centos-7.9", 16, 2, {"os_distro": "centos", "os_version": "7.9", "tags": ["golden"]}),
    ("windows-2019-std", 32, 3, {"os_type": "windows"}),
    ("rocky-9-locked", 24, 4, {"protected": True}),
    ("debian-12", 4, 5, {"tags": ["debian"]}),
    ("empty-placeholder", 0, 0, {}),
    ("app-base", 12, 6, {"visibility": "shared", "app_version": "3.1"}),
)


async def _seed(emu: Emulator, scale: float) -> None:
    src, dst = emu.tenants[0], emu.tenants[1]
    ids = {}
    for name, mib, fill_seed, fields in IMAGES:
        if mib == 0:
            ids[name] = await emu.seed_image("KR1", src.tenant_id, data=b"", name=name)
            continue
        ids[name] = await emu.seed_image(
            "KR1",
            src.tenant_id,
            size=int(mib * scale * MiB),
            fill_seed=fill_seed,
            name=name,
            **fields,
        )
    shared_id = ids["app-base"]
    # Share app-base with the second tenant through the API, as its owner would.
    creds = Credentials(
        name="src",
        identity_url=emu.identity_url,
        tenant_id=src.tenant_id,
        username=src.username,
        password=Secret(src.password),
    )
    async with CloudSession(creds) as session:
        client = await session.image_client("KR1")
        await client.add_member(shared_id, dst.tenant_id)


async def demo(workdir: Path, scale: float, private: bool = True) -> int:
    configure_logging(LogLevel.WARNING, LogFormat.CONSOLE)
    async with Emulator(regions=("KR1", "KR2")) as emu:
        src, dst = emu.tenants[0], emu.tenants[1]
        print(
            f"emulator: identity {emu.identity_url}, regions "
            + ", ".join(f"{k} {v}" for k, v in emu.regions.items())
        )
        await _seed(emu, scale)
        config_path = workdir / "config.toml"
        config_path.write_text(
            CONFIG.format(
                identity_url=emu.identity_url,
                src_id=src.tenant_id,
                src_user=src.username,
                dst_id=dst.tenant_id,
                dst_user=dst.username,
            )
        )
        os.environ["DEMO_SRC_PASSWORD"] = src.password
        os.environ["DEMO_DST_PASSWORD"] = dst.password
        config = load_config(config_path)
        code = await _migrate(config, config.jobs["demo"], config_path)
        if private and code == 0:
            code = await private_openstack(workdir, emu, scale, _migrate)
        return code


async def _migrate(config: Config, job: JobConfig, config_path: Path) -> int:
    """Plan, copy with progress, verify, and run again: what the demo shows of one job."""
    print(
        f"config: {config_path} (job {job.name}: {job.source.key} -> "
        + ", ".join(t.key for t in job.targets)
        + ")\n"
    )
    async with SqliteJournal(config.journal.path) as journal, open_clouds(config) as clouds:
        plan = await build_plan(config, job, clouds, journal)
        print("plan:")
        print(format_plan(plan.items))
        print(format_plan_summary(plan.items) + "\n")

        progress = Progress()
        async with anyio.create_task_group() as tg:
            tg.start_soon(show_progress, progress)
            summary = await run_plan(plan, journal=journal, progress=progress)
            tg.cancel_scope.cancel()
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print("run:")
        print(format_summary(summary) + "\n")

        plan = await build_plan(config, job, clouds, journal)
        differences = await verify_plan(plan)
        pairs = sum(1 for i in plan.items if i.source is not None)
        if differences:
            print(f"verify: {len(differences)} of {pairs} copies differ")
            print(format_differences(differences))
            return 1
        print(
            f"verify: all {pairs} copies match their source "
            "(size, checksum, sha512, properties, tags, visibility, members)"
        )

        in_sync = sum(1 for i in plan.items if i.code is Code.IN_SYNC)
        again = await run_plan(plan, journal=journal)
        print(f"second run: {in_sync} of {pairs} in sync, {again.bytes} bytes moved")
    return 0 if not summary.failed else 1
