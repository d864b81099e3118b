"""The harness of the multi-worker fault scenarios: a PostgreSQL server of the test's own, the
emulated cloud as a separate process, seeded source images, ``image-transfer run`` workers as
child processes, and the checks.

Everything the checks look at is reached from outside, as an operator would: the cloud through
plain HTTP (``cloud_problems``: exactly one active, faithful copy per source, nothing half-made),
the journal through a read-only SQL query (``journal_states``).  Neither the engine's report nor
any in-process object of the emulator is trusted.

``Cluster`` puts it together; with a ``Topology`` (``tests.hosts.netns``) PostgreSQL and the
emulator run in the hub namespace and each worker in its own host namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import psycopg

from tests.hosts.netns import Host, Topology
from tests.pgserver import ClusterError, ThrowawayCluster, unavailable_reason
from transfer.emulator import TenantSpec, tenant_from_name

REPO = Path(__file__).resolve().parents[2]
KiB = 1 << 10
MiB = 1 << 20

JOB = "hosts"
DATABASE = "image_transfer"
MARKER = "image_transfer_source_id"
SRC = tenant_from_name("src", "src@example.com", "src-password")
DST = tenant_from_name("dst", "dst@example.com", "dst-password")
SOURCE_REGION = "KR1"
TARGET_REGION = "KR2"

#: What every scenario runs: this many images of random sizes in [SMALLEST, LARGEST] bytes
#: (from the scenario's seed), through an emulator whose every connection is capped at
#: BANDWIDTH bytes/s, so three workers of TRANSFERS transfers each take 8-15 s over them.
IMAGES = 60
SMALLEST = 256 * KiB
LARGEST = 1 * MiB
BANDWIDTH = 1 * MiB
TRANSFERS = 2
LEASE_SECONDS = 3.0
WORKERS = ("w-a", "w-b", "w-c")
#: How long any worker may take to finish once the scenario's fault is over.
WORKER_TIMEOUT = 180.0
_TAIL = 2500


class HarnessError(RuntimeError):
    """The harness itself could not do its part (not a finding about the engine)."""


def _tail(path: Path, chars: int = _TAIL) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return text if len(text) <= chars else "..." + text[-chars:]


# -- PostgreSQL ------------------------------------------------------------------------------


def pg_unavailable_reason() -> str | None:
    """Why a throwaway PostgreSQL server cannot be started here (None: it can)."""
    return unavailable_reason()


#: No OS crash is simulated, so fsync can go; but a committed transaction must survive a
#: server crash (pg_ctl -m immediate), so commits stay synchronous.
_PG_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "max_connections": "200",
}


class PgCluster:
    """A PostgreSQL cluster of one test: its own data directory, trust authentication, one
    address and port; it can be crashed (``restart_immediate``) and is removed by ``remove``.

    ``prefix`` is prepended to the server commands (``ip netns exec HUB`` to run it inside a
    namespace); ``network`` is a CIDR whose clients may connect (besides loopback).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        prefix: Sequence[str] = (),
        network: str | None = None,
    ) -> None:
        def trust_network(hba: str) -> str:
            return hba + f"host all all {network} trust\n"

        with _harness_errors():
            self.server = ThrowawayCluster(
                host=host,
                port=port,
                settings=_PG_SETTINGS,
                prefix=prefix,
                hba=trust_network if network is not None else None,
                name="image-transfer-hosts-pg-",
            )

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, database: str = DATABASE) -> str:
        return self.server.url(database)

    def log_tail(self, chars: int = 2000) -> str:
        return self.server.log_tail(chars)

    def start(self) -> None:
        """initdb on first use, then start (waiting until it accepts connections)."""
        with _harness_errors():
            self.server.start()

    async def restart_immediate(self, down: float = 1.5) -> None:
        """Crash the server (``pg_ctl -m immediate``: no checkpoint, every backend killed), stay
        down ``down`` seconds, and start it again on the same port and data directory."""
        with _harness_errors():
            await asyncio.to_thread(self.server.restart_immediate, down)

    def remove(self) -> None:
        """Stop (if running) and delete everything; safe after any failure."""
        with _harness_errors():
            self.server.remove()

    def create_database(self, name: str = DATABASE) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())


