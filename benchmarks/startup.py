"""Scenario 7: start-up, from the process's start (exec) to the first HTTP request it makes.

For many small images over a real link every fixed cost shows, and operators run ``images``
commands in loops from the shell.  Measured, each a separate process timed from ``Popen`` to
the moment its first request's bytes reach a recording relay in front of the emulator:

- ``run``: ``image-transfer run -c CFG --job J`` (the console script, a SQLite journal,
  password credentials: the first request is the token request), stdout and stderr to files
  (no terminal: no live display);
- ``images list``: with a pre-issued token (``--token-env``, ``--endpoint``: the first request
  is the listing itself) and with a password (the first request is the token request);
- ``plan`` (exec -> first request) and ``status`` (no request: start to exit);
- the baselines: ``python -c pass`` (start to exit) and a minimal aiohttp script that posts
  the same token request (exec -> first request), the floor of any aiohttp-based command.

Every command runs once unmeasured first, and the interpreter writes its bytecode into the
workspace (``PYTHONPYCACHEPREFIX``), as an installed package has it: a checkout run with
``PYTHONDONTWRITEBYTECODE`` would otherwise compile the project on every start.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.harness import (
    BenchError,
    Cloud,
    EmulatorProcess,
    JobSpec,
    SeedImage,
    measure,
    metric,
    python_m_transfer,
    result,
    row,
    run_async,
    seed_state,
    transfer_cmd,
    workspace,
    write_config,
)

SCENARIO = "startup"
GOAL_S = 0.25
TOKEN_ENV = "BENCH_TOKEN"
JOB = "startup"
# The floor of an aiohttp-based command: the interpreter, aiohttp, one request.
AIOHTTP_FLOOR = """\
import asyncio, json, os, sys
import aiohttp
async def main():
    body = {"auth": {"tenantId": sys.argv[2], "passwordCredentials": {
        "username": sys.argv[3], "password": os.environ["BENCH_SRC_PASSWORD"]}}}
    async with aiohttp.ClientSession() as session:
        async with session.post(sys.argv[1] + "/tokens", json=body) as response:
            await response.read()
