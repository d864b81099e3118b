"""What every scenario shares: the machine record, statistics, the emulator as a separate
process, seeding its state directory before start, API chores, engine configs, measured
subprocesses and result files.

A scenario measures commands the way a user runs them: each timed thing is a separate process
(``image-transfer run``, ``curl``, ...), timed from its start to its exit, with its peak RSS
read from the kernel (``wait4``).  Setup (seeding, creating empty targets, deleting copies)
goes through the project's own client and is never timed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio

from transfer.cloud.client import ImageClient
from transfer.cloud.sessions import CloudSession
from transfer.config.settings import Credentials, Secret
from transfer.emulator import DEFAULT_TENANTS, Emulator
from transfer.models import Image

MB = 1_000_000  # throughput is reported in MB/s (10^6 bytes), as curl and the notes do
MiB = 1 << 20
GiB = 1 << 30

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SRC_PASSWORD_ENV = "BENCH_SRC_PASSWORD"
DST_PASSWORD_ENV = "BENCH_DST_PASSWORD"

_T = TypeVar("_T")


class BenchError(Exception):
    """The benchmark could not measure what it meant to (a failed copy, a dead emulator)."""


# -- the machine and the numbers ---------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / (1 << 20), 1)
                break
    versions: dict[str, str] = {}
    for package in ("aiohttp", "anyio"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": memory,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "packages": versions,
    }


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, extremes and spread ((max - min) / median) of repeated measurements."""
    if not values:
        raise ValueError("no measurements")
    median = statistics.median(values)
    low, high = min(values), max(values)
    return {
        "median": median,
        "min": low,
        "max": high,
        "spread": (high - low) / median if median else 0.0,
        "runs": list(values),
    }


@dataclass
class Measured:
    """One finished subprocess: wall time, exit code, peak RSS, its output, and the CPU
    seconds it (and the children it waited for) spent, from ``wait4``'s rusage."""

    seconds: float
    returncode: int
    max_rss_bytes: int
    stdout: str
    stderr: str
    user_seconds: float = 0.0
    system_seconds: float = 0.0

    @property
    def cpu_seconds(self) -> float:
        """User plus system CPU seconds."""
        return self.user_seconds + self.system_seconds

    def check(self, what: str) -> Measured:
        if self.returncode != 0:
            tail = (self.stderr.strip() or self.stdout.strip())[-2000:]
            raise BenchError(f"{what} exited with {self.returncode}: {tail}")
        return self


class _PeakWatcher(threading.Thread):
    """Polls a process's ``VmHWM`` (its own high-water mark, reset by ``execve``) until it
    exits; ``bytes`` is the last one seen after the exec (0: none)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.bytes = 0
        self._forked_from = Path("/proc/self/cmdline").read_bytes() if _HAS_PROC else b""
        if _HAS_PROC:
            self.start()

    def run(self) -> None:
        status, cmdline = Path(f"/proc/{self.pid}/status"), Path(f"/proc/{self.pid}/cmdline")
        while True:
            try:
                if cmdline.read_bytes() != self._forked_from:  # exec'd: its own memory
                    found = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.MULTILINE)
                    if found is None:
                        return  # exited (a zombie has no memory)
                    self.bytes = max(self.bytes, int(found.group(1)) * 1024)
            except OSError:
                return  # reaped
            time.sleep(self.interval)

    def join(self, timeout: float | None = None) -> None:
        if self.is_alive() or self.ident is not None:
            super().join(timeout)


_HAS_PROC = Path("/proc/self/status").exists()


def measure(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600.0,
) -> Measured:
    """Run ``cmd`` to its end; time it and read its own peak RSS.

    The peak is the process's ``VmHWM`` (``/proc``), polled until it exits, once it has
    replaced the forked copy of this process (``execve``): ``wait4``'s ``ru_maxrss`` would also
    hold the resident size that copy inherited from this process, which can be larger than the
    command itself.  Where ``/proc`` cannot tell, it is ``ru_maxrss``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        peak = _PeakWatcher(proc.pid)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
            peak.join()
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            seconds=seconds,
            returncode=proc.returncode,
            max_rss_bytes=peak.bytes or usage.ru_maxrss * 1024,  # Linux reports KiB
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            user_seconds=usage.ru_utime,
            system_seconds=usage.ru_stime,
        )


