"""The chaos soak against REAL Glance: two fresh Glance 33 regions per seed, a fault proxy
(``interop.fault_proxy``) in front of each, and the real ``image-transfer run`` in pre-issued-
token mode pointed at the proxies, SIGKILLed at random moments while the proxies answer 5xx
(with and without ``Retry-After``), cut upload and download bodies and add latency.

Per seed:

1. fresh regions KR1 and KR2 (``interop.server.GlanceCloud``), tenants src, dst, partner and
   outsider; 12-20 source images in src/KR1 of random sizes (0 bytes to a few MiB), with
   properties, tags, some shared (members partner, outsider), some protected, all seeded
   through the API directly against Glance;
2. a job from src/KR1 to src/KR2 (another region) and dst/KR1 (another tenant), whose
   endpoints are the proxies' URLs;
3. with every fault on: ``run`` SIGKILLed at least ``--kills`` times, each kill after some
   progress since that run began (upload bytes that reached Glance, or calls that change
   something), then up to ``--final-runs`` runs left alone until one exits 0 (each exit code
   recorded);
4. faults off, and the verdict, read by listing the targets through plain HTTP directly against
   Glance (neither the proxy nor the engine): every source copied exactly once (one image whose
   ``image_transfer_source_id`` names it), active, size, checksums, fields, tags, properties and
   members as the source's, nothing else in the target (nothing ``queued`` or ``saving``); the
   final run's exit code 0; and the journal saying ``done`` for every pair.

A failed seed says why: the problems found, and for each final run that did not exit 0 its
exit code, the reasons its report gives for the images it failed, and the last lines of its
stderr.  ``--workdir DIR`` keeps Glance's logs, the config, the journal and the reports.

Every random choice comes from the seed (scenario, kill moments, the proxies' dice), so
``--seed N`` replays a seed; timing still differs between runs, so a replay meets the same mix
of faults, not the same requests.

    python -m tests.interop.chaos --seeds 1-10
    python -m tests.interop.chaos --seed 3 --workdir /tmp/chaos-3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from interop.environment import BuildFailed, GlanceInstall, IndexUnreachable, ensure_glance
from interop.fault_proxy import Counters, FaultProxy, Faults, proxies, total
from interop.server import GlanceCloud, ServerFailed
from tests.engine.helpers import MARKER, journal_entries
from tests.interop import migration
from tests.interop.migration import (
    JOB_MARKER,
    GlanceApi,
    SourceImage,
    Target,
    start_cli,
)

KiB = 1 << 10
MiB = 1 << 20
JOB = "chaos"
TENANTS = ("src", "dst", "partner", "outsider")
#: Another region of the same tenant, and another tenant (in the source's region).
TARGETS = (Target("src", "KR2"), Target("dst", "KR1"))
_TAGS = ("golden", "lts", "base", "gpu", "hardened", "nightly")
_DISTROS = ("ubuntu", "rocky", "debian", "windows")


@dataclass(frozen=True)
class Settings:
    """One seed's scenario; the defaults are the full soak."""

    seed: int
    images: tuple[int, int] = (12, 20)  # how many source images: uniform in this range
    largest: int = 4 * MiB
    kills: int = 3  # SIGKILLs that must land mid-run
    final_runs: int = 3  # unkilled runs under faults, until one exits 0
    run_seconds: float = 150.0  # a run still going after this is killed (and it is a problem)
    transfers: int = 3
    retries: int = 3
    faults: Faults = field(default_factory=Faults)
    quiet: bool = False

    def replay(self) -> str:
        lo, hi = self.images
        f, usual = self.faults, Faults()
        extra = ""
        if f.error_rate != usual.error_rate:
            extra += f" --error-rate {f.error_rate:g}"
        if f.upload_drop_rate != usual.upload_drop_rate:
            extra += f" --drop-rate {f.upload_drop_rate:g}"
        if f.latency != usual.latency:
            extra += f" --max-latency {f.latency[1]:g}"
        return (
            f"python -m tests.interop.chaos --seed {self.seed} --images {lo}-{hi} "
            f"--largest {self.largest} --kills {self.kills} --final-runs {self.final_runs}"
            f" --run-seconds {self.run_seconds:g}{extra}"
        )


