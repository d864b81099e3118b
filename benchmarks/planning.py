"""Scenario 4: planning and status at scale (metadata only, no image bytes).

``image-transfer plan`` for a job of 10,000 source images x 2 targets (quick: 300), in two
states of the targets:

- ``new``: a job that never ran, every pair to copy (``+``);
- ``in sync``: a job whose 20,000 copies already exist on both targets (``=``), the nightly
  replication case, where every pair is compared property by property.

The images are zero-byte (active, with checksums) and written into the emulator's state
directory before it starts: sources carry a few properties and tags; the in-sync targets are
what the engine would have made (deterministic id, markers, properties, tags), derived with
``transfer.metadata`` from the loaded job config.

``image-transfer status`` reads a journal of 100,000 steps (quick: 10,000): 12,500 entries of
eight finished steps each, written through ``transfer.journal``.  The floor it cannot beat is
the interpreter start-up and the imports; that is measured too (``import_floor``).

Every timing is one whole command, start to exit.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from benchmarks.harness import (
    DST_PASSWORD_ENV,
    SRC_PASSWORD_ENV,
    EmulatorProcess,
    JobSpec,
    SeedImage,
    config_text,
    measure,
    metric,
    result,
    row,
    run_async,
    seed_state,
    transfer_cmd,
    workspace,
    write_config,
)
from transfer.config.loader import load_config
from transfer.emulator import DEFAULT_TENANTS, Emulator
from transfer.journal.records import STEPS
from transfer.journal.sqlite import SqliteJournal
from transfer.metadata import desired_target, target_image_id
from transfer.models import Image

SCENARIO = "planning"
GOAL_PLAN_S = 15.0
GOAL_STATUS_S = 1.0
TARGETS = (("src", "KR2"), ("dst", "KR2"))
NEW_JOB = "plan-new"
SYNC_JOB = "plan-sync"
STATUS_JOB = "status-bench"
# What every command pays before it does anything: the interpreter and the imports.
IMPORT_FLOOR = [sys.executable, "-c", "import transfer.cli.status"]


@dataclass(frozen=True)
class Params:
    sources: int
    steps: int
    repeats: int


FULL = Params(sources=10_000, steps=100_000, repeats=5)
QUICK = Params(sources=300, steps=10_000, repeats=3)


def _jobs() -> list[JobSpec]:
    return [
        JobSpec(name=NEW_JOB, targets=TARGETS, names=["bench-plan-*"]),
        JobSpec(name=SYNC_JOB, targets=TARGETS, names=["bench-plan-*"]),
    ]


def _source_seeds(count: int) -> list[SeedImage]:
    return [
        SeedImage(
            "KR1",
            f"bench-plan-{n:05d}",
            0,
            fields={
                "os_distro": "ubuntu",
                "os_version": f"22.{n % 10:02d}",
                "build": str(n),
                "tags": ["golden", f"batch-{n % 7}"],
            },
        )
        for n in range(count)
    ]


async def _seed_in_sync_targets(work: Path, emu: Emulator, source_ids: list[str]) -> None:
    """Seed, for every source and target, the copy the engine would have made for SYNC_JOB."""
    src, dst = DEFAULT_TENANTS[0], DEFAULT_TENANTS[1]
    # Only the job's copy settings matter here; the identity URL is never contacted.
    draft = work / "seed.toml"
    draft.write_text(
        config_text(
            "http://127.0.0.1:9/v2.0",
            _jobs(),
            src_id=src.tenant_id,
            dst_id=dst.tenant_id,
            journal=str(work / "seed.db"),
        )
    )
    config = load_config(draft, environ={SRC_PASSWORD_ENV: "x", DST_PASSWORD_ENV: "x"})
    job = config.jobs[SYNC_JOB]
    owners = {"src": src.tenant_id, "dst": dst.tenant_id}
    for source_id in source_ids:
        source = Image.from_api(emu.image_record("KR1", source_id))
        for endpoint in job.targets:
            owner = owners[endpoint.cloud]
            desired = desired_target(
                source,
                job=job.name,
                source_region=job.source.region,
                copy=job.copy,
                target_owner=owner,
            )
            target_id = target_image_id(
                job.name, job.source.region, source.id, source.checksum, endpoint.key
            )
            fields = dict(desired.create_fields)
            fields["visibility"] = desired.visibility
            await emu.seed_image(
                endpoint.region,
                owner,
                data=b"",
                id=target_id,
                tags=sorted(desired.tags),
                **fields,
            )


async def _fill_journal(path: Path, steps: int) -> None:
    """A journal of ``steps`` finished steps (whole entries of every step), as runs leave it."""
    entries = max(1, steps // len(STEPS))
    async with SqliteJournal(path) as journal:
        run_id = await journal.start_run(STATUS_JOB, "bench")
        for n in range(entries):
            source_id = f"{n:08d}-0000-4000-8000-000000000000"
            await journal.ensure_entry(
                STATUS_JOB,
                source_id,
                "src/KR2",
                source_name=f"bench-status-{n:05d}",
                source_checksum="d41d8cd98f00b204e9800998ecf8427e",
                source_size=0,
                target_id=f"{n:08d}-1111-4000-8000-000000000000",
                generation=0,
            )
            for step in STEPS:
                await journal.step_started(STATUS_JOB, source_id, "src/KR2", step, run_id)
                await journal.step_finished(
                    STATUS_JOB, source_id, "src/KR2", step, run_id, ok=True, detail={"n": n}
                )
            await journal.update_entry(STATUS_JOB, source_id, "src/KR2", state="done")
        await journal.finish_run(run_id, "ok", {"copied": entries})


def _count_codes(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in text.splitlines():
        code = line[:2]
        if code in ("+ ", "= ", "* ", "! ", "- "):
            counts[code[0]] = counts.get(code[0], 0) + 1
    return counts


def run(mode: str, repeats: int | None = None) -> dict[str, Any]:
    params = QUICK if mode == "quick" else FULL
    repeats = repeats or params.repeats
    started = time.monotonic()
    pairs = params.sources * len(TARGETS)
    with workspace(SCENARIO) as work:
        state = work / "state"

        async def then(emu: Emulator, ids: list[str]) -> None:
            await _seed_in_sync_targets(work, emu, ids)

        run_async(lambda: seed_state(state, _source_seeds(params.sources), then=then))
        status_journal = work / "status.db"

        async def fill() -> None:
            await _fill_journal(status_journal, params.steps)

        anyio.run(fill)
        with EmulatorProcess(state) as cloud:
            config = write_config(work / "bench.toml", cloud, _jobs())
            status_config = work / "status.toml"
            status_config.write_text(
                config.read_text().replace(str(config.with_suffix(".db")), str(status_journal))
            )
            env = cloud.env()
            timings: dict[str, list[float]] = {"new": [], "sync": [], "status": [], "floor": []}
            timings["status_images"] = []
            for _ in range(repeats):
                for key, job, code in (("new", NEW_JOB, "+"), ("sync", SYNC_JOB, "=")):
                    done = measure(
                        transfer_cmd("plan", "-c", str(config), "--job", job), env=env, cwd=work
                    ).check(f"image-transfer plan --job {job}")
                    counts = _count_codes(done.stdout)
                    if counts != {code: pairs}:
                        raise RuntimeError(f"plan of {job}: {counts}, expected {pairs} x {code}")
                    timings[key].append(done.seconds)
                done = measure(
                    transfer_cmd("status", "-c", str(status_config)), env=env, cwd=work
                ).check("image-transfer status")
                if str(params.steps // len(STEPS)) not in done.stdout:
                    raise RuntimeError(f"status did not count every entry: {done.stdout[:300]}")
                timings["status"].append(done.seconds)
                done = measure(
                    transfer_cmd("status", "-c", str(status_config), "--images"),
                    env=env,
                    cwd=work,
                ).check("image-transfer status --images")
                timings["status_images"].append(done.seconds)
                imports = measure(IMPORT_FLOOR, env=env, cwd=work).check("the import floor")
                timings["floor"].append(imports.seconds)
    plan_new = metric(timings["new"], "s")
    plan_sync = metric(timings["sync"], "s")
    status = metric(timings["status"], "s")
    floor = metric(timings["floor"], "s")
    label = f"{params.sources:,}x{len(TARGETS)}"
    rows = [
        row(
            f"4 plan {label} (new job)",
            f"{plan_new['median']:.2f} s",
            "-",
            "-",
            f"<= {GOAL_PLAN_S:g} s",
            plan_new["median"] <= GOAL_PLAN_S,
        ),
        row(
            f"4 plan {label} (in sync)",
            f"{plan_sync['median']:.2f} s",
            "-",
            "-",
            f"<= {GOAL_PLAN_S:g} s",
            plan_sync["median"] <= GOAL_PLAN_S,
        ),
        row(
            f"4 status, {params.steps:,} steps",
            f"{status['median']:.2f} s",
            f"{floor['median']:.2f} s imports",
            f"{status['median'] / floor['median']:.2f}x",
            f"<= {GOAL_STATUS_S:g} s",
            status["median"] <= GOAL_STATUS_S,
        ),
    ]
    return result(
        scenario=SCENARIO,
        title=f"plan {label} pairs and status of {params.steps:,} journal steps",
        mode=mode,
        started=started,
        params={
            "sources": params.sources,
            "targets": len(TARGETS),
            "pairs": pairs,
            "journal_steps": params.steps,
            "journal_entries": params.steps // len(STEPS),
            "repeats": repeats,
        },
        metrics={
            "plan_new": plan_new,
            "plan_in_sync": plan_sync,
            "status": status,
            "status_images": metric(timings["status_images"], "s"),
            "import_floor": floor,
        },
        rows=rows,
        notes=[
            "plan: `image-transfer plan` wall time, listing the sources and both targets "
            "through the emulator included; the journal of the plan jobs is empty",
            "import_floor: `python -c 'import transfer.cli.jobs'`, the start-up any command pays",
        ],
    )
