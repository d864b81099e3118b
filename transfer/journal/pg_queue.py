"""The PostgreSQL journal's work queue: plans and leases (``transfer.journal.WorkQueue``).

- **Planning once.**  ``join_plan`` decides under a per-job advisory lock whether the caller
  plans or joins; the ``plans`` table holds each plan, its planner and the planner's lease.
- **Claims.**  ``claim`` takes open items of the published plan with ``SELECT ... FOR UPDATE
  SKIP LOCKED``, so concurrent workers never get the same item and never wait for each other.
- **Leases** are columns of the entries (``lease_owner``, ``lease_expires``), stamped with the
  server's clock (``now()``), so the workers' clocks do not matter.
- **Fencing.**  Every claim increments the entry's ``epoch`` and hands it to the claimer;
  renewals, releases and the journal's item writes (``PgJournal``) are conditional on it, so
  a worker that was paused past its lease cannot write an item another worker now holds.
- **Poison items.**  A claim of an item whose lease ran out counts a takeover; past the limit
  the item is failed with that reason instead of being handed out forever.

It runs on the journal's connection, one call at a time with the journal's own calls.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Unpack

import anyio

from transfer.errors import LeaseLost
from transfer.journal.pg_connection import Conn, PgConnection
from transfer.journal.records import (
    Claim,
    ClaimTerms,
    ItemKey,
    PlanRecord,
    PlanTicket,
    check_lease,
    missing_entries,
    stamp,
)

# Advisory lock keys (two int4s) of the planning decisions: a namespace of ours (the one after
# the migrations'), then the job's hash.
_LOCK_SPACE_PLANS = 0x1A6E_7002

# The plan a ticket names, while it is still being planned by the ticket's worker and no newer
# plan of the job has started.
_PLANNING = (
    "FROM plans p WHERE p.id = %(plan)s AND p.job = %(job)s AND p.planner = %(worker)s "
    "AND p.ready_at IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM plans q WHERE q.job = p.job AND q.id > p.id)"
)


def _columns(keys: Collection[ItemKey]) -> tuple[list[str], list[str]]:
    """Item keys as two arrays (source ids, target keys), for ``unnest``."""
    return [k[0] for k in keys], [k[1] for k in keys]


class PgWorkQueue:
    """Plans and leases in the journal's database (see the module docstring)."""

    def __init__(self, db: PgConnection) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"PgWorkQueue({self._db.display!r})"

    async def _plan_lock(self, conn: Conn, job: str) -> None:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_SPACE_PLANS, job)
        )

    async def join_plan(
        self, job: str, worker: str, *, lease_seconds: float = 60.0, poll_interval: float = 0.25
    ) -> PlanTicket:
        check_lease(lease_seconds)
        waited: int | None = None

        async def decide(conn: Conn) -> PlanTicket | int:
            await self._plan_lock(conn, job)
            cursor = await conn.execute(
                "SELECT id, ready_at IS NOT NULL, lease_expires > now() FROM plans "
                "WHERE job = %s ORDER BY id DESC LIMIT 1",
                (job,),
            )
            latest = await cursor.fetchone()
            if latest is not None:
                plan_id, ready, fresh = latest
                if not ready and fresh:
                    return int(plan_id)  # being planned: wait for it
                if ready:
                    joined = PlanTicket(job=job, plan_id=plan_id, worker=worker, planner=False)
                    if plan_id == waited or await self._alive(conn, job, plan_id, fresh):
                        return joined
            cursor = await conn.execute(
                "INSERT INTO plans (job, planner, started_at, lease_seconds, lease_expires) "
                "VALUES (%s, %s, now(), %s, now() + make_interval(secs => %s)) RETURNING id",
                (job, worker, lease_seconds, lease_seconds),
            )
            row = await cursor.fetchone()
            assert row is not None
            return PlanTicket(job=job, plan_id=int(row[0]), worker=worker, planner=True)

        while True:
            answer = await self._db.write(decide)
            if isinstance(answer, PlanTicket):
                return answer
            waited = answer
            await anyio.sleep(poll_interval)

    async def _alive(self, conn: Conn, job: str, plan_id: int, fresh: bool) -> bool:
        """Whether a published plan is still worth joining: it has open items, and it is new
        (``fresh``) or someone holds a live lease on one of them."""
        cursor = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM entries WHERE job = %(job)s "
            "AND plan_id = %(plan)s AND state IN ('pending', 'running')), "
            "EXISTS (SELECT 1 FROM entries WHERE job = %(job)s "
            "AND plan_id = %(plan)s AND state IN ('pending', 'running') "
            "AND lease_expires > now())",
            {"job": job, "plan": plan_id},
        )
        row = await cursor.fetchone()
        assert row is not None
        has_open, has_live_lease = row
        return bool(has_open and (fresh or has_live_lease))

    async def renew_plan(self, ticket: PlanTicket) -> bool:
        args = {"plan": ticket.plan_id, "job": ticket.job, "worker": ticket.worker}

        async def write(conn: Conn) -> bool:
            cursor = await conn.execute(
                "UPDATE plans SET lease_expires = now() + make_interval(secs => lease_seconds) "
                f"WHERE id IN (SELECT p.id {_PLANNING})",
                args,
            )
            return cursor.rowcount == 1

        return await self._db.write(write)

    async def publish_plan(self, ticket: PlanTicket, items: Iterable[ItemKey]) -> int:
        keys = list(dict.fromkeys(items))
        args = {"plan": ticket.plan_id, "job": ticket.job, "worker": ticket.worker}

        async def write(conn: Conn) -> int:
            await self._plan_lock(conn, ticket.job)
            cursor = await conn.execute(f"SELECT p.id {_PLANNING} FOR UPDATE", args)
            if await cursor.fetchone() is None:
                raise LeaseLost(
                    f"journal {self._db.display}: plan {ticket.plan_id} of {ticket.job} is no "
                    f"longer {ticket.worker}'s to publish"
                )
            if keys:
                await self._queue(conn, ticket, keys)
            await conn.execute(
                "UPDATE plans SET ready_at = now(), items = %s, "
                "lease_expires = now() + make_interval(secs => lease_seconds) WHERE id = %s",
                (len(keys), ticket.plan_id),
            )
            return len(keys)

        return await self._db.write(write)

    async def _queue(self, conn: Conn, ticket: PlanTicket, keys: list[ItemKey]) -> None:
        """Put the entries in the ticket's plan in this order; a re-planned done or failed
        entry is pending again, and counts no takeovers."""
        # The epoch grows: a holder of the entry under an older plan can no longer write it.
        cursor = await conn.execute(
            """UPDATE entries e SET plan_id = %s, plan_rank = i.rank, epoch = e.epoch + 1,
                   state = CASE WHEN e.state IN ('done', 'failed') THEN 'pending'
                       ELSE e.state END,
                   updated_at = CASE WHEN e.state IN ('done', 'failed') THEN now()
                       ELSE e.updated_at END,
                   takeovers = CASE WHEN e.state IN ('done', 'failed') THEN 0
                       ELSE e.takeovers END
               FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY
                   AS i(source_id, target_key, rank)
               WHERE e.job = %s AND e.source_id = i.source_id
                   AND e.target_key = i.target_key
               RETURNING e.source_id, e.target_key""",
            (ticket.plan_id, *_columns(keys), ticket.job),
        )
        found = {(r[0], r[1]) for r in await cursor.fetchall()}
        if len(found) != len(keys):
            missing = [key for key in keys if key not in found]
            raise missing_entries(self._db.display, ticket.job, missing)

    async def plan_status(self, job: str, plan_id: int | None = None) -> PlanRecord | None:
        async def read(conn: Conn) -> PlanRecord | None:
            cursor = await conn.execute(
                """SELECT p.id, p.planner, p.started_at, p.ready_at, p.lease_expires, p.items,
                       (SELECT COUNT(*) FROM entries e WHERE e.job = p.job AND e.plan_id = p.id
                           AND e.state IN ('pending', 'running')),
                       (SELECT COUNT(*) FROM entries e WHERE e.job = p.job AND e.plan_id = p.id
                           AND e.lease_expires > now()),
                       (SELECT COUNT(*) FROM entries e WHERE e.job = p.job AND e.plan_id = p.id
                           AND e.state = 'failed')
                   FROM plans p WHERE p.job = %(job)s
                       AND (%(plan)s::bigint IS NULL OR p.id = %(plan)s::bigint)
                   ORDER BY p.id DESC LIMIT 1""",
                {"job": job, "plan": plan_id},
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            return PlanRecord(
                job=job,
                plan_id=row[0],
                planner=row[1],
                started_at=stamp(row[2]),
                ready_at=None if row[3] is None else stamp(row[3]),
                lease_expires=stamp(row[4]),
                items=row[5],
                open=int(row[6]),
                held=int(row[7]),
                failed=int(row[8]),
            )

        return await self._db.read(read)

    async def claim(self, job: str, worker: str, **kw: Unpack[ClaimTerms]) -> list[Claim]:
        check_lease(kw["lease_seconds"])
        max_takeovers = kw.get("max_takeovers", 3)
        if kw["limit"] < 1:
            return []
        args = {
            "job": job,
            "worker": worker,
            "limit": kw["limit"],
            "secs": kw["lease_seconds"],
            "plan": kw.get("plan_id"),
            "max": max_takeovers,
            "poisoned": f"taken over more than {max_takeovers} times (max_takeovers): every "
            "worker that held it stopped before finishing it",
        }

        async def write(conn: Conn) -> list[Claim]:
            # SKIP LOCKED: rows another worker is claiming right now are passed over, and a
            # row claimed since this statement's snapshot is re-checked (and skipped) on lock.
            # A lease that ran out (its owner still named) is a takeover; one takeover too
            # many fails the item instead of handing it out.
            cursor = await conn.execute(
                """WITH current AS (
                       SELECT id FROM plans WHERE job = %(job)s AND ready_at IS NOT NULL
                       ORDER BY id DESC LIMIT 1
                   ), picked AS (
                       SELECT e.source_id, e.target_key, e.lease_owner IS NOT NULL AS taken,
                           e.lease_owner IS NOT NULL AND e.takeovers >= %(max)s AS poisoned
                       FROM entries e
                       JOIN current c ON e.plan_id = c.id
                       WHERE e.job = %(job)s AND e.state IN ('pending', 'running')
                           AND (e.lease_owner IS NULL OR e.lease_expires <= now())
                           AND (%(plan)s::bigint IS NULL OR c.id = %(plan)s::bigint)
                       ORDER BY e.plan_rank LIMIT %(limit)s
                       FOR UPDATE OF e SKIP LOCKED
                   )
                   UPDATE entries e SET epoch = e.epoch + 1,
                       takeovers = e.takeovers + CASE WHEN p.taken THEN 1 ELSE 0 END,
                       lease_owner = CASE WHEN p.poisoned THEN NULL ELSE %(worker)s END,
                       lease_expires = CASE WHEN p.poisoned THEN NULL
                           ELSE now() + make_interval(secs => %(secs)s) END,
                       state = CASE WHEN p.poisoned THEN 'failed' ELSE e.state END,
                       last_error = CASE WHEN p.poisoned THEN %(poisoned)s ELSE e.last_error END,
                       failed_step = CASE WHEN p.poisoned THEN NULL ELSE e.failed_step END,
                       retryable = e.retryable AND NOT p.poisoned,
                       updated_at = CASE WHEN p.poisoned THEN now() ELSE e.updated_at END
                   FROM picked p
                   WHERE e.job = %(job)s AND e.source_id = p.source_id
                       AND e.target_key = p.target_key
                   RETURNING e.source_id, e.target_key, e.plan_rank, e.epoch, e.target_id,
                       e.generation, e.attempts, e.takeovers, p.taken, p.poisoned""",
                args,
            )
            rows = sorted(await cursor.fetchall(), key=lambda r: r[2])
            return [
                Claim(
                    key=(r[0], r[1]),
                    epoch=int(r[3]),
                    target_id=r[4],
                    generation=int(r[5]),
                    attempts=int(r[6]),
                    takeovers=int(r[7]),
                    taken_over=bool(r[8]),
                )
                for r in rows
                if not r[9]
            ]

        return await self._db.write(write)

    async def renew(
        self, job: str, worker: str, held: Mapping[ItemKey, int], lease_seconds: float
    ) -> set[ItemKey]:
        check_lease(lease_seconds)
        if not held:
            return set()

        async def write(conn: Conn) -> set[ItemKey]:
            cursor = await conn.execute(
                """UPDATE entries e SET lease_expires = now() + make_interval(secs => %s)
                   FROM unnest(%s::text[], %s::text[], %s::bigint[])
                       AS i(source_id, target_key, epoch)
                   WHERE e.job = %s AND e.source_id = i.source_id
                       AND e.target_key = i.target_key AND e.epoch = i.epoch
                       AND e.lease_owner = %s
                   RETURNING e.source_id, e.target_key""",
                (lease_seconds, *_columns(held), list(held.values()), job, worker),
            )
            return {(r[0], r[1]) for r in await cursor.fetchall()}

        return await self._db.write(write)

    async def release(self, job: str, worker: str, held: Mapping[ItemKey, int]) -> None:
        if not held:
            return

        async def write(conn: Conn) -> None:
            await conn.execute(
                """UPDATE entries e SET lease_owner = NULL, lease_expires = NULL
                   FROM unnest(%s::text[], %s::text[], %s::bigint[])
                       AS i(source_id, target_key, epoch)
                   WHERE e.job = %s AND e.source_id = i.source_id
                       AND e.target_key = i.target_key AND e.epoch = i.epoch
                       AND e.lease_owner = %s""",
                (*_columns(held), list(held.values()), job, worker),
            )

        await self._db.write(write)