@dataclass
class Run:
    """One engine run."""

    label: str  # "kill 1", "final 2"
    code: int | None = None  # exit code; -9 when SIGKILLed
    killed: bool = False  # SIGKILLed at its moment
    timed_out: bool = False  # SIGKILLed because it ran past Settings.run_seconds
    moment: str = ""  # what the kill waited for
    seconds: float = 0.0
    stderr: str = ""
    report: list[dict[str, Any]] = field(default_factory=list)  # the jobs of --report

    def brief(self) -> str:
        if self.killed:
            return f"SIGKILL after {self.moment} ({self.seconds:.1f}s)"
        if self.timed_out:
            return f"SIGKILL: still running after {self.seconds:.0f}s"
        return f"exit {self.code} ({self.seconds:.1f}s)"

    def failures(self) -> Counter[str]:
        """The reasons the run's report gives for the images it failed, counted."""
        reasons: Counter[str] = Counter()
        for job in self.report:
            for item in job.get("items", []):
                if item.get("error"):
                    reasons[f"{item['outcome']}: {item['error']}"] += 1
            if job.get("error"):
                reasons[f"job: {job['error']}"] += 1
        return reasons

    def stderr_tail(self, lines: int = 10) -> list[str]:
        """The last lines of stderr, JSON log lines shown by their event and error."""
        out = []
        for line in self.stderr.strip().splitlines()[-lines:]:
            try:
                record = json.loads(line)
            except ValueError:
                out.append(line[:400])
                continue
            if isinstance(record, dict):
                keep = {
                    k: v for k, v in record.items() if k not in ("timestamp", "logger", "level")
                }
                out.append(f"{record.get('level', '?')}: {json.dumps(keep)[:400]}")
            else:
                out.append(line[:400])
        return out


@dataclass
class Result:
    settings: Settings
    images: int = 0
    megabytes: float = 0.0
    runs: list[Run] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    workdir: Path | None = None

    @property
    def kills(self) -> int:
        return sum(run.killed for run in self.runs if run.label.startswith("kill"))

    @property
    def final_code(self) -> int | None:
        finals = [run for run in self.runs if run.label.startswith("final")]
        return finals[-1].code if finals else None

    @property
    def passed(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        s, c = self.settings, self.counters
        head = "PASSED" if self.passed else "FAILED"
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(c.errors.items())) or "none"
        lines = [
            f"seed {s.seed}: {head} in {self.seconds:.1f}s: {self.images} images "
            f"({self.megabytes:.1f} MiB), {self.kills} SIGKILLs, final exit {self.final_code}; "
            f"injected 5xx {sum(c.errors.values())} ({statuses}; "
            f"{c.errors_with_retry_after} with Retry-After), cuts up {c.upload_drops} "
            f"down {c.download_drops}, {c.requests} requests",
            "  runs: " + "; ".join(f"{r.label}: {r.brief()}" for r in self.runs),
        ]
        if self.passed:
            return "\n".join(lines)
        lines += [f"  problem: {p}" for p in self.problems[:40]]
        if len(self.problems) > 40:
            lines.append(f"  ... and {len(self.problems) - 40} more problems")
        told: dict[tuple[str, ...], str] = {}
        for run in self.runs:
            if run.killed or run.code == 0:
                continue
            reasons = [f"{n} x {reason[:300]}" for reason, n in run.failures().most_common(8)]
            tail = [f"stderr| {line}" for line in run.stderr_tail()]
            # The same failure again (by its reasons, or its last line): said once.
            key = tuple(r.partition(" x ")[2] for r in reasons) or tuple(tail[-1:])
            what = "timed out" if run.timed_out else f"exited {run.code}"
            if key in told:
                lines.append(f"  {run.label} {what}: the same as {told[key]}")
                continue
            told[key] = run.label
            lines.append(f"  {run.label} {what}:")
            lines += [f"    {line}" for line in reasons + tail]
        if self.workdir is not None:
            lines.append(f"  files: {self.workdir}")
        lines.append(f"  replay: {s.replay()}")
        return "\n".join(lines)

    def reason(self) -> str:
        """The first problem, on one line (for the summary)."""
        return self.problems[0].splitlines()[0][:200] if self.problems else ""


# -- the scenario ----------------------------------------------------------------------------