asyncio.run(main())
"""


@dataclass(frozen=True)
class Params:
    repeats: int
    commands: frozenset[str] | None = None  # None: every command


FULL = Params(repeats=7)
QUICK = Params(
    repeats=3,
    commands=frozenset({"run", "images_list_token", "status", "floor_aiohttp", "floor_python"}),
)
# command -> its row's label, and whether the 0.25 s goal applies ("plan" lists the clouds
# first, "status" makes no request)
ROWS = {
    "run": ("run, exec -> 1st request", True),
    "run_python_m": ("run (python -m transfer), exec -> 1st request", False),
    "images_list_token": ("images list (token), exec -> 1st request", True),
    "images_list_password": ("images list (password), exec -> 1st request", True),
    "plan": ("plan, exec -> 1st request", False),
    "status": ("status, start -> exit", False),
}


class FirstRequestRelay:
    """A TCP relay to one emulator port that notes when the first bytes of a request arrive
    (``time.perf_counter``, the clock the benchmark starts its processes by)."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._path = parts.path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.first: float | None = None

    @property
    def url(self) -> str:
        """The relay's URL for the target's (same path)."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{self._path}"

    def __enter__(self) -> FirstRequestRelay:
        self._thread.start()
        start = asyncio.start_server(self._relay, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def arm(self) -> None:
        self.first = None

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        first = await client_r.read(65536)
        if self.first is None and first:
            self.first = time.perf_counter()
        server_r, server_w = await asyncio.open_connection(*self._target)
        server_w.write(first)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


@dataclass(frozen=True)
class Command:
    key: str
    label: str
    argv: Sequence[str]
    relay: FirstRequestRelay | None  # None: timed start to exit (no request)


def time_to_first_request(
    command: Command, env: Mapping[str, str], cwd: Path
) -> tuple[float, float]:
    """(exec -> first request, start -> exit) of one run of ``command``, in seconds."""
    if command.relay is not None:
        command.relay.arm()
    started = time.perf_counter()
    done = measure(command.argv, env=env, cwd=cwd).check(command.label)
    if command.relay is None:
        return done.seconds, done.seconds
    first = command.relay.first
    if first is None:
        raise BenchError(f"{command.label} made no request")
    return first - started, done.seconds


def _commands(
    cloud: Cloud, config: Path, identity: FirstRequestRelay, image: FirstRequestRelay
) -> list[Command]:
    it = transfer_cmd()
    src = cloud.src
    password = [
        "--identity-url", identity.url, "--tenant-id", src.tenant_id,
        "--username", src.username, "--password-env", "BENCH_SRC_PASSWORD",
    ]  # fmt: skip
    token = ["--token-env", TOKEN_ENV, "--endpoint", f"KR1={image.url}"]
    cfg = ["-c", str(config)]
    return [
        Command("run", "image-transfer run", [*it, "run", *cfg, "--job", JOB], identity),
        Command(
            "run_python_m",
            "python -m transfer run",
            [*python_m_transfer(), "run", *cfg, "--job", JOB],
            identity,
        ),
        Command(
            "images_list_token",
            "image-transfer images list (token)",
            [*it, "images", *token, "--region", "KR1", "list"],
            image,
        ),
        Command(
            "images_list_password",
            "image-transfer images list (password)",
            [*it, "images", *password, "--region", "KR1", "list"],
            identity,
        ),
        Command("plan", "image-transfer plan", [*it, "plan", *cfg, "--job", JOB], identity),
        Command("status", "image-transfer status", [*it, "status", *cfg], None),
        Command(
            "floor_aiohttp",
            "a minimal aiohttp script",
            [sys.executable, "-c", AIOHTTP_FLOOR, identity.url, src.tenant_id, src.username],
            identity,
        ),
        Command("floor_python", "python -c pass", [sys.executable, "-c", "pass"], None),
    ]


def _environment(cloud: Cloud, work: Path) -> dict[str, str]:
    env = cloud.env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env[TOKEN_ENV] = cloud.token(cloud.src)
    return env


@contextlib.contextmanager
def _cloud(work: Path) -> Iterator[tuple[Cloud, Path, FirstRequestRelay, FirstRequestRelay]]:
    """The emulator with one small source image, a config whose identity URL is a relay's,
    and the relays (identity, KR1's image endpoint)."""
    state = work / "state"
    run_async(lambda: seed_state(state, [SeedImage("KR1", "startup-0", 64 * 1024)]))
    with (
        EmulatorProcess(state) as cloud,
        FirstRequestRelay(cloud.identity_url) as identity,
        FirstRequestRelay(cloud.regions["KR1"]) as image,
    ):
        relayed = Cloud(
            identity_url=identity.url,
            regions=cloud.regions,
            admin_url=cloud.admin_url,
            tenants=cloud.tenants,
        )
        job = JobSpec(name=JOB, names=["startup-*"])
        config = write_config(work / "startup.toml", relayed, [job])
        yield cloud, config, identity, image


Timings = dict[str, list[float]]


def _measure(params: Params, repeats: int) -> tuple[Timings, Timings]:
    """Per command: exec -> first request, and start -> exit, of every repeat."""
    first: Timings = {}
    whole: Timings = {}
    with workspace(SCENARIO) as work, _cloud(work) as (cloud, config, identity, image):
        env = _environment(cloud, work)
        commands = [
            c
            for c in _commands(cloud, config, identity, image)
            if params.commands is None or c.key in params.commands
        ]
        for command in commands:  # warm-up: the bytecode, the journal, the copy itself
            time_to_first_request(command, env, work)
        for n in range(repeats):
            for command in commands[n % len(commands) :] + commands[: n % len(commands)]:
                to_first, to_exit = time_to_first_request(command, env, work)
                first.setdefault(command.key, []).append(to_first)
                whole.setdefault(command.key, []).append(to_exit)
    return first, whole


def run(mode: str, repeats: int | None = None) -> dict[str, Any]:
    params = QUICK if mode == "quick" else FULL
    repeats = repeats or params.repeats
    started = time.monotonic()
    first, whole = _measure(params, repeats)
    metrics = {key: metric(values, "s") for key, values in first.items()}
    for key in ("status", "floor_python"):
        metrics[key] = metric(whole[key], "s", measured="start to exit")
    metrics["run_whole"] = metric(whole["run"], "s", measured="start to exit")
    floors = {key: metrics[key]["median"] for key in ("floor_aiohttp", "floor_python")}
    rows = []
    for key, (label, goal) in ROWS.items():
        if key not in metrics:
            continue
        median = metrics[key]["median"]
        floor_key = "floor_python" if key == "status" else "floor_aiohttp"
        floor = floors[floor_key]
        rows.append(
            row(
                f"7 start-up: {label}",
                f"{median:.3f} s",
                f"{floor:.3f} s " + ("python -c pass" if key == "status" else "aiohttp script"),
                f"{median / floor:.2f}x",
                f"<= {GOAL_S:g} s" if goal else "-",
                median <= GOAL_S if goal else None,
            )
        )
    return result(
        scenario=SCENARIO,
        title="start-up: exec -> the first HTTP request",
        mode=mode,
        started=started,
        params={"repeats": repeats, "command": " ".join(transfer_cmd()), "goal_s": GOAL_S},
        metrics=metrics,
        rows=rows,
        notes=[
            "exec -> first request: from Popen to the first bytes at a relay in front of the "
            "emulator (identity for password credentials, KR1's image endpoint for a token)",
            "floor_aiohttp: `python -c` with aiohttp posting the same token request; "
            "floor_python: `python -c pass`, start to exit",
            "status makes no request: start to exit; bytecode cached, as installed",
        ],
    )
