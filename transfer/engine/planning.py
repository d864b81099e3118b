"""Planning a run: list both sides, read the journal, and ask the pure planner what each (source,
target) pair needs; with a shared journal, plan once for every worker (``plan_for_run``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from transfer.cloud.client import ImageClient
from transfer.cloud.sessions import Clouds
from transfer.config.settings import (
    DEFAULT_SPOOL_RESERVE,
    Config,
    JobConfig,
    LeaseSettings,
)
from transfer.engine.listing import Listings, Target
from transfer.errors import JournalError, LeaseLost, only_error
from transfer.journal import Journal, WorkQueue
from transfer.journal.records import ItemKey, JournalEntry, PlanTicket
from transfer.log import get_logger
from transfer.metadata import DesiredTarget
from transfer.models import Image, Member
from transfer.planner import WORK_CODES, Code, JobPlanner, PlanItem, plan_order

log = get_logger("transfer.engine.planning")
#: How many times a worker that lost its planning lease joins the job again before giving up.
_PLANNING_TURNS = 3


@dataclass
class JobPlan:
    """Everything the planner needs and what it decided, for one job.

    A plan made for a run on one host is streamed (``build_plan(stream=True)``): it starts
    with the targets listed and no item, and ``pending`` lists and plans the source while the
    run works the first items; ``items`` is complete (and in ``plan_order``) once ``complete``.
    """

    job: JobConfig
    items: list[PlanItem]
    sources: list[Image]
    desired: dict[tuple[str, str], DesiredTarget]
    targets: dict[str, Target]
    source_client: ImageClient
    spool_dir: Path | None = None  # where spool files go (None: "spool" in the working dir)
    spool_reserve: int = DEFAULT_SPOOL_RESERVE  # bytes to keep free beside the spool files
    pending: SourcePlanning | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        """Every source listed and planned (nothing ``pending``)."""
        return self.pending is None


async def _gather(
    limiter: anyio.CapacityLimiter, funcs: Sequence[Callable[[], Awaitable[None]]]
) -> None:
    async def one(func: Callable[[], Awaitable[None]]) -> None:
        async with limiter:
            await func()

    async with anyio.create_task_group() as tg:
        for func in funcs:
            tg.start_soon(one, func)


#: What a run does with the items of each source as soon as they are planned.
OnItems = Callable[[list[PlanItem]], Awaitable[None]]


class SourcePlanning:
    """The source side of a plan: list the source and plan each image as it comes in, against
    the targets' listings and the journal read before (see ``JobPlanner``)."""

    def __init__(
        self,
        plan: JobPlan,
        listings: Listings,
        planner: JobPlanner,
        *,
        config: Config,
        clouds: Clouds,
    ) -> None:
        self.plan = plan
        self.listings = listings
        self.planner = planner
        self.config = config
        self.clouds = clouds
        self.checkers = anyio.CapacityLimiter(plan.job.checkers)
        self._member_tenants: set[str] = set()  # whose member clients exist
        self._clients_lock = anyio.Lock()
        #: Called with the plan once it is complete (every source listed and planned).
        self.on_complete: Callable[[JobPlan], None] | None = None

    async def run(self, on_items: OnItems | None = None) -> None:
        """List and plan every source, handing each source's items to ``on_items``; then the
        ``-`` items, and the plan is complete."""
        job = self.plan.job
        members = job.copy.members
        try:
            async with anyio.create_task_group() as tg:
                async for image in self.listings.sources():
                    self.plan.sources.append(image)
                    if members and image.visibility == "shared":
                        tg.start_soon(self._plan_shared, image, on_items)
                    else:
                        await self._plan(image, frozenset(), on_items)
        except BaseExceptionGroup as group:
            raise only_error(group) from None
        log.info("listed source", job=job.name, images=len(self.plan.sources))
        self.plan.items = sorted(self.plan.items + self.planner.finish(), key=plan_order)
        self.plan.pending = None
        if self.on_complete is not None:
            self.on_complete(self.plan)

    async def _plan_shared(self, image: Image, on_items: OnItems | None) -> None:
        async with self.checkers:
            listed: list[Member] = await self.plan.source_client.list_members(image.id)
        await self._plan(image, frozenset(m.member_id for m in listed), on_items)

    async def _plan(self, image: Image, members: frozenset[str], on_items: OnItems | None) -> None:
        items = self.planner.plan_sources([image], {image.id: members})
        wanted: set[str] = set()
        for item in items:
            if item.source is not None and item.desired is not None:
                self.plan.desired[(item.source.id, item.target_key)] = item.desired
                wanted |= item.desired.members
        job = self.plan.job
        if job.copy.accept and wanted:
            # Images are planned side by side: none may go on (compare members, or be run)
            # before the clients of its members exist, even those another image asked for.
            async with self._clients_lock:
                new_tenants = wanted - self._member_tenants
                if new_tenants:
                    await self._add_member_clients(new_tenants)
                    self._member_tenants |= new_tenants
        if items and (job.copy.members or job.copy.accept):
            items = await _member_drift(items, self.plan.targets, job, self.checkers)
        self.plan.items += items
        if items and on_items is not None:
            await on_items(items)

    async def _add_member_clients(self, tenants: set[str]) -> None:
        """Clients for the member tenants whose credentials the config has, to accept."""
        for key, target in self.plan.targets.items():
            clients = dict(target.member_clients)
            for tenant in sorted(tenants):
                creds = self.config.cloud_for_tenant(tenant)
                if tenant != target.tenant_id and creds is not None:
                    clients[tenant] = await self.clouds.client(creds.name, target.region)
            self.plan.targets[key] = dataclasses.replace(target, member_clients=clients)


async def build_plan(
    config: Config, job: JobConfig, clouds: Clouds, journal: Journal, *, stream: bool = False
) -> JobPlan:
    """List both sides, read the journal and plan every (source, target) pair.

    With ``stream`` the plan comes back once the targets are listed, and its ``pending``
    lists and plans the source (``SourcePlanning.run``), for a run to work as it comes in.
    """
    source_client = await clouds.client(job.source.cloud, job.source.region)
    listings = Listings(job, source_client)
    await listings.list_targets(clouds)
    targets = listings.targets
    planner = JobPlanner(
        job,
        targets=listings.images,
        journal=await journal.entries(job.name),
        target_tenants={key: t.tenant_id for key, t in targets.items()},
    )
    plan = JobPlan(
        job=job,
        items=[],
        sources=[],
        desired={},
        targets=targets,
        source_client=source_client,
        spool_dir=job.spool_dir or config.journal.path.parent / "spool",
        spool_reserve=config.spool_reserve,
    )
    pending = plan.pending = SourcePlanning(plan, listings, planner, config=config, clouds=clouds)
    if not stream:
        await pending.run()
    return plan


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
    """The plan a run works: this host's own (streamed: the run starts on the first sources
    while the rest are listed), or, on a journal several workers share, the one plan of every
    worker, published whole, with the ticket to claim its items by.

    On a shared journal the first worker to arrive plans, under a planning lease it renews for
    as long as the listing takes: it lists both sides, records an entry for each item to work
    (with the target id and generation it fixed) and publishes them.  The others wait until
    the plan is published, then list for themselves (they need the images' details) and claim
    from it; the target identities they work on are the journal's, never their own.  A planner
    that lost its planning lease (it was paused too long) joins again.
    """
    queue = journal.work_queue
    if queue is None:  # the run works the plan as the source is listed
        return await build_plan(config, job, clouds, journal, stream=True), None
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