def scenario(rng: random.Random, settings: Settings) -> list[SourceImage]:
    """Source images: a few empty or tiny ones, many of some KiB, the rest up to ``largest``;
    random properties and tags; every fifth shared, some protected."""
    count = rng.randint(*settings.images)
    images = []
    for index in range(count):
        kind = index if index < 2 else rng.choices((0, 1, 2), weights=(5, 45, 50))[0]
        if kind == 0:
            size = 0 if index == 0 else rng.randrange(1, 1 * KiB)
        elif kind == 1:
            size = rng.randrange(1 * KiB, 512 * KiB)
        else:
            size = rng.randrange(512 * KiB, max(settings.largest, 512 * KiB + 1))
        fields: dict[str, Any] = {
            "os_distro": rng.choice(_DISTROS),
            "build": str(rng.randrange(1, 1000)),
            "tags": sorted(rng.sample(_TAGS, rng.randrange(0, 4))),
        }
        if rng.random() < 0.3:
            fields["min_ram"] = rng.choice((128, 512, 2048))
        if rng.random() < 0.3:
            fields["min_disk"] = rng.choice((1, 10, 40))
        if rng.random() < 0.3:
            fields["disk_format"] = "raw"
        members: tuple[str, ...] = ()
        if index % 5 == 4:
            members = ("partner", "outsider") if index % 10 == 9 else ("partner",)
        images.append(
            SourceImage(
                f"{JOB}-{index:02d}",
                size,
                fields=fields,
                members=members,
                protect=rng.random() < 0.15,
            )
        )
    return images


def write_config(
    directory: Path, cloud: GlanceCloud, endpoints: dict[str, str], s: Settings
) -> Path:
    """The engine's config in pre-issued-token mode, every endpoint a proxy's URL."""
    return migration.write_config(
        directory,
        cloud,
        JOB,
        TARGETS,
        endpoints=endpoints,
        transfers=s.transfers,
        retries=s.retries,
    )


# -- the engine under chaos ------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """What the proxies have passed on to Glance so far."""

    upload_bytes: int
    mutations: int

    @staticmethod
    def of(running: dict[str, FaultProxy]) -> Progress:
        return Progress(
            sum(p.counters.upload_bytes for p in running.values()),
            sum(p.counters.mutations for p in running.values()),
        )


@dataclass(frozen=True)
class Moment:
    """When to kill a run: once this much more has reached Glance since it began, and then
    ``delay`` seconds more."""

    upload_bytes: int = 0
    mutations: int = 0
    delay: float = 0.0

    def reached(self, start: Progress, now: Progress) -> bool:
        return (
            now.upload_bytes - start.upload_bytes >= self.upload_bytes
            and now.mutations - start.mutations >= self.mutations
        )

    def __str__(self) -> str:
        what = (
            f"{self.upload_bytes / MiB:.2f} MiB uploaded"
            if self.upload_bytes
            else f"{self.mutations} changing calls"
        )
        return f"{what} +{self.delay:.2f}s"


def kill_moment(
    rng: random.Random, bytes_left: int, kills_left: int, bytes_total: int = 0
) -> Moment:
    """Half the time a share of the upload bytes still to come, small enough that the job
    cannot finish before the kills it still owes; otherwise a few changing calls (creates,
    patches, members: a kill among the metadata steps).  Either way some progress first.

    The delay and the number of calls shrink with the share of the job still to do: the
    engine finishes the last few small images within a dozen calls or a third of a second."""
    left = min(1.0, max(bytes_left, 0) / bytes_total) if bytes_total > 0 else 1.0
    delay = rng.uniform(0.0, 0.3) * left
    if rng.random() < 0.5:
        share = max(bytes_left, 256 * KiB) / (kills_left + 1)
        return Moment(upload_bytes=max(int(rng.uniform(0.05, 0.9) * share), 16 * KiB), delay=delay)
    return Moment(mutations=rng.randint(1, max(1, round(12 * left / kills_left))), delay=delay)


async def engine_run(
    cloud: GlanceCloud,
    config: Path,
    run: Run,
    running: dict[str, FaultProxy],
    moment: Moment | None,
    within: float,
) -> None:
    """One ``image-transfer run``, SIGKILLed at ``moment`` (None: left alone), or after
    ``within`` seconds at the latest."""
    report = config.parent / f"report-{run.label.replace(' ', '-')}.json"
    report.unlink(missing_ok=True)
    proc = await start_cli(
        cloud, "run", "-c", str(config), "--no-progress", "--report", str(report)
    )
    output = asyncio.ensure_future(proc.communicate())
    begun, start = time.monotonic(), Progress.of(running)
    kill = timeout = False
    while not output.done():
        if time.monotonic() - begun >= within:
            kill = timeout = True
            break
        if moment is not None and moment.reached(start, Progress.of(running)):
            if moment.delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(output), moment.delay)
            kill = not output.done()
            break
        await asyncio.sleep(0.01)
    if kill:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
    _, err = await output
    run.seconds = time.monotonic() - begun
    run.code = proc.returncode
    dead = kill and proc.returncode == -signal.SIGKILL
    run.killed, run.timed_out = dead and not timeout, dead and timeout
    run.moment = str(moment) if moment is not None else ""
    run.stderr = err.decode(errors="replace")
    if report.exists():
        with contextlib.suppress(ValueError):
            data = json.loads(report.read_text())
            jobs = data.get("jobs", data) if isinstance(data, dict) else data
            run.report = [j for j in (jobs if isinstance(jobs, list) else [jobs]) if j]