def settle() -> None:
    """Flush dirty pages before a timed run, so no run pays for the writeback of the one
    before it (or of the seeding)."""
    os.sync()


def transfer_cmd(*args: str) -> list[str]:
    """``image-transfer ARGS`` as an operator runs it: the console script installed next to
    this interpreter (the project's venv), else ``python -m transfer``."""
    script = Path(sys.executable).with_name("image-transfer")
    if script.exists():
        return [str(script), *args]
    return python_m_transfer(*args)


def python_m_transfer(*args: str) -> list[str]:
    """``python -m transfer ARGS`` with this interpreter."""
    return [sys.executable, "-m", "transfer", *args]


# -- the emulator --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    name: str
    tenant_id: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Cloud:
    """Where a running emulator listens (from its one JSON line)."""

    identity_url: str
    regions: Mapping[str, str]
    admin_url: str
    tenants: tuple[Tenant, ...]

    def tenant(self, name: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        raise KeyError(name)

    @property
    def src(self) -> Tenant:
        return self.tenants[0]

    @property
    def dst(self) -> Tenant:
        return self.tenants[1]

    def credentials(self, tenant: Tenant) -> Credentials:
        return Credentials(
            name=tenant.name,
            identity_url=self.identity_url,
            tenant_id=tenant.tenant_id,
            username=tenant.username,
            password=Secret(tenant.password),
        )

    def token(self, tenant: Tenant) -> str:
        """A fresh token for ``tenant`` (for the curl baselines)."""
        body = {
            "auth": {
                "tenantId": tenant.tenant_id,
                "passwordCredentials": {"username": tenant.username, "password": tenant.password},
            }
        }
        request = urllib.request.Request(
            self.identity_url + "/tokens",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.load(response)["access"]["token"]["id"])

    def env(self) -> dict[str, str]:
        """The environment an engine subprocess needs (passwords via env, never argv)."""
        env = dict(os.environ)
        env[SRC_PASSWORD_ENV] = self.src.password
        env[DST_PASSWORD_ENV] = self.dst.password
        return env

    def admin(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(self.admin_url + path, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None


class EmulatorProcess:
    """``image-transfer emulator`` as a separate process on free ports, over ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        regions: Sequence[str] = ("KR1", "KR2"),
        log: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.state_dir = state_dir
        self.regions = tuple(regions)
        #: More ``image-transfer emulator`` options (``--latency 0.03``, ...).
        self.extra_args = tuple(extra_args)
        self.log = log or state_dir.with_name(state_dir.name + "-emulator.log")
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Cloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> Cloud:
        args = ["emulator", "--port", "0", "--state-dir", str(self.state_dir)]
        for region in self.regions:
            args += ["--region", region]
        args += self.extra_args
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                transfer_cmd(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log
            )
        assert self._proc.stdout is not None
        line = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self.stop()
                    raise BenchError(f"the emulator did not announce itself (see {self.log})")
                piece = os.read(self._proc.stdout.fileno(), 65536)
                if not piece:
                    self.stop()
                    raise BenchError(f"the emulator exited at start (see {self.log})")
                line += piece
        data = json.loads(line.decode())
        return Cloud(
            identity_url=data["identity_url"],
            regions=dict(data["regions"]),
            admin_url=data["admin_url"],
            tenants=tuple(
                Tenant(t["name"], t["tenant_id"], t["username"], t["password"])
                for t in data["tenants"]
            ),
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass(frozen=True)
class SeedImage:
    """One image to seed: ``size`` deterministic bytes (or none: ``data=b""``-like empty)."""

    region: str
    name: str
    size: int
    fill_seed: int = 0
    tenant: int = 0  # index into the default tenants (0: demo-src, 1: demo-dst)
    fields: Mapping[str, Any] = field(default_factory=dict)


async def seed_state(
    state_dir: Path,
    images: Sequence[SeedImage],
    *,
    regions: Sequence[str] = ("KR1", "KR2"),
    then: Callable[[Emulator, list[str]], Awaitable[None]] | None = None,
) -> list[str]:
    """Write images into an emulator state directory before the emulator process starts it.

    Uses the emulator in this process (no HTTP): bytes go to disk with their hashes, and the
    metadata is written when it closes.  ``then`` may seed more from what was made.
    """
    ids: list[str] = []
    async with Emulator(regions=tuple(regions), state_dir=state_dir) as emu:
        for image in images:
            owner = DEFAULT_TENANTS[image.tenant].tenant_id
            if image.size:
                image_id = await emu.seed_image(
                    image.region,
                    owner,
                    size=image.size,
                    fill_seed=image.fill_seed,
                    name=image.name,
                    **dict(image.fields),
                )
            else:
                image_id = await emu.seed_image(
                    image.region, owner, data=b"", name=image.name, **dict(image.fields)
                )
            ids.append(image_id)
        if then is not None:
            await then(emu, ids)
    return ids


# -- API chores (never timed) --------------------------------------------------------------


def run_async(func: Callable[[], Awaitable[_T]]) -> _T:
    async def main() -> _T:
        return await func()

    return anyio.run(main)


def with_client(
    cloud: Cloud, tenant: Tenant, region: str, func: Callable[[ImageClient], Awaitable[_T]]
) -> _T:
    """Call ``func`` with an authenticated client of ``tenant`` in ``region``."""

    async def main() -> _T:
        async with CloudSession(cloud.credentials(tenant)) as session:
            return await func(await session.image_client(region))

    return run_async(main)


def get_image(cloud: Cloud, tenant: Tenant, region: str, image_id: str) -> Image:
    async def get(client: ImageClient) -> Image:
        return await client.get_image(image_id)

    return with_client(cloud, tenant, region, get)


def create_images(
    cloud: Cloud, tenant: Tenant, region: str, bodies: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Create empty (queued) images; their ids in order."""

    async def create(client: ImageClient) -> list[str]:
        return [(await client.create_image(body)).id for body in bodies]

    return with_client(cloud, tenant, region, create)


def delete_images(cloud: Cloud, tenant: Tenant, region: str, ids: Sequence[str]) -> None:
    """Delete images (their bytes leave the disk), a few at a time."""

    async def delete(client: ImageClient) -> None:
        limiter = anyio.CapacityLimiter(8)

        async def one(image_id: str) -> None:
            async with limiter:
                await client.delete_image(image_id)

        async with anyio.create_task_group() as tg:
            for image_id in ids:
                tg.start_soon(one, image_id)

    with_client(cloud, tenant, region, delete)


def owned_ids(cloud: Cloud, tenant: Tenant, region: str) -> list[str]:
    async def ids(client: ImageClient) -> list[str]:
        return [i.id async for i in client.list_images(owner=tenant.tenant_id)]

    return with_client(cloud, tenant, region, ids)


def clear_region(cloud: Cloud, tenant: Tenant, region: str) -> None:
    """Delete every image ``tenant`` owns in ``region`` (the copies of the last run)."""
    delete_images(cloud, tenant, region, owned_ids(cloud, tenant, region))


# -- engine configs and runs ---------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    name: str
    targets: Sequence[tuple[str, str]] = (("src", "KR2"),)  # (cloud, region)
    source_region: str = "KR1"
    names: Sequence[str] = ()  # name globs; none = every image of the source tenant
    transfers: int = 4
    checkers: int = 8
    verify: str = "auto"


def config_text(
    identity_url: str, jobs: Sequence[JobSpec], *, src_id: str, dst_id: str, journal: str
) -> str:
    """An ordinary config file: two clouds (the emulator's tenants) and the jobs."""
    lines = [
        "# Written by the benchmarks: an ordinary config, pointed at the emulator.",
        "[journal]",
        f"path = {json.dumps(journal)}",
        "",
        "[log]",
        'level = "warning"',
        'format = "json"',
        "",
    ]
    for name, tenant_id, user, env in (
        ("src", src_id, DEFAULT_TENANTS[0].username, SRC_PASSWORD_ENV),
        ("dst", dst_id, DEFAULT_TENANTS[1].username, DST_PASSWORD_ENV),
    ):
        lines += [
            f"[clouds.{name}]",
            f"identity_url = {json.dumps(identity_url)}",
            f'tenant_id = "{tenant_id}"',
            f"username = {json.dumps(user)}",
            f'password_env = "{env}"',
            "",
        ]
    for job in jobs:
        targets = ", ".join(
            f'{{ cloud = "{cloud}", region = "{region}" }}' for cloud, region in job.targets
        )
        lines += [
            "[[jobs]]",
            f'name = "{job.name}"',
            f'source = {{ cloud = "src", region = "{job.source_region}" }}',
            f"targets = [ {targets} ]",
            f"transfers = {job.transfers}",
            f"checkers = {job.checkers}",
            f'verify = "{job.verify}"',
            "",
            "[jobs.select]",
            f'owner = "{src_id}"',
        ]
        if job.names:
            lines.append(f"names = {json.dumps(list(job.names))}")
        lines.append("")
    return "\n".join(lines)


def write_config(path: Path, cloud: Cloud, jobs: Sequence[JobSpec]) -> Path:
    path.write_text(
        config_text(
            cloud.identity_url,
            jobs,
            src_id=cloud.src.tenant_id,
            dst_id=cloud.dst.tenant_id,
            journal=str(path.with_suffix(".db")),
        )
    )
    return path


@dataclass
class EngineRun:
    seconds: float  # the whole command, start to exit
    max_rss_bytes: int
    report: dict[str, Any]
    cpu_seconds: float = 0.0  # user + system of the engine process (wait4's rusage)

    @property
    def engine_seconds(self) -> float:
        """The run itself (listing, planning and startup excluded), from its JSON report."""
        return float(self.report["seconds"])

    def target_ids(self) -> list[str]:
        return [str(item["target_id"]) for item in self.report["items"] if item["target_id"]]


def run_engine(
    cloud: Cloud, config: Path, job: str, *, expect_copies: int, expect_bytes: int
) -> EngineRun:
    """``image-transfer run`` for one job; fails unless it copied what it was meant to."""
    report = config.with_name(f"{job}-report.json")
    done = measure(
        transfer_cmd(
            "run", "-c", str(config), "--job", job, "--no-progress", "--report", str(report)
        ),
        env=cloud.env(),
        cwd=config.parent,
    ).check(f"image-transfer run --job {job}")
    data = json.loads(report.read_text())
    copied = int(data["counts"].get("copied", 0))
    if data["outcome"] != "ok" or copied != expect_copies or int(data["bytes"]) != expect_bytes:
        raise BenchError(
            f"job {job}: outcome {data['outcome']}, {copied} copied, {data['bytes']} bytes; "
            f"expected {expect_copies} copies of {expect_bytes} bytes in all"
        )
    return EngineRun(done.seconds, done.max_rss_bytes, data, cpu_seconds=done.cpu_seconds)


# -- working space and results -------------------------------------------------------------


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    """A scratch directory for one scenario, removed at the end whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=f"image-transfer-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_result(results_dir: Path, result: dict[str, Any]) -> Path:
    """``results_dir/<mode>/<scenario>.json`` (the latest run of each scenario per mode)."""
    folder = results_dir / str(result["mode"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result['scenario']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return path


# -- result shape ----------------------------------------------------------------------------


def row(
    scenario: str, engine: str, baseline: str, ratio: str, goal: str, met: bool | None
) -> dict[str, Any]:
    """One line of the printed table."""
    return {
        "scenario": scenario,
        "engine": engine,
        "baseline": baseline,
        "ratio": ratio,
        "goal": goal,
        "met": met,
    }


def metric(values: Sequence[float], unit: str, **extra: Any) -> dict[str, Any]:
    return {**summarize(values), "unit": unit, **extra}


def result(
    *,
    scenario: str,
    title: str,
    mode: str,
    started: float,
    params: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "title": title,
        "mode": mode,
        "finished_at": now_iso(),
        "scenario_seconds": round(time.monotonic() - started, 3),
        "machine": machine(),
        "params": dict(params),
        "metrics": {name: dict(m) for name, m in metrics.items()},
        "rows": [dict(r) for r in rows],
        "notes": list(notes),
    }