@contextlib.contextmanager
def _harness_errors() -> Iterator[None]:
    """The shared cluster's failures as the harness's own."""
    try:
        yield
    except ClusterError as exc:
        raise HarnessError(str(exc)) from exc


class JournalProbe:
    """Read-only SQL on the journal from outside, surviving server restarts (one connection,
    reopened after an error)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | None:
        """The rows, [] when the journal's tables do not exist yet, None when the server
        cannot be reached just now."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=3, application_name="it-probe"
                )
            cursor = await self._conn.execute(sql.encode(), params or None)
            return list(await cursor.fetchall())
        except psycopg.errors.UndefinedTable:
            return []
        except psycopg.OperationalError:
            await self.close()
            return None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()


# -- the emulator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CloudInfo:
    """Where the emulated cloud listens, as its announcement line says."""

    identity_url: str
    regions: dict[str, str]
    admin_url: str


class EmulatorProcess:
    """``python -m transfer emulator`` as a child process."""

    def __init__(self, proc: asyncio.subprocess.Process, info: CloudInfo, log: Path) -> None:
        self.proc = proc
        self.info = info
        self.log = log

    @classmethod
    async def start(
        cls,
        *,
        host: str,
        tenants: Sequence[TenantSpec],
        log: Path,
        seed: int = 0,
        bandwidth: int | None = None,
        prefix: Sequence[str] = (),
    ) -> EmulatorProcess:
        args = ["--host", host, "--seed", str(seed), "--max-page-size", "1000"]
        args += ["--region", SOURCE_REGION, "--region", TARGET_REGION]
        for t in tenants:
            args += ["--tenant", f"{t.name}:{t.username}:{t.password}"]
        if bandwidth is not None:
            args += ["--bandwidth", str(bandwidth)]
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *prefix,
                sys.executable,
                "-m",
                "transfer",
                "emulator",
                *args,
                cwd=REPO,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            announced = json.loads(line)
            info = CloudInfo(
                identity_url=announced["identity_url"],
                regions=dict(announced["regions"]),
                admin_url=announced["admin_url"],
            )
        except (TimeoutError, ValueError, KeyError) as exc:
            emulator = cls(proc, CloudInfo("", {}, ""), log)
            await emulator.stop()
            raise HarnessError(f"the emulator did not start ({exc!r}): {_tail(log)}") from None
        return cls(proc, info, log)

    async def set_faults(self, session: aiohttp.ClientSession, **changes: Any) -> None:
        """Change the live faults (``PATCH /admin/faults``), e.g. ``bandwidth=None``."""
        async with session.patch(self.info.admin_url + "/faults", json=changes) as resp:
            if resp.status != 200:
                raise HarnessError(f"PATCH /admin/faults {changes}: {resp.status}")

    async def stop(self) -> None:
        proc = self.proc
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.communicate(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        await proc.communicate()


# -- the cloud through plain HTTP ------------------------------------------------------------


@dataclass(frozen=True)
class SourceImage:
    """A seeded source image, as the seeding computed it."""

    id: str
    name: str
    size: int
    checksum: str  # MD5, hex


async def get_token(session: aiohttp.ClientSession, identity_url: str, tenant: TenantSpec) -> str:
    """A Keystone v2.0 token for ``tenant``."""
    body = {
        "auth": {
            "tenantId": tenant.tenant_id,
            "passwordCredentials": {"username": tenant.username, "password": tenant.password},
        }
    }
    async with session.post(identity_url + "/tokens", json=body) as resp:
        if resp.status != 200:
            raise HarnessError(f"token for {tenant.name}: {resp.status} {await resp.text()}")
        data = await resp.json()
    token = data["access"]["token"]["id"]
    assert isinstance(token, str)
    return token


def source_bytes(seed: int, index: int, size: int) -> bytes:
    """The bytes of the seed's ``index``-th source image."""
    return random.Random(f"bytes-{seed}-{index}").randbytes(size)


def image_sizes(seed: int, count: int = IMAGES) -> list[int]:
    rng = random.Random(f"sizes-{seed}")
    return [rng.randint(SMALLEST, LARGEST) for _ in range(count)]


async def seed_sources(
    session: aiohttp.ClientSession,
    cloud: CloudInfo,
    sizes: Sequence[int],
    *,
    seed: int,
    tenant: TenantSpec = SRC,
    region: str = SOURCE_REGION,
) -> list[SourceImage]:
    """Create one image per size as ``tenant`` (POST, then PUT of random bytes), all at once."""
    token = await get_token(session, cloud.identity_url, tenant)
    base = cloud.regions[region]
    headers = {"X-Auth-Token": token}

    async def one(index: int, size: int) -> SourceImage:
        data = source_bytes(seed, index, size)
        name = f"src-{index:03d}"
        body = {
            "name": name,
            "disk_format": "qcow2",
            "container_format": "bare",
            "visibility": "private",
            "os_type": "linux",
            "build": str(index),
        }
        async with session.post(base + "/v2/images", json=body, headers=headers) as resp:
            if resp.status != 201:
                raise HarnessError(f"create {name}: {resp.status} {await resp.text()}")
            image_id = (await resp.json())["id"]
        put_headers = {**headers, "Content-Type": "application/octet-stream"}
        url = f"{base}/v2/images/{image_id}/file"
        async with session.put(url, data=data, headers=put_headers) as resp:
            if resp.status != 204:
                raise HarnessError(f"upload {name}: {resp.status} {await resp.text()}")
        return SourceImage(image_id, name, size, hashlib.md5(data).hexdigest())

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(sizes))))