# -- the verdict -----------------------------------------------------------------------------


async def target_problems(api: GlanceApi, sources: Sequence[str]) -> list[str]:
    """What listing the targets directly on Glance finds wrong: ``GlanceApi.problems`` (one
    faithful copy of each source: fields, tags, properties with markers, members), plus every
    image of the target that is not an active copy of one of the sources."""
    problems = await api.problems(sources, TARGETS, JOB)
    wanted = set(sources)
    for target in TARGETS:
        for image in await api.owned(target.cloud, target.region):
            where = f"{target.key} {image.get('name')} ({image['id']})"
            if image["status"] != "active":
                problems.append(f"{where}: left {image['status']}")
            if image.get(MARKER) not in wanted or image.get(JOB_MARKER) != JOB:
                problems.append(f"{where}: not a copy of a source (markers {image.get(MARKER)!r})")
    return problems


async def journal_problems(workdir: Path, sources: Sequence[str]) -> list[str]:
    entries = await journal_entries(workdir, JOB)
    problems = []
    for source in sources:
        for target in TARGETS:
            entry = entries.get((source, target.key))
            state = entry.state if entry is not None else "missing"
            if state != "done":
                problems.append(f"journal: {source} -> {target.key} is {state}")
    return problems


# -- one seed --------------------------------------------------------------------------------


async def soak_seed(settings: Settings, install: GlanceInstall, workdir: Path) -> Result:
    """The whole soak of one seed, in ``workdir`` (Glance's files, config, journal)."""
    started = time.monotonic()
    rng = random.Random(settings.seed)
    result = Result(settings, workdir=workdir)

    def say(line: str) -> None:
        if not settings.quiet:
            print(f"[seed {settings.seed} {time.monotonic() - started:6.1f}s] {line}", flush=True)

    images = scenario(rng, settings)
    result.images = len(images)
    result.megabytes = sum(i.size for i in images) / MiB
    cloud = GlanceCloud(install, workdir / "glance", ("KR1", "KR2"), TENANTS)
    cloud.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            proxies(cloud.regions, seed=settings.seed, faults=settings.faults) as running,
        ):
            api = GlanceApi(cloud, http)
            sources = [
                await api.seed(image, seed=settings.seed * 1000 + index)
                for index, image in enumerate(images)
            ]
            config = write_config(workdir, cloud, {r: p.url for r, p in running.items()}, settings)
            say(f"{len(images)} images, {result.megabytes:.1f} MiB; proxies {running['KR1'].url}")
            await chaos(cloud, config, running, rng, settings, result, say)
            for proxy in running.values():
                proxy.enabled = False
            result.counters = total({r: p.counters for r, p in running.items()})
            if result.kills < settings.kills:
                result.problems.append(
                    f"only {result.kills} of {settings.kills} SIGKILLs landed mid-run"
                )
            if result.final_code != 0:
                codes = [r.code for r in result.runs if r.label.startswith("final")]
                result.problems.append(f"no final run exited 0 (exit codes {codes})")
            result.problems += await target_problems(api, sources)
            result.problems += await journal_problems(workdir, sources)
    finally:
        cloud.stop()
    result.seconds = time.monotonic() - started
    return result


async def chaos(
    cloud: GlanceCloud,
    config: Path,
    running: dict[str, FaultProxy],
    rng: random.Random,
    settings: Settings,
    result: Result,
    say: Callable[[str], None],
) -> None:
    """The kills, then the final runs, every fault on."""
    upload_total = int(result.megabytes * MiB) * len(TARGETS)
    attempts = 0
    while result.kills < settings.kills and attempts < settings.kills * 3:
        attempts += 1
        left = upload_total - Progress.of(running).upload_bytes
        moment = kill_moment(rng, left, settings.kills - result.kills, upload_total)
        run = Run(f"kill {attempts}")
        await engine_run(cloud, config, run, running, moment, settings.run_seconds)
        result.runs.append(run)
        say(f"{run.label}: {run.brief()}")
        if run.code == 0:
            break  # the job finished before the kills it owed: nothing left for them to hit
        if run.timed_out:
            result.problems.append(
                f"{run.label} did not reach its moment ({moment}) nor end "
                f"within {settings.run_seconds:g}s"
            )
    for index in range(1, settings.final_runs + 1):
        run = Run(f"final {index}")
        await engine_run(cloud, config, run, running, None, settings.run_seconds)
        result.runs.append(run)
        say(f"{run.label}: {run.brief()}")
        if run.timed_out:
            result.problems.append(f"{run.label} did not finish within {settings.run_seconds:g}s")
        if run.code == 0:
            break


