"""A fast start: each command imports only what it needs (issue 17).

Real child processes against the emulator in this process; a probe around the command line
(``runpy`` of ``transfer``, as ``python -m transfer`` does) writes the child's ``sys.modules``
when it exits.  What it must not hold, once the command did its work: the PostgreSQL driver for a
SQLite journal, rich when no terminal shows a live display, the YAML parser without a
clouds.yaml; neither the engine nor the journal for ``images``; not the runner for ``plan``; no
HTTP client for ``status``; and for ``run``, neither the engine nor the journal yet when its
first request (the token request) goes out.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sys
from pathlib import Path

import anyio

from tests.engine.helpers import (
    JOB,
    SRC,
    TARGETS,
    MiB,
    emulator_fixture,
    environment,
    job_toml,
    seed_many,
    write_config,
)
from transfer.cli.display import show_progress
from transfer.emulator import Emulator
from transfer.engine.results import Progress

emu = emulator_fixture(seed=17)

PROBE = """\
import atexit, json, os, runpy, sys
def dump(path=os.environ["STARTUP_MODULES"]):
    with open(path, "w") as out:
        json.dump(sorted(sys.modules), out)
def first_request(event, args):
    if event == "socket.connect" and not os.path.exists(os.environ["STARTUP_AT_CONNECT"]):
        dump(os.environ["STARTUP_AT_CONNECT"])
atexit.register(dump)
sys.addaudithook(first_request)
sys.argv[0] = "image-transfer"
runpy.run_module("transfer", run_name="__main__", alter_sys=True)
"""
HEAVY = ("psycopg", "rich", "pygments", "yaml")


async def probed(tmp_path: Path, *args: str) -> tuple[str, set[str]]:
    """Run ``image-transfer ARGS`` (stdout and stderr pipes, no terminal); its stdout and the
    modules it had imported when it exited."""
    out, modules, _ = await probed_at_first_request(tmp_path, *args)
    return out, modules


async def probed_at_first_request(tmp_path: Path, *args: str) -> tuple[str, set[str], set[str]]:
    """``probed``, and the modules imported when it opened its first connection."""
    modules = tmp_path / "modules.json"
    at_connect = tmp_path / "at-connect.json"
    at_connect.unlink(missing_ok=True)
    env = {
        **os.environ,
        **environment(),
        "STARTUP_MODULES": str(modules),
        "STARTUP_AT_CONNECT": str(at_connect),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    first = set(json.loads(at_connect.read_text())) if at_connect.exists() else set()
    return out.decode(), set(json.loads(modules.read_text())), first


def loaded(modules: set[str], *packages: str) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in packages)


async def test_run_on_a_sqlite_journal_without_a_terminal_loads_no_driver_nor_display(
    emu: Emulator, tmp_path: Path
) -> None:
    await seed_many(emu, [MiB])
    config = write_config(tmp_path, emu, job_toml())
    # plan lists and compares, and needs nothing of the runner's.
    out, modules, first = await probed_at_first_request(
        tmp_path, "plan", "-c", str(config), "--job", JOB
    )
    assert f"{len(TARGETS)} to copy" in out, out
    assert "transfer.engine.planning" in modules
    assert [m for m in first if m.startswith(("transfer.engine", "transfer.journal"))] == []
    assert loaded(modules, "aiofiles", *HEAVY) == []
    assert "transfer.engine.runner" not in modules and "transfer.engine.spool" not in modules

    out, modules, first = await probed_at_first_request(
        tmp_path, "run", "-c", str(config), "--job", JOB
    )

    assert f"job {JOB}: {len(TARGETS)} copied," in out, out
    assert "transfer.engine.runner" in modules and "sqlite3" in modules  # the probe sees it all
    assert loaded(modules, *HEAVY) == []
    # The token request goes out first; the engine and the journal load while it is in flight.
    assert "transfer.cloud.auth" in first
    assert [m for m in first if m.startswith(("transfer.engine", "transfer.journal"))] == []
    # Nor structlog, nor anyio's event-loop backend: the command runs on asyncio until then.
    assert loaded(first, "structlog") == []
    assert [m for m in first if m.startswith("anyio._backends")] == []
    assert "structlog" in modules and "anyio._backends._asyncio" in modules
    # status, next, reads the journal the run wrote, and needs no HTTP client to do it.
    out, modules = await probed(tmp_path, "status", "-c", str(config))
    assert f"job {JOB}: {len(TARGETS)} done" in out, out
    assert "transfer.journal.sqlite" in modules
    assert loaded(modules, "aiohttp", *HEAVY) == []
    assert [m for m in modules if m.startswith(("transfer.cloud", "transfer.engine."))] == [
        "transfer.engine.results"
    ]


async def test_images_list_loads_neither_the_engine_nor_the_journal(
    emu: Emulator, tmp_path: Path
) -> None:
    [image_id] = await seed_many(emu, [0])
    config = write_config(tmp_path, emu, "")

    out, modules = await probed(
        tmp_path, "images", "-c", str(config), "--cloud", "src", "--region", "KR1", "list", "--json"
    )

    assert [i["id"] for i in json.loads(out)["images"] if i["owner"] == SRC.tenant_id] == [image_id]
    assert "aiohttp" in modules and "transfer.cloud.client" in modules
    assert [m for m in modules if m.startswith(("transfer.engine", "transfer.journal"))] == []
    assert loaded(modules, *HEAVY) == []


async def test_on_a_terminal_the_live_display_still_draws_the_counters() -> None:
    leader, follower = pty.openpty()
    progress = Progress(images_total=3, images_done=1, bytes_total=3 * MiB, bytes_done=MiB)
    with os.fdopen(follower, "w") as terminal:
        with anyio.move_on_after(0.6):
            await show_progress(progress, stream=terminal)
        terminal.flush()
        drawn = os.read(leader, 65536).decode("utf-8", "replace")
    os.close(leader)
    assert "images 1/3, 0 failed" in drawn and "1.0 MiB/3.0 MiB" in drawn, drawn