async def list_images(
    session: aiohttp.ClientSession, base_url: str, token: str, owner: str, *, page: int = 25
) -> list[dict[str, Any]]:
    """Every image of ``owner`` in one region, hidden or not, whatever its status, following
    the ``next`` links (``page`` images a page)."""
    found: dict[str, dict[str, Any]] = {}
    for hidden in ("false", "true"):
        url: str | None = f"{base_url}/v2/images?owner={owner}&limit={page}&os_hidden={hidden}"
        pages = 0
        while url is not None:
            pages += 1
            if pages > 10_000:
                raise HarnessError(f"listing {base_url}: the next links never end")
            async with session.get(url, headers={"X-Auth-Token": token}) as resp:
                if resp.status != 200:
                    raise HarnessError(f"GET {url}: {resp.status} {await resp.text()}")
                body = await resp.json()
            for image in body["images"]:
                found[image["id"]] = image
            link = body.get("next")
            url = None if not link else (base_url + link if link.startswith("/") else link)
    return list(found.values())


def _show(image: Mapping[str, Any]) -> str:
    checksum = image.get("checksum") or "-"
    hidden = " (os_hidden)" if image.get("os_hidden") else ""
    return f"{image['id']} {image.get('status')}{hidden} size={image.get('size')} md5={checksum}"