# -- the command line ------------------------------------------------------------------------


def seed_list(text: str) -> list[int]:
    """``1-10``, ``3``, ``1,4,7-9``."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if sep:
            seeds += range(int(lo), int(hi) + 1)
        elif lo:
            seeds.append(int(lo))
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seed in {text!r}")
    return seeds


def span(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    low, high = int(lo), int(hi if sep else lo)
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected N or LOW-HIGH with 1 <= LOW <= HIGH: {text!r}")
    return low, high


def parse(argv: Sequence[str]) -> tuple[list[int], Settings, Path | None]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.interop.chaos",
        description="Chaos soak of the engine against real Glance behind fault proxies.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="one seed (replays it)")
    which.add_argument("--seeds", type=seed_list, help="several: 1-10, or 1,4,7-9")
    parser.add_argument("--images", type=span, default=(12, 20), help="N or LOW-HIGH (12-20)")
    parser.add_argument("--largest", type=int, default=4 * MiB, help="bytes (4 MiB)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per seed (3)")
    parser.add_argument("--final-runs", type=int, default=3, help="unkilled runs at most (3)")
    parser.add_argument("--run-seconds", type=float, default=150.0, help="one run's limit")
    parser.add_argument("--error-rate", type=float, default=0.10)
    parser.add_argument("--drop-rate", type=float, default=0.05, help="cuts, each way")
    parser.add_argument("--max-latency", type=float, default=0.020, help="seconds")
    parser.add_argument("--workdir", type=Path, help="keep every seed's files here")
    parser.add_argument("--quiet", action="store_true", help="verdicts only")
    args = parser.parse_args(argv)
    if args.kills < 0 or args.final_runs < 1 or args.run_seconds <= 0:
        parser.error("--kills must be >= 0, --final-runs >= 1, --run-seconds > 0")
    try:
        faults = Faults(
            error_rate=args.error_rate,
            upload_drop_rate=args.drop_rate,
            download_drop_rate=args.drop_rate,
            latency=(0.0, args.max_latency),
        )
    except ValueError as exc:
        parser.error(str(exc))
    seeds = [args.seed] if args.seed is not None else args.seeds
    settings = Settings(
        seed=seeds[0],
        images=args.images,
        largest=args.largest,
        kills=args.kills,
        final_runs=args.final_runs,
        run_seconds=args.run_seconds,
        faults=faults,
        quiet=args.quiet,
    )
    return seeds, settings, args.workdir


@contextlib.contextmanager
def seed_dir(keep: Path | None, seed: int) -> Iterator[Path]:
    if keep is not None:
        path = keep / f"seed-{seed}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=f"chaos-glance-{seed}-") as directory:
        yield Path(directory)


def main(argv: Sequence[str] | None = None) -> int:
    seeds, base, keep = parse(sys.argv[1:] if argv is None else argv)
    # An engine SIGKILLed mid-request leaves the proxies' server with half-read requests.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    try:
        install = ensure_glance()
    except (IndexUnreachable, BuildFailed) as exc:
        print(f"chaos: Glance cannot be installed: {exc}", file=sys.stderr)
        return 2
    results = []
    for seed in seeds:
        settings = dataclasses.replace(base, seed=seed)
        with seed_dir(keep, seed) as workdir:
            try:
                result = asyncio.run(soak_seed(settings, install, workdir))
            except ServerFailed as exc:
                result = Result(settings, problems=[f"Glance did not start: {exc}"])
            if keep is None:
                result.workdir = None
        print(result.verdict(), flush=True)
        results.append(result)
    passed = [r.settings.seed for r in results if r.passed]
    print(f"\nchaos soak: {len(passed)}/{len(results)} seeds passed", flush=True)
    for r in results:
        if not r.passed:
            print(f"  seed {r.settings.seed} FAILED: {r.reason()}", flush=True)
    return 0 if len(passed) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
