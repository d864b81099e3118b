"""Planning a run: list both sides, read the journal, and ask the pure planner what each (source,
target) pair needs; with a shared journal, plan once for every worker (``plan_for_run``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import structlog

from transfer.cloud.client import ImageClient
from transfer.cloud.sessions import Clouds
from transfer.config.settings import (
    DEFAULT_SPOOL_RESERVE,
    Config,
    Endpoint,
    JobConfig,
    LeaseSettings,
)
from transfer.errors import JournalError, LeaseLost, only_error
from transfer.journal import Journal, WorkQueue
from transfer.journal.records import ItemKey, JournalEntry, PlanTicket
from transfer.metadata import DesiredTarget
from transfer.models import Image, Member
from transfer.planner import WORK_CODES, Code, PlanItem, plan_job

log = structlog.get_logger("transfer.engine.planning")
#: How many times a worker that lost its planning lease joins the job again before giving up.
_PLANNING_TURNS = 3


@dataclass(frozen=True, kw_only=True)
class Target:
    """One target of a job: a tenant in a region, with the clients needed there."""

    key: str
    region: str
    client: ImageClient
    tenant_id: str
    #: member tenant id -> a client authenticated as that tenant in this region (to accept).
    member_clients: Mapping[str, ImageClient] = field(default_factory=dict)


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
    spool_reserve: int = DEFAULT_SPOOL_RESERVE  # bytes to keep free beside the spool files


async def _gather(
    limiter: anyio.CapacityLimiter, funcs: Sequence[Callable[[], Awaitable[None]]]
) -> None:
    async def one(func: Callable[[], Awaitable[None]]) -> None:
        async with limiter:
            await func()

    async with anyio.create_task_group() as tg:
        for func in funcs:
            tg.start_soon(one, func)


@dataclass
class _Listings:
    """What planning lists: the source (and its shared images' members), every target."""

    sources: list[Image] = field(default_factory=list)
    source_members: dict[str, frozenset[str]] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    images: dict[str, list[Image]] = field(default_factory=dict)  # by target key

    async def list_all(
        self, clouds: Clouds, job: JobConfig, source: ImageClient, checkers: anyio.CapacityLimiter
    ) -> None:
        """Every side at once: the plan waits for the slowest listing, not their sum."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._list_source, job, source, checkers)
                for endpoint in job.targets:
                    tg.start_soon(self._list_target, clouds, endpoint)
        except BaseExceptionGroup as group:
            raise only_error(group) from None
        self.targets = {e.key: self.targets[e.key] for e in job.targets}  # the config's order

    async def _list_source(
        self, job: JobConfig, client: ImageClient, checkers: anyio.CapacityLimiter
    ) -> None:
        filters = cast(dict[str, Any], job.select.api_filters())
        self.sources += [i async for i in client.list_images(**filters) if job.select.matches(i)]
        log.info("listed source", job=job.name, images=len(self.sources))
        if not job.copy.members:
            return

        def lister(image: Image) -> Callable[[], Awaitable[None]]:
            async def list_members() -> None:
                members: list[Member] = await client.list_members(image.id)
                self.source_members[image.id] = frozenset(m.member_id for m in members)

            return list_members

        await _gather(checkers, [lister(i) for i in self.sources if i.visibility == "shared"])

    async def _list_target(self, clouds: Clouds, endpoint: Endpoint) -> None:
        session = await clouds.session(endpoint.cloud)
        client = await session.image_client(endpoint.region)
        tenant_id = await session.tenant_id()
        self.images[endpoint.key] = [i async for i in client.list_images(owner=tenant_id)]
        self.targets[endpoint.key] = Target(
            key=endpoint.key, region=endpoint.region, client=client, tenant_id=tenant_id
        )


async def build_plan(config: Config, job: JobConfig, clouds: Clouds, journal: Journal) -> JobPlan:
    """List both sides, read the journal and plan every (source, target) pair."""
    checkers = anyio.CapacityLimiter(job.checkers)
    source_client = await clouds.client(job.source.cloud, job.source.region)
    listed = _Listings()
    await listed.list_all(clouds, job, source_client, checkers)
    sources, targets = listed.sources, listed.targets

    entries = await journal.entries(job.name)
    items = plan_job(
        job,
        sources=sources,
        targets=listed.images,
        journal=entries,
        source_members=listed.source_members,
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
                creds = config.cloud_for_tenant(tenant)
                if tenant != target.tenant_id and creds is not None:
                    member_clients[tenant] = await clouds.client(creds.name, target.region)
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
        spool_reserve=config.spool_reserve,
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


async def plan_for_run(
    config: Config,
    job: JobConfig,
    clouds: Clouds,
    journal: Journal,
    worker: str,
    *,
    terms: LeaseSettings | None = None,
) -> tuple[JobPlan, PlanTicket | None]:
    """The plan a run works: this host's own, or, on a journal several workers share, the one
    plan of every worker, with the ticket to claim its items by.

    On a shared journal the first worker to arrive plans, under a planning lease it renews for
    as long as the listing takes: it lists both sides, records an entry for each item to work
    (with the target id and generation it fixed) and publishes them.  The others wait until
    the plan is published, then list for themselves (they need the images' details) and claim
    from it; the target identities they work on are the journal's, never their own.  A planner
    that lost its planning lease (it was paused too long) joins again.
    """
    queue = journal.work_queue
    if queue is None:
        return await build_plan(config, job, clouds, journal), None
    terms = terms or LeaseSettings()
    for _ in range(_PLANNING_TURNS):
        ticket = await queue.join_plan(job.name, worker, lease_seconds=terms.lease_seconds)
        if not ticket.planner:
            return await build_plan(config, job, clouds, journal), ticket
        plan = await _plan_under_lease(config, job, clouds, journal, queue, ticket, terms)
        if plan is not None:
            return plan, ticket
        log.warning("planning lease lost: joining the job again", job=job.name)
    raise LeaseLost(f"job {job.name}: lost the planning lease {_PLANNING_TURNS} times in a row")


async def _plan_under_lease(
    config: Config,
    job: JobConfig,
    clouds: Clouds,
    journal: Journal,
    queue: WorkQueue,
    ticket: PlanTicket,
    terms: LeaseSettings,
) -> JobPlan | None:
    """Plan and publish while renewing the planning lease; None when it was lost."""
    plan: JobPlan | None = None
    async with anyio.create_task_group() as tg:

        async def keep() -> None:
            while True:
                await anyio.sleep(terms.renew)
                with contextlib.suppress(JournalError):  # tried again at the next renewal
                    if not await queue.renew_plan(ticket):
                        tg.cancel_scope.cancel()
                        return

        tg.start_soon(keep)
        built = await build_plan(config, job, clouds, journal)
        if not await queue.renew_plan(ticket):  # still ours before writing the entries
            tg.cancel_scope.cancel()
            return None
        keys: list[ItemKey] = []
        for group in by_source([i for i in built.items if i.code in WORK_CODES and i.source]):
            for item in group:  # a source's targets side by side: claimed together, read once
                await record_entry(journal, job.name, item, target_id=item.target_id)
                keys.append(item_key(item))
        try:
            await queue.publish_plan(ticket, keys)
        except LeaseLost:
            tg.cancel_scope.cancel()
            return None
        plan = built
        tg.cancel_scope.cancel()
    return plan


async def record_entry(
    journal: Journal, job: str, item: PlanItem, *, target_id: str | None
) -> JournalEntry:
    """Create or refresh the journal entry of a plan item that has a source (see
    ``Journal.ensure_entry``)."""
    source = item.source
    assert source is not None
    return await journal.ensure_entry(
        job,
        source.id,
        item.target_key,
        source_name=source.name or "",
        source_checksum=source.checksum,
        source_size=source.size,
        target_id=target_id,
        generation=item.generation,
    )


def by_source(items: Sequence[PlanItem]) -> list[list[PlanItem]]:
    """The items grouped by source image, in the order the sources first appear."""
    groups: dict[str, list[PlanItem]] = {}
    for item in items:
        assert item.source is not None
        groups.setdefault(item.source.id, []).append(item)
    return list(groups.values())


def item_key(item: PlanItem) -> tuple[str, str]:
    """The journal key of a plan item that has a source."""
    assert item.source is not None
    return (item.source.id, item.target_key)