async def cloud_problems(
    session: aiohttp.ClientSession,
    cloud: CloudInfo,
    sources: Sequence[SourceImage],
    *,
    source: tuple[TenantSpec, str] = (SRC, SOURCE_REGION),
    target: tuple[TenantSpec, str] = (DST, TARGET_REGION),
) -> list[str]:
    """Why the target is not exactly one verified copy of each source (empty: it is).

    By plain HTTP: the sources as their owner lists them (they must still be as seeded), and
    every image of the target tenant in the target region.  For each source, exactly one target
    image names it in ``image_transfer_source_id``, is ``active`` and has the source's size and
    checksum; no target image is in any other status, or names no source, or an unknown one.
    """
    problems: list[str] = []
    src_tenant, src_region = source
    dst_tenant, dst_region = target
    src_token = await get_token(session, cloud.identity_url, src_tenant)
    dst_token = await get_token(session, cloud.identity_url, dst_tenant)
    listed_sources = {
        i["id"]: i
        for i in await list_images(
            session, cloud.regions[src_region], src_token, src_tenant.tenant_id
        )
    }
    targets = await list_images(session, cloud.regions[dst_region], dst_token, dst_tenant.tenant_id)

    wanted = {s.id: s for s in sources}
    for s in sources:
        listed = listed_sources.get(s.id)
        if listed is None:
            problems.append(f"source {s.name} ({s.id}) is not listed in {src_region} (harness?)")
        elif (listed["status"], listed["size"], listed["checksum"]) != (
            "active",
            s.size,
            s.checksum,
        ):
            problems.append(f"source {s.name} changed since seeding: {_show(listed)} (harness?)")

    copies: dict[str, list[dict[str, Any]]] = {}
    for image in sorted(targets, key=lambda i: (str(i.get("created_at")), i["id"])):
        named = image.get(MARKER)
        if not named:
            problems.append(f"target image {_show(image)} names no source ({MARKER} missing)")
        elif named not in wanted:
            problems.append(f"target image {_show(image)} names unknown source {named}")
        else:
            copies.setdefault(named, []).append(image)

    for s in sources:
        found = copies.get(s.id, [])
        where = f"source {s.name} ({s.id}, size={s.size}, md5={s.checksum})"
        if len(found) != 1:
            shown = "; ".join(_show(i) for i in found) or "none"
            problems.append(f"{where}: {len(found)} target images, expected exactly 1: {shown}")
            continue
        [copy] = found
        source_hash = listed_sources.get(s.id, {}).get("os_hash_value")
        if copy.get("status") != "active":
            problems.append(f"{where}: its copy is not active: {_show(copy)}")
        elif copy.get("size") != s.size or copy.get("checksum") != s.checksum:
            problems.append(f"{where}: its copy differs: {_show(copy)}")
        elif source_hash and copy.get("os_hash_value") != source_hash:
            problems.append(f"{where}: its copy's os_hash_value differs: {_show(copy)}")
    return problems


# -- workers ---------------------------------------------------------------------------------


def password_env(cloud: str) -> str:
    return f"HOSTS_TEST_{cloud.upper()}_PASSWORD"


def config_text(cloud: CloudInfo, journal_url: str, *, transfers: int = TRANSFERS) -> str:
    clouds = {"src": SRC, "dst": DST}
    parts = [
        f'[journal]\nurl = "{journal_url}"\n',
        '[log]\nlevel = "warning"\nformat = "json"\n',
    ]
    for name, spec in clouds.items():
        parts.append(
            f"[clouds.{name}]\n"
            f'identity_url = "{cloud.identity_url}"\n'
            f'tenant_id = "{spec.tenant_id}"\n'
            f'username = "{spec.username}"\n'
            f'password_env = "{password_env(name)}"\n'
        )
    parts.append(
        "[[jobs]]\n"
        f'name = "{JOB}"\n'
        f'source = {{ cloud = "src", region = "{SOURCE_REGION}" }}\n'
        f'targets = [ {{ cloud = "dst", region = "{TARGET_REGION}" }} ]\n'
        f"transfers = {transfers}\n"
        "checkers = 4\n"
        "retries = 3\n"
        # A cut-off worker's upload leaves its target `saving` for as long as the emulator
        # waits on the silent connection; the others wait that long (not the default 2 min)
        # before they discard it and copy again.
        'settle_timeout = "15s"\n'
        'spool = "off"\n\n'
        "[jobs.select]\n"
        f'owner = "{SRC.tenant_id}"\n'
    )
    return "\n".join(parts)


@dataclass(frozen=True)
class WorkerOutcome:
    name: str
    where: str
    code: int  # negative: killed by that signal
    timed_out: bool  # did not exit in time, and was killed by the harness
    elapsed: float  # seconds since it started
    stderr: str  # the tail
    stdout: str

    def describe(self) -> str:
        how = " (did not exit in time: killed by the harness)" if self.timed_out else ""
        return (
            f"--- worker {self.name} on {self.where}: exit {self.code}{how} after "
            f"{self.elapsed:.1f}s\nstdout: {self.stdout.strip()}\nstderr:\n{self.stderr.strip()}"
        )


