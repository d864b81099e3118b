"""The engine: runs one job: lists, plans, then copies with two bounded worker pools.

A run opens one authenticated session per cloud the job names, lists the selected source images
and every target's images, asks the pure planner what each (source, target) pair needs, and hands
the pairs to workers: ``transfers`` workers for pairs that move bytes, ``checkers`` workers for
pairs that only need metadata.  One pair's failure never stops the others.  A stop request
(SIGINT/SIGTERM, see ``cli``) lets running pairs finish and starts no new one; the journal stays
true either way because every step is journaled before the next begins.

The pairs that move bytes are grouped by source image: one group takes one ``transfers`` slot
and runs its pairs at once, reading the source once for all of them (fan-out) or from a spool
file, as ``transfer.feeds`` decides.  Spool files no failed image needs any more are removed
at the end of the run (all of them with ``clean_spool``).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import structlog

from transfer.auth import CloudSession
from transfer.client import HttpSettings, ImageClient
from transfer.config import Config, JobConfig
from transfer.errors import TransferError
from transfer.feeds import Feed, FeedChooser
from transfer.journal import ItemKey, Journal, JournalEntry, LeaseLost, PlanTicket
from transfer.metadata import DesiredTarget
from transfer.models import Image, Member
from transfer.pipeline import ItemResult, Pipeline, Target, verify_copy
from transfer.planner import Code, PlanItem, plan_job
from transfer.spool import SpoolArea
from transfer.streams import TokenBucket

log = structlog.get_logger("transfer.engine")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ActiveTransfer:
    """One (image, target) pair being worked on, for the display."""

    name: str
    target: str
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class Progress:
    """Counters a display reads while the run goes on (a subscriber, not code in the loop)."""

    images_total: int = 0
    images_done: int = 0
    images_failed: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    started: float = field(default_factory=time.monotonic)
    active: dict[tuple[str, str], ActiveTransfer] = field(default_factory=dict)

    def add_bytes(self, source_id: str, target_key: str, n: int) -> None:
        self.bytes_done += n
        active = self.active.get((source_id, target_key))
        if active is not None:
            active.done += n

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.bytes_done / elapsed if elapsed > 0 else 0.0


@dataclass
class JobPlan:
    """Everything the planner needs and what it decided, for one job."""

    job: JobConfig
    items: list[PlanItem]
    sources: list[Image]
    desired: dict[tuple[str, str], DesiredTarget]
    targets: dict[str, Target]
    source_client: ImageClient
    spool_dir: Path | None = None  # where spool files go (None: "spool" in the working dir)


@dataclass
class RunSummary:
    job: str
    run_id: int
    results: list[ItemResult]
    plan: list[PlanItem]
    started: float
    ended: float
    interrupted: bool = False
    not_started: int = 0  # items a stop or deadline left for the next run

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.results)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def outcome(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.failed:
            return "partial" if len(self.failed) < len(self.results) else "failed"
        return "ok"


class Clouds:
    """One authenticated session per cloud name, opened on first use, closed together."""

    def __init__(self, config: Config, stack: AsyncExitStack, settings: HttpSettings) -> None:
        self._config = config
        self._stack = stack
        self._settings = settings
        self._sessions: dict[str, CloudSession] = {}
        self._lock = anyio.Lock()

    async def session(self, name: str) -> CloudSession:
        async with self._lock:
            if name not in self._sessions:
                session = CloudSession(self._config.clouds[name], settings=self._settings)
                self._sessions[name] = await self._stack.enter_async_context(session)
            return self._sessions[name]

    async def client(self, name: str, region: str) -> ImageClient:
        return await (await self.session(name)).image_client(region)

    def cloud_for_tenant(self, tenant_id: str) -> str | None:
        for name, creds in self._config.clouds.items():
            if creds.tenant_id == tenant_id:
                return name
        return None


@asynccontextmanager
async def open_clouds(
    config: Config, settings: HttpSettings | None = None
) -> AsyncIterator[Clouds]:
    async with AsyncExitStack() as stack:
        yield Clouds(config, stack, settings or HttpSettings())


async def _gather(
    limiter: anyio.CapacityLimiter, funcs: Sequence[Callable[[], Awaitable[None]]]
) -> None:
    async def one(func: Callable[[], Awaitable[None]]) -> None:
        async with limiter:
            await func()

    async with anyio.create_task_group() as tg:
        for func in funcs:
            tg.start_soon(one, func)


async def build_plan(config: Config, job: JobConfig, clouds: Clouds, journal: Journal) -> JobPlan:
    """List both sides, read the journal and plan every (source, target) pair."""
    checkers = anyio.CapacityLimiter(job.checkers)
    source_client = await clouds.client(job.source.cloud, job.source.region)
    filters = job.select.api_filters()
    sources = [
        image
        async for image in source_client.list_images(**cast(dict[str, Any], filters))
        if job.select.matches(image)
    ]
    log.info("listed source", job=job.name, images=len(sources))

    targets: dict[str, Target] = {}
    listings: dict[str, list[Image]] = {}
    for endpoint in job.targets:
        session = await clouds.session(endpoint.cloud)
        client = await session.image_client(endpoint.region)
        tenant_id = await session.tenant_id()
        listings[endpoint.key] = [image async for image in client.list_images(owner=tenant_id)]
        targets[endpoint.key] = Target(
            key=endpoint.key, region=endpoint.region, client=client, tenant_id=tenant_id
        )

    source_members: dict[str, frozenset[str]] = {}
    if job.copy.members:

        def lister(image: Image) -> Callable[[], Awaitable[None]]:
            async def list_members() -> None:
                members: list[Member] = await source_client.list_members(image.id)
                source_members[image.id] = frozenset(m.member_id for m in members)

            return list_members

        await _gather(checkers, [lister(i) for i in sources if i.visibility == "shared"])

    entries = await journal.entries(job.name)
    items = plan_job(
        job,
        sources=sources,
        targets=listings,
        journal=entries,
        source_members=source_members,
        target_tenants={key: t.tenant_id for key, t in targets.items()},
    )
    desired: dict[tuple[str, str], DesiredTarget] = {}
    member_tenants: set[str] = set()
    for item in items:
        if item.source is not None and item.desired is not None:
            desired[(item.source.id, item.target_key)] = item.desired
            member_tenants |= item.desired.members

    if job.copy.accept and member_tenants:
        for key, target in targets.items():
            member_clients: dict[str, ImageClient] = {}
            for tenant in sorted(member_tenants):
                cloud = clouds.cloud_for_tenant(tenant)
                if tenant == target.tenant_id:
                    continue
                if cloud is not None:
                    member_clients[tenant] = await clouds.client(cloud, target.region)
            targets[key] = dataclasses.replace(target, member_clients=member_clients)

    if job.copy.members or job.copy.accept:
        items = await _member_drift(items, targets, job, checkers)

    return JobPlan(
        job=job,
        items=items,
        sources=sources,
        desired=desired,
        targets=targets,
        source_client=source_client,
        spool_dir=job.spool_dir or config.journal.path.parent / "spool",
    )


async def _member_drift(
    items: list[PlanItem],
    targets: Mapping[str, Target],
    job: JobConfig,
    limiter: anyio.CapacityLimiter,
) -> list[PlanItem]:
    """In-sync copies whose members differ from the wanted ones become updates.

    The pure planner cannot see members (they take a call per image), so they are compared
    here, only for copies that are shared: the nightly cost is one call per shared copy.
    """
    result = list(items)

    def checker(index: int, item: PlanItem) -> Callable[[], Awaitable[None]]:
        async def check() -> None:
            assert item.target is not None and item.desired is not None
            target = targets[item.target_key]
            members = await target.client.list_members(item.target.id)
            reasons = member_differences(
                {m.member_id: m.status for m in members},
                item.desired.members,
                accepting=target.member_clients.keys() if job.copy.accept else (),
                remove_extra=job.copy.members,
            )
            if reasons:
                result[index] = dataclasses.replace(
                    item, code=Code.UPDATE, reasons=(*item.reasons, *reasons)
                )

        return check

    await _gather(
        limiter,
        [
            checker(index, item)
            for index, item in enumerate(items)
            if item.code is Code.IN_SYNC
            and item.target is not None
            and item.desired is not None
            and item.target.visibility == "shared"
        ],
    )
    return result


def member_differences(
    current: Mapping[str, str],
    wanted: Collection[str],
    *,
    accepting: Collection[str],
    remove_extra: bool,
) -> list[str]:
    """Why a copy's members (member -> status) are not the wanted ones; ``accepting`` are the
    members whose credentials the config has, so they should have accepted."""
    reasons = [f"member {m} missing" for m in sorted(set(wanted) - current.keys())]
    if remove_extra:
        reasons += [f"member {m} not on the source" for m in sorted(current.keys() - set(wanted))]
    reasons += [
        f"member {m} is {status}, expected accepted"
        for m, status in sorted(current.items())
        if m in accepting and m in wanted and status != "accepted"
    ]
    return reasons


async def run_plan(
    plan: JobPlan,
    *,
    journal: Journal,
    worker: str | None = None,
    bucket: TokenBucket | None = None,
    progress: Progress | None = None,
    stop: anyio.Event | None = None,
    clean_spool: bool = False,
    ticket: PlanTicket | None = None,
    lease_seconds: float = 30.0,
) -> RunSummary:
    """Execute a plan; returns when every item is done, failed or (after ``stop``) not started.

    ``clean_spool`` removes every spool file of the job at the end, even those kept so that
    the next run can resume the images that failed.

    With a ``ticket`` (a journal shared by several workers, see ``join_and_plan``) this worker
    takes only the items it claims from the published plan, holds each under a lease that a
    background task renews, and abandons an item whose lease it lost; an item whose worker died
    is claimed again once its lease runs out.
    """
    job = plan.job
    progress = progress or Progress()
    stop = stop or anyio.Event()
    started = time.monotonic()
    area = SpoolArea(root=plan.spool_dir or Path("spool"), job=job.name, journal=journal)
    if job.spool != "off":
        _ = area.reserve  # a bad IMAGE_TRANSFER_SPOOL_RESERVE is a usage error, before any work
    run_id = await journal.start_run(job.name, worker or default_worker_id())
    pipeline = Pipeline(
        job=job,
        journal=journal,
        run_id=run_id,
        source=plan.source_client,
        source_region=job.source.region,
        bucket=bucket,
        on_bytes=progress.add_bytes,
    )
    work = [i for i in plan.items if i.code in (Code.COPY, Code.REPAIR, Code.UPDATE)]
    data_items = [i for i in work if i.code in (Code.COPY, Code.REPAIR)]
    meta_items = [i for i in work if i.code is Code.UPDATE]
    groups = _by_source(data_items)
    results: list[ItemResult] = []
    held: dict[ItemKey, anyio.CancelScope | None] = {}  # claimed items (shared journals only)
    entries = await journal.entries(job.name)
    chooser = FeedChooser(
        mode=job.spool,
        verify=job.verify,
        client=plan.source_client,
        area=area,
        entries=entries,
    )
    for item in plan.items:
        if item.code is Code.IN_SYNC and item.source is not None:
            await _record_in_sync(journal, job.name, item, entries.get(_item_key(item)))
            results.append(
                ItemResult(
                    code=item.code,
                    target_key=item.target_key,
                    source_id=item.source.id,
                    source_name=item.source.name or item.source.id,
                    target_id=item.target.id if item.target else item.target_id,
                    outcome="in-sync",
                )
            )
    progress.images_total = len(work)
    progress.bytes_total = sum((i.source.size or 0) for i in data_items if i.source)

    def failed(item: PlanItem, exc: BaseException) -> ItemResult:
        assert item.source is not None
        return ItemResult(
            code=item.code,
            target_key=item.target_key,
            source_id=item.source.id,
            source_name=item.source.name or item.source.id,
            outcome="failed",
            error=str(exc) if isinstance(exc, TransferError) else f"internal error: {exc!r}",
        )

    def finished(result: ItemResult) -> None:
        results.append(result)
        progress.images_done += 1
        if result.outcome == "failed":
            progress.images_failed += 1

    async def run_one(item: PlanItem, feed: Feed | None) -> ItemResult:
        assert item.source is not None
        name = item.source.name or item.source.id
        key = (item.source.id, item.target_key)
        progress.active[key] = ActiveTransfer(
            name=name, target=item.target_key, total=item.source.size or 0
        )
        try:
            with anyio.CancelScope() as scope:
                if key in held:
                    held[key] = scope
                result = await pipeline.run_item(
                    item,
                    plan.targets[item.target_key],
                    plan.desired[(item.source.id, item.target_key)],
                    feed,
                )
            if scope.cancelled_caught:
                raise LeaseLost(f"another worker took over {name} -> {item.target_key}")
        except Exception as exc:
            # One image's trouble (the journal, or a bug) never stops the others.
            if not isinstance(exc, TransferError):
                log.exception("internal error", image=item.source.id, target=item.target_key)
            result = failed(item, exc)
            if isinstance(exc, TransferError) and exc.fatal:
                stop.set()
        finally:
            progress.active.pop(key, None)
            if feed is not None:
                feed.release(item.target_key)  # never hold the image's other targets up
        finished(result)
        return result

    async def run_group(group: list[PlanItem]) -> None:
        source = group[0].source
        assert source is not None
        outcomes: list[ItemResult] = []

        async def one(item: PlanItem, feed: Feed) -> None:
            outcomes.append(await run_one(item, feed))

        try:
            regions = {i.target_key: plan.targets[i.target_key].region for i in group}
            async with chooser.feed(source, regions) as feed, anyio.create_task_group() as tg:
                for item in group:
                    tg.start_soon(one, item, feed)
        except Exception as exc:
            log.exception("internal error", image=source.id)
            done = {r.target_key for r in outcomes}
            for item in group:
                if item.target_key not in done:
                    outcomes.append(failed(item, exc))
                    finished(outcomes[-1])
        if all(r.outcome != "failed" for r in outcomes):
            # Every target has the bytes: the spool has served its purpose.
            await _quietly(area.remove(source.id), "cannot remove the spool", source.id)

    async def data_loop() -> None:
        while groups and not stop.is_set():
            await run_group(groups.pop(0))

    async def meta_loop() -> None:
        while meta_items and not stop.is_set():
            await run_one(meta_items.pop(0), None)

    worker_id = worker or default_worker_id()
    by_key = {_item_key(i): i for i in work}
    in_sync = {_item_key(i) for i in plan.items if i.code is Code.IN_SYNC and i.source}

    async def claimed_loop(plan_id: int) -> None:
        while not stop.is_set():
            keys = await journal.claim(
                job.name,
                worker_id,
                limit=max(1, len(job.targets)),
                lease_seconds=lease_seconds,
                plan_id=plan_id,
            )
            if not keys:
                status = await journal.plan_status(job.name, plan_id)
                if status is None or status.open == 0:
                    return
                # Others hold the rest: wait, and take over whatever a dead worker leaves.
                await anyio.sleep(min(lease_seconds / 4, 2.0))
                continue
            held.update(dict.fromkeys(keys))
            try:
                for key in keys:
                    if key not in by_key:
                        # Finished by a worker that died before saying so (this worker's own
                        # listing shows it in sync), or not selected by this worker's config.
                        done = key in in_sync
                        await journal.update_entry(
                            job.name,
                            *key,
                            state="done" if done else "failed",
                            last_error=None if done else "not in the plan of worker " + worker_id,
                        )
                mine = [by_key[k] for k in keys if k in by_key]
                for group in _by_source([i for i in mine if i.code is not Code.UPDATE]):
                    await run_group(group)
                for item in mine:
                    if item.code is Code.UPDATE:
                        await run_one(item, None)
            finally:
                for key in keys:
                    held.pop(key, None)
                await journal.release(job.name, worker_id, keys)

    async def renew_leases() -> None:
        while True:
            await anyio.sleep(lease_seconds / 3)
            keys = set(held)
            if not keys:
                continue
            kept = await journal.renew(job.name, worker_id, keys, lease_seconds)
            for key in keys - kept:
                log.warning("lease lost", job=job.name, image=key[0], target=key[1])
                scope = held.get(key)
                if scope is not None:
                    scope.cancel()

    if ticket is not None:
        async with anyio.create_task_group() as outer:
            outer.start_soon(renew_leases)
            async with anyio.create_task_group() as tg:
                for _ in range(job.transfers):
                    tg.start_soon(claimed_loop, ticket.plan_id)
            outer.cancel_scope.cancel()
        groups.clear()
        meta_items.clear()
    else:
        async with anyio.create_task_group() as tg:
            for _ in range(min(job.transfers, len(groups))):
                tg.start_soon(data_loop)
            for _ in range(min(job.checkers, len(meta_items))):
                tg.start_soon(meta_loop)

    # Keep the spools of images a target still needs (failed, or not started after a stop).
    keep = {r.source_id for r in results if r.outcome == "failed"}
    keep |= {i.source.id for g in groups for i in g if i.source is not None}
    await _quietly(area.tidy(keep, clean=clean_spool), "cannot tidy the spool", None)

    not_started = sum(len(g) for g in groups) + len(meta_items)
    interrupted = stop.is_set() and (not_started > 0 or ticket is not None)
    summary = RunSummary(
        job=job.name,
        run_id=run_id,
        results=results,
        plan=plan.items,
        started=started,
        ended=time.monotonic(),
        interrupted=interrupted,
        not_started=not_started,
    )
    await journal.finish_run(
        run_id,
        summary.outcome,
        {
            "copied": summary.count("copied"),
            "repaired": summary.count("repaired"),
            "updated": summary.count("updated"),
            "in_sync": summary.count("in-sync"),
            "failed": len(summary.failed),
            "bytes": summary.bytes,
            "not_started": not_started,
        },
    )
    return summary


async def join_and_plan(
    config: Config,
    job: JobConfig,
    clouds: Clouds,
    journal: Journal,
    worker: str,
    *,
    lease_seconds: float = 30.0,
) -> tuple[JobPlan, PlanTicket]:
    """Plan a job once for all the workers of a shared journal.

    The first worker to arrive plans: it lists both sides, records an entry for each item to
    work and publishes them.  The others wait until the plan is published, then list for
    themselves (they need the images' details) and claim from the published plan.
    """
    ticket = await journal.join_plan(job.name, worker, lease_seconds=lease_seconds)
    plan = await build_plan(config, job, clouds, journal)
    if ticket.planner:
        keys: list[ItemKey] = []
        for group in _by_source([i for i in plan.items if i.code in _WORK and i.source]):
            for item in group:  # a source's targets side by side: claimed together, read once
                assert item.source is not None
                await journal.ensure_entry(
                    job.name,
                    item.source.id,
                    item.target_key,
                    source_name=item.source.name or "",
                    source_checksum=item.source.checksum,
                    source_size=item.source.size,
                    target_id=item.target_id,
                    generation=item.generation,
                )
                keys.append(_item_key(item))
        await journal.publish_plan(ticket, keys)
    return plan, ticket


_WORK = (Code.COPY, Code.REPAIR, Code.UPDATE)


def _by_source(items: Sequence[PlanItem]) -> list[list[PlanItem]]:
    """The items grouped by source image, in the order the sources first appear."""
    groups: dict[str, list[PlanItem]] = {}
    for item in items:
        assert item.source is not None
        groups.setdefault(item.source.id, []).append(item)
    return list(groups.values())


async def _quietly(work: Awaitable[object], what: str, image: str | None) -> None:
    """Spool housekeeping: a failure is logged, never a reason to fail a finished run."""
    try:
        await work
    except (OSError, TransferError) as exc:
        log.warning(what, image=image, error=str(exc))


def _item_key(item: PlanItem) -> tuple[str, str]:
    """The journal key of a plan item that has a source."""
    assert item.source is not None
    return (item.source.id, item.target_key)


async def _record_in_sync(
    journal: Journal, job: str, item: PlanItem, entry: JournalEntry | None
) -> None:
    """A pair found in sync is done, whatever a killed run last wrote about it (``running``)
    or whether the journal knew it at all: the journal must agree with the clouds."""
    assert item.source is not None and item.target is not None
    if entry is not None and entry.state == "done" and entry.target_id == item.target.id:
        return
    src = item.source
    await journal.ensure_entry(
        job,
        src.id,
        item.target_key,
        source_name=src.name or "",
        source_checksum=src.checksum,
        source_size=src.size,
        target_id=item.target.id,
        generation=item.generation,
    )
    await journal.update_entry(job, src.id, item.target_key, state="done", last_error=None)


@dataclass
class Difference:
    source_id: str
    source_name: str
    target_key: str
    reasons: tuple[str, ...]


async def verify_plan(plan: JobPlan) -> list[Difference]:
    """Every difference between the selected sources and their copies.

    Planning already compared sizes, checksums, hashes, properties, tags, visibility,
    protection and (for shared copies) members with their acceptance: whatever is not in sync
    differs.  In-sync copies get the pipeline's own byte check once more.
    """
    differences: list[Difference] = []
    for item in plan.items:
        if item.source is None:
            continue
        if item.code is not Code.IN_SYNC:
            reasons = item.reasons or (f"plan code {item.code.value}",)
        else:
            assert item.target is not None
            reasons = tuple(verify_copy(item.source, item.target, {}))
        if reasons:
            name = item.source.name or item.source.id
            differences.append(Difference(item.source.id, name, item.target_key, reasons))
    differences.sort(key=lambda d: (d.source_name, d.source_id, d.target_key))
    return differences


def plan_counts(items: Sequence[PlanItem]) -> Mapping[Code, int]:
    counts = dict.fromkeys(Code, 0)
    for item in items:
        counts[item.code] += 1
    return counts
