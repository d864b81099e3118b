"""The chaos soak driver: one job of many images between two regions and to a second tenant,
run by real ``image-transfer run`` child processes that are SIGKILLed at random moments while
the emulated cloud fails requests, cuts connections mid-body, jitters and expires tokens.

It owns the scenario (sizes, sharing, fault levels, kill moments), the chaos loop and the
verdict.  The verdict never reads the engine's report: it lists both clouds
(``tests.engine.helpers.copy_problems``) and reads the journal (``journal_problems``).

The emulator runs in this process; every random choice here comes from ``--seed`` (the
emulator's own dice too), so a failing seed replays the same scenario.  Timing still differs
between runs, so a replay meets the same kinds of faults, not byte-for-byte the same moments.

Run it as ``python -m tests.soak.driver --seed N [--images 100] [--kills 5] [--max-seconds 600]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.engine.helpers import (
    OUTSIDER,
    PARTNER,
    MiB,
    copy_problems,
    environment,
    job_toml,
    journal_problems,
    new_emulator,
    seed_many,
    share,
    start_cli,
    write_config,
)
from transfer.emulator import Emulator

KiB = 1 << 10
# Large enough never to run out: the errors injected are counted as this minus what is left.
_ERROR_BUDGET = 1 << 40
# How often the drop dice are rolled for the bodies that started since the last roll.
_DROP_TICK = 0.25


@dataclass(frozen=True)
class Settings:
    """One soak scenario; the defaults are the full soak of the issue."""

    seed: int
    images: int = 100
    kills: int = 5
    max_seconds: float = 600.0
    token_period: float = 20.0  # tokens of every tenant are expired this often
    error_rate: float = 0.10  # injected 500/502/503, each with Retry-After
    retry_after: float = 0.5
    drop_rate: float = 0.05  # share of upload and download bodies cut mid-way
    latency: float = 0.002
    latency_jitter: float = 0.05
    bandwidth: int = 24_000_000  # bytes/s per connection: slow enough for kills to land mid-body
    largest: int = 5 * MiB  # the "few MiB" images are 1 MiB up to this
    kill_after: tuple[float, float] = (0.3, 3.0)  # seconds after a run starts, for timed kills
    transfers: int = 4
    retries: int = 8
    quiet: bool = False  # no progress lines (the verdict is printed anyway)


@dataclass
class Tally:
    """What the soak did, for the verdict line and the report."""

    runs: list[str] = field(default_factory=list)  # one line per engine run
    kills: int = 0
    errors_injected: int = 0
    drops_armed: int = 0
    drops_fired: int = 0
    token_expiries: int = 0
    final_code: int | None = None
    seconds: float = 0.0


@dataclass
class Result:
    settings: Settings
    tally: Tally
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        s, t = self.settings, self.tally
        head = "SOAK PASSED" if self.passed else "SOAK FAILED"
        lines = [
            f"{head} seed={s.seed} images={s.images} in {t.seconds:.1f}s: "
            f"{len(t.runs)} runs, {t.kills} SIGKILLs, {t.errors_injected} errors injected, "
            f"{t.drops_fired}/{t.drops_armed} drops fired, {t.token_expiries} token expiries, "
            f"final exit {t.final_code}"
        ]
        lines += [f"  {problem}" for problem in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        if not self.passed:
            lines.append(f"replay: python -m tests.soak.driver {replay_arguments(s)}")
        return "\n".join(lines)


def replay_arguments(s: Settings) -> str:
    return f"--seed {s.seed} --images {s.images} --kills {s.kills} --max-seconds {s.max_seconds:g}"


def image_sizes(rng: random.Random, count: int, largest: int) -> list[int]:
    """Mixed sizes: a few empty images, many of some KiB, the rest of a few MiB."""
    sizes = []
    for index in range(count):
        kind = index if index < 3 else rng.choices((0, 1, 2), weights=(5, 55, 40))[0]
        if kind == 0:
            sizes.append(0)
        elif kind == 1:
            sizes.append(rng.randrange(1 * KiB, 1 * MiB))
        else:
            sizes.append(rng.randrange(1 * MiB, max(largest, 1 * MiB + 1)))
    return sizes


class Chaos:
    """The faults that run beside the engine: on/off, token expiry and the drop dice."""

    def __init__(self, emu: Emulator, settings: Settings, rng: random.Random, tally: Tally):
        self.emu = emu
        self.settings = settings
        self.rng = rng
        self.tally = tally
        self._bodies_seen = self._bodies()

    def _bodies(self) -> int:
        total = 0
        for region in ("KR1", "KR2"):
            requests = self.emu.counters(region)["requests"]
            total += int(requests.get("upload", 0)) + int(requests.get("download", 0))
        return total

    def on(self) -> None:
        """Every fault at once; where bodies are cut is re-rolled for each run."""
        s = self.settings
        self.emu.set_faults(
            error_rate=s.error_rate,
            retry_after=s.retry_after,
            errors_remaining=_ERROR_BUDGET - self.tally.errors_injected,
            latency=s.latency,
            latency_jitter=s.latency_jitter,
            bandwidth=s.bandwidth,
            drop_upload_after=self.rng.randrange(4 * KiB, 512 * KiB),
            drop_download_after=self.rng.randrange(4 * KiB, 512 * KiB),
        )

    def off(self) -> None:
        self.count()
        faults = self.emu.faults
        self.tally.drops_armed -= faults.drops_remaining or 0  # armed but never fired
        self.emu.set_faults(
            error_rate=0.0,
            errors_remaining=None,
            drops_remaining=0,
            latency=0.0,
            latency_jitter=0.0,
            bandwidth=None,
        )

    def count(self) -> None:
        faults = self.emu.faults
        if faults.errors_remaining is not None:
            self.tally.errors_injected = _ERROR_BUDGET - faults.errors_remaining
        self.tally.drops_fired = self.tally.drops_armed - (faults.drops_remaining or 0)

    def roll_drops(self) -> None:
        """Arm one drop per body started since the last roll, each with ``drop_rate``."""
        bodies = self._bodies()
        new, self._bodies_seen = bodies - self._bodies_seen, bodies
        if self.emu.faults.error_rate == 0.0:  # faults are off
            return
        armed = sum(self.rng.random() < self.settings.drop_rate for _ in range(new))
        if armed:
            self.emu.set_faults(drops_remaining=(self.emu.faults.drops_remaining or 0) + armed)
            self.tally.drops_armed += armed
        self.count()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Token expiry and the drop dice in the background, for as long as the block runs."""

        async def expire() -> None:
            while True:
                await asyncio.sleep(self.settings.token_period)
                self.emu.expire_tokens()
                self.tally.token_expiries += 1

        async def drops() -> None:
            while True:
                await asyncio.sleep(_DROP_TICK)
                self.roll_drops()

        tasks = [asyncio.create_task(expire()), asyncio.create_task(drops())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class Engine:
    """``image-transfer run`` as a child process whose output is drained while it runs."""

    def __init__(self, config: Path) -> None:
        self.args = ("run", "-c", str(config), "--no-progress")
        self.env = environment()

    async def start(self) -> tuple[asyncio.subprocess.Process, asyncio.Task[tuple[bytes, bytes]]]:
        proc = await start_cli(*self.args, env=self.env)
        return proc, asyncio.create_task(proc.communicate())


def received(emu: Emulator) -> int:
    return sum(int(emu.counters(r)["bytes_received"]) for r in ("KR1", "KR2"))


async def chaos_run(
    engine: Engine, emu: Emulator, kill_at: float | int, budget: float
) -> tuple[bool, int | None, str]:
    """One run, SIGKILLed at its moment: ``kill_at`` seconds after it starts (a float), or once
    the clouds have received that many more upload bytes (an int).

    Returns (killed, exit code, output tail); a run that ends first is not killed.
    """
    proc, output = await engine.start()
    start, begun = received(emu), time.monotonic()
    deadline = begun + min(budget, 120.0)
    while not output.done() and time.monotonic() < deadline:
        if isinstance(kill_at, float):
            if time.monotonic() - begun >= kill_at:
                break
        elif received(emu) - start >= kill_at:
            break
        await asyncio.sleep(0.01)
    killed = proc.returncode is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    out, err = await output
    code = proc.returncode
    if killed and code != -signal.SIGKILL:
        killed = False  # it ended on its own just before the signal
    return killed, code, (out + err).decode(errors="replace")[-4000:]


def kill_moment(
    rng: random.Random, settings: Settings, bytes_left: int, kills_left: int, total: int
) -> float | int:
    """When to kill the next run: half the time a moment after its start (often while it plans
    or patches metadata), otherwise a share of the upload bytes still to come, small enough
    that the job cannot finish before the kills it still owes.  A timed moment shrinks too
    with the share of the job left (of ``total`` bytes) over those kills: a run with little
    left to do ends sooner."""
    share = max(bytes_left, 0) / (kills_left + 1)
    if rng.random() < 0.5:
        low, high = settings.kill_after
        left = max(bytes_left, 0) / total if total > 0 else 1.0
        return rng.uniform(low, max(low, high * left / kills_left))
    return int(rng.uniform(0.05, 1.0) * share) + 1


async def soak(settings: Settings, workdir: Path) -> Result:
    """Run the whole soak in ``workdir`` (config, journal) and return the verdict."""
    started = time.monotonic()
    deadline = started + settings.max_seconds
    rng = random.Random(settings.seed)
    tally = Tally()
    problems: list[str] = []

    def say(line: str) -> None:
        if not settings.quiet:
            print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

    async with new_emulator(seed=settings.seed) as emu, aiohttp.ClientSession() as http:
        sizes = image_sizes(rng, settings.images, settings.largest)
        shared = [i for i in range(settings.images) if i % 5 == 4]
        sources = await seed_many(emu, sizes, prefix="soak", shared=shared)
        for index in shared:
            # Partner's credentials are in the config (its membership gets accepted), the
            # outsider's are not (its membership stays pending).
            members = [PARTNER, OUTSIDER] if index % 10 == 9 else [PARTNER]
            await share(emu, http, sources[index], members)
        say(
            f"seed {settings.seed}: {len(sources)} images, {sum(sizes) / MiB:.1f} MiB, "
            f"{len(shared)} shared, to src/KR2 and dst/KR1"
        )
        config = write_config(
            workdir,
            emu,
            job_toml(transfers=settings.transfers, retries=settings.retries),
        )
        engine = Engine(config)
        upload_total = sum(sizes) * 2  # one copy in each of the two targets
        chaos = Chaos(emu, settings, rng, tally)

        async with chaos.running():
            attempts = 0
            finished = False  # the job completed under chaos
            while tally.kills < settings.kills and attempts < settings.kills * 3:
                if time.monotonic() >= deadline:
                    problems.append(f"out of time after {tally.kills} kills")
                    break
                attempts += 1
                chaos.on()
                moment = kill_moment(
                    rng,
                    settings,
                    upload_total - received(emu),
                    settings.kills - tally.kills,
                    upload_total,
                )
                killed, code, tail = await chaos_run(
                    engine, emu, moment, deadline - time.monotonic()
                )
                chaos.count()
                tally.kills += killed
                when = f"{moment:.2f}s in" if isinstance(moment, float) else f"{moment} B in"
                line = f"SIGKILL {when}" if killed else f"ended on its own with exit {code}"
                tally.runs.append(line)
                say(
                    f"run {len(tally.runs)}: {line} (errors {tally.errors_injected}, "
                    f"drops {tally.drops_fired}, token expiries {tally.token_expiries})"
                )
                if not killed and code not in (0, 1):
                    say(f"run {len(tally.runs)} output:\n{tail}")
                if not killed and code == 0:
                    finished = True
                    break  # the job finished under chaos: nothing left for kills to hit
            if tally.kills < settings.kills:
                problems.append(f"only {tally.kills} of {settings.kills} kills landed mid-run")

            if not problems and not finished:
                # One run left alone under every fault: images that exhaust their retries end
                # it partial (exit 1), and the clean run below must pick them up.
                chaos.on()
                killed, code, tail = await chaos_run(
                    engine, emu, float(settings.max_seconds), (deadline - time.monotonic()) / 2
                )
                chaos.count()
                tally.kills += killed
                tally.runs.append(f"under faults, unkilled: exit {code}")
                say(f"run {len(tally.runs)}: {tally.runs[-1]}")
                if not killed and code not in (0, 1):
                    problems.append(f"a run under faults exited {code}:\n{tail}")

            chaos.off()
            say("faults off, running to completion")
            proc, output = await engine.start()
            remaining = max(1.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({output}, timeout=remaining)
            if not done:
                proc.send_signal(signal.SIGKILL)
                problems.append(f"the final run did not finish within {settings.max_seconds:g}s")
            out, err = await output
            tally.final_code = proc.returncode
            tally.runs.append(f"final: exit {proc.returncode}")
            if done and proc.returncode != 0:
                tail = (out + err).decode(errors="replace")[-4000:]
                problems.append(f"the final run exited {proc.returncode}:\n{tail}")

        problems += await copy_problems(emu, http, sources)
        problems += await journal_problems(workdir, sources)
    tally.seconds = time.monotonic() - started
    return Result(settings, tally, problems)


def parse(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak.driver",
        description="Chaos soak: a job under every fault at once, with SIGKILLs of the engine.",
    )
    parser.add_argument("--seed", type=int, required=True, help="replays the same scenario")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--kills", type=int, default=5, help="at least this many SIGKILLs")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="fail beyond this")
    parser.add_argument("--token-period", type=float, default=20.0)
    parser.add_argument("--quiet", action="store_true", help="print only the verdict")
    args = parser.parse_args(argv)
    if args.images < 3 or args.kills < 0 or args.max_seconds <= 0 or args.token_period <= 0:
        parser.error("--images must be at least 3; --kills, --max-seconds, --token-period >= 0")
    return Settings(
        seed=args.seed,
        images=args.images,
        kills=args.kills,
        max_seconds=args.max_seconds,
        token_period=args.token_period,
        quiet=args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv)
    # A killed engine leaves requests half-sent; the emulator's server logs each with a
    # traceback, which would bury the verdict.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="image-transfer-soak-") as directory:
        result = asyncio.run(soak(settings, Path(directory)))
    print(result.verdict(), flush=True)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