class Worker:
    """One ``image-transfer run`` child process (stdout and stderr go to files, so a chatty
    worker never blocks on a full pipe)."""

    def __init__(
        self, name: str, proc: asyncio.subprocess.Process, out: Path, err: Path, where: str
    ) -> None:
        self.name = name
        self.proc = proc
        self.out = out
        self.err = err
        self.where = where
        self.started = time.monotonic()
        self._outcome: WorkerOutcome | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, signum: int) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signum)

    async def wait(self, within: float = WORKER_TIMEOUT) -> WorkerOutcome:
        """Its exit (after at most ``within`` seconds; then it is killed and marked so)."""
        if self._outcome is not None:
            return self._outcome
        timed_out = False
        try:
            await asyncio.wait_for(self.proc.wait(), max(within, 0.01))
        except TimeoutError:
            timed_out = True
            self.send(signal.SIGCONT)
            self.send(signal.SIGKILL)
            await self.proc.wait()
        assert self.proc.returncode is not None
        self._outcome = WorkerOutcome(
            name=self.name,
            where=self.where,
            code=self.proc.returncode,
            timed_out=timed_out,
            elapsed=time.monotonic() - self.started,
            stderr=_tail(self.err),
            stdout=_tail(self.out, 800),
        )
        return self._outcome

    async def kill(self) -> None:
        self.send(signal.SIGCONT)
        self.send(signal.SIGKILL)
        await self.wait(30)


# -- the verdict -----------------------------------------------------------------------------


@dataclass
class Verdict:
    """What a scenario found: the cloud's problems, the journal's states, the exits."""

    problems: list[str]
    states: dict[str, int]
    expected_states: dict[str, int]
    exit_failures: list[str]
    outcomes: list[WorkerOutcome]
    notes: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        found = list(self.exit_failures)
        if self.states != self.expected_states:
            found.append(f"journal: entry states {self.states}, expected {self.expected_states}")
        return found + [f"cloud: {p}" for p in self.problems]

    def report(self, limit: int = 25) -> str:
        """The failures (the cloud's first ``limit`` problems), the notes, every worker's exit
        and the tail of its output."""
        found = self.failures()
        shown = len(found) - len(self.problems) + min(limit, len(self.problems))
        lines = ["failures:", *(f"  {f}" for f in found[:shown])]
        if len(found) > shown:
            lines.append(f"  ... and {len(found) - shown} more cloud problems")
        lines += [f"note: {n}" for n in self.notes]
        lines += [o.describe() for o in self.outcomes]
        return "\n".join(lines)


# -- the cluster -----------------------------------------------------------------------------


class Cluster:
    """PostgreSQL + the emulator + seeded sources + a config; workers on demand.

    On loopback by default; with ``topology``, PostgreSQL and the emulator run in its hub
    namespace (on the bridge address) and workers may be placed on its hosts.
    """

    def __init__(
        self,
        workdir: Path,
        seed: int,
        *,
        topology: Topology | None = None,
        images: int = IMAGES,
        bandwidth: int = BANDWIDTH,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.workdir = workdir
        self.seed = seed
        self.topology = topology
        self.images = images
        self.bandwidth = bandwidth
        self.lease_seconds = lease_seconds
        if topology is None:
            self.address = "127.0.0.1"
            self.server_prefix: list[str] = []
            self.pg = PgCluster(host=self.address)
        else:
            self.address = topology.hub_address
            self.server_prefix = topology.exec_prefix(topology.hub_netns)
            self.pg = PgCluster(
                host=self.address,
                port=5432,
                prefix=self.server_prefix,
                network=str(topology.network),
            )
        self.emulator: EmulatorProcess | None = None
        self.session: aiohttp.ClientSession | None = None
        self.probe: JournalProbe | None = None
        self.sources: list[SourceImage] = []
        self.config = workdir / "config.toml"
        self.workers: dict[str, Worker] = {}
        self.seeded_in = 0.0

    @property
    def cloud(self) -> CloudInfo:
        assert self.emulator is not None, "the cluster is not started"
        return self.emulator.info

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.session is not None, "the cluster is not started"
        return self.session

    @property
    def journal(self) -> JournalProbe:
        assert self.probe is not None, "the cluster is not started"
        return self.probe

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.pg.start)
        await asyncio.to_thread(self.pg.create_database)
        self.probe = JournalProbe(self.pg.url())
        self.emulator = await EmulatorProcess.start(
            host=self.address,
            tenants=(SRC, DST),
            log=self.workdir / "emulator.log",
            seed=self.seed,
            bandwidth=self.bandwidth,
            prefix=self.server_prefix,
        )
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        began = time.monotonic()
        # Seeded at full speed; the workers then meet the bandwidth cap the emulator started
        # with.
        await self.emulator.set_faults(self.http, bandwidth=None)
        self.sources = await seed_sources(
            self.http, self.cloud, image_sizes(self.seed, self.images), seed=self.seed
        )
        await self.emulator.set_faults(self.http, bandwidth=self.bandwidth)
        self.seeded_in = time.monotonic() - began
        self.config.write_text(config_text(self.cloud, self.pg.url()))
        if self.topology is not None:
            await self.check_reachability()

    async def check_reachability(self) -> None:
        """Each host reaches PostgreSQL and the emulator's identity service (harness check)."""
        assert self.topology is not None
        identity_port = int(self.cloud.identity_url.rsplit(":", 1)[1].split("/", 1)[0])
        for host in self.topology.hosts.values():
            for port in (self.pg.port, identity_port):
                ok = await asyncio.to_thread(
                    self.topology.reachable, host.netns, self.address, port
                )
                if not ok:
                    raise HarnessError(f"host {host.label} cannot reach {self.address}:{port}")

    async def close(self) -> None:
        """Kill every worker, stop the emulator and PostgreSQL, remove their files."""
        try:
            for worker in self.workers.values():
                with contextlib.suppress(Exception):
                    await worker.kill()
            if self.probe is not None:
                await self.probe.close()
            if self.session is not None:
                await self.session.close()
            if self.emulator is not None:
                await self.emulator.stop()
        finally:
            await asyncio.to_thread(self.pg.remove)

    # -- workers -------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTS_TEST_")}
        env[password_env("src")] = SRC.password
        env[password_env("dst")] = DST.password
        return env

    async def start_worker(self, name: str, host: Host | None = None) -> Worker:
        """``image-transfer run`` as worker ``name`` (on ``host``'s namespace, if given)."""
        if name in self.workers:
            raise HarnessError(f"worker {name} already started")
        prefix: list[str] = []
        where = "loopback"
        if host is not None:
            assert self.topology is not None, "hosts need a topology"
            prefix = self.topology.exec_prefix(host.netns)
            where = f"host {host.label} ({host.address})"
        out, err = self.workdir / f"{name}.out", self.workdir / f"{name}.err"
        args = [
            *("run", "-c", str(self.config), "--no-progress", "--worker-id", name),
            *("--lease-seconds", f"{self.lease_seconds:g}"),
            *("--report", str(self.workdir / f"{name}.report.json")),
        ]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *prefix,
                sys.executable,
                "-m",
                "transfer",
                *args,
                cwd=REPO,
                env=self.environment(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        worker = self.workers[name] = Worker(name, proc, out, err, where)
        return worker

    async def start_workers(
        self, names: Sequence[str], hosts: Sequence[Host | None] | None = None
    ) -> list[Worker]:
        placed = hosts if hosts is not None else [None] * len(names)
        return [await self.start_worker(n, h) for n, h in zip(names, placed, strict=True)]

    @staticmethod
    async def wait_workers(
        workers: Iterable[Worker], within: float = WORKER_TIMEOUT
    ) -> list[WorkerOutcome]:
        return list(await asyncio.gather(*(w.wait(within) for w in workers)))

    # -- the journal, from outside -------------------------------------------------------

    async def uploads_in_flight(self, worker: str | None = None) -> list[str] | None:
        """The source ids whose ``upload`` step ``worker`` (None: anyone) has started and not
        finished, by the journal (None: the server is unreachable just now)."""
        sql = (
            "SELECT s.source_id FROM steps s JOIN runs r ON r.id = s.run_id "
            "WHERE s.job = %s AND s.step = 'upload' AND s.finished_at IS NULL"
        )
        params: tuple[Any, ...] = (JOB,)
        if worker is not None:
            sql += " AND r.worker = %s"
            params += (worker,)
        rows = await self.journal.query(sql + " ORDER BY s.id", params)
        if rows is None:
            return None
        return [str(row[0]) for row in rows]

    async def wait_for_upload(self, worker: str | None = None, within: float = 60.0) -> list[str]:
        """Until ``worker`` (None: any worker) is inside an upload; returns the source ids of
        the uploads in flight then."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            in_flight = await self.uploads_in_flight(worker)
            if in_flight:
                return in_flight
            if all(w.proc.returncode is not None for w in self.workers.values()):
                break
            await asyncio.sleep(0.02)
        who = worker or "any worker"
        details = "\n".join(
            f"{w.name}: returncode {w.proc.returncode}\n{_tail(w.err, 1500)}"
            for w in self.workers.values()
        )
        raise HarnessError(f"{who} was never seen inside an upload within {within}s\n{details}")

    def source_name(self, source_id: str) -> str:
        return next((s.name for s in self.sources if s.id == source_id), source_id)

    async def history(self, source_ids: Iterable[str]) -> list[str]:
        """Each item's journaled steps in order, with the worker that ran each (diagnostics)."""
        wanted = list(dict.fromkeys(source_ids))
        rows = await self.journal.query(
            "SELECT s.source_id, r.worker, s.step, s.finished_at IS NOT NULL, s.ok "
            "FROM steps s JOIN runs r ON r.id = s.run_id "
            "WHERE s.job = %s AND s.source_id = ANY(%s) ORDER BY s.id",
            (JOB, wanted),
        )
        steps: dict[str, list[str]] = {source_id: [] for source_id in wanted}
        for source_id, worker, step, finished, ok in rows or []:
            how = "unfinished" if not finished else ("ok" if ok else "failed")
            steps[str(source_id)].append(f"{worker}:{step}:{how}")
        return [f"{self.source_name(i)}: {' '.join(steps[i]) or '(no steps)'}" for i in wanted]

    async def journal_states(self) -> dict[str, int]:
        """The job's entries by state, read from the journal's ``entries`` table."""
        for _ in range(50):
            rows = await self.journal.query(
                "SELECT state, COUNT(*) FROM entries WHERE job = %s GROUP BY state", (JOB,)
            )
            if rows is not None:
                return {str(state): int(count) for state, count in rows}
            await asyncio.sleep(0.2)
        raise HarnessError(f"the journal cannot be read: {self.pg.log_tail()}")

    # -- the proof -----------------------------------------------------------------------

    async def cloud_problems(self) -> list[str]:
        return await cloud_problems(self.http, self.cloud, self.sources)

    async def verdict(
        self,
        outcomes: Sequence[WorkerOutcome],
        *,
        must_succeed: Iterable[str],
        notes: Sequence[str] = (),
        watch: Iterable[str] = (),
    ) -> Verdict:
        """Everything a scenario asserts, gathered: the workers in ``must_succeed`` exited 0,
        the cloud holds exactly one verified copy of each source, the journal says done.
        ``watch``: source ids whose journaled steps go into the notes (the items struck)."""
        by_name = {o.name: o for o in outcomes}
        exits = []
        for name in must_succeed:
            o = by_name[name]
            if o.timed_out:
                exits.append(f"worker {name}: did not exit within its time (killed)")
            elif o.code != 0:
                exits.append(f"worker {name}: exit {o.code}, expected 0")
        return Verdict(
            problems=await self.cloud_problems(),
            states=await self.journal_states(),
            expected_states={"done": len(self.sources)},
            exit_failures=exits,
            outcomes=list(outcomes),
            notes=[
                f"seed {self.seed}, sources seeded in {self.seeded_in:.1f}s",
                *notes,
                *(f"steps of {line}" for line in await self.history(watch)),
            ],
        )


async def strike_when_uploading(
    cluster: Cluster, rng: random.Random, victim: str | None
) -> list[str]:
    """Wait until the run is under way, a random while more (up to 4 s), then until ``victim``
    (None: any worker) is inside an upload; returns the source ids of its uploads in flight."""
    await cluster.wait_for_upload(None)
    await asyncio.sleep(rng.uniform(0.0, 4.0))
    return await cluster.wait_for_upload(victim)
