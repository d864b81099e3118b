"""One worker process for the multi-process claim test.

``python -m tests.pg.claimer URL JOB WORKER HOLD_SECONDS``: prints ``ready``, joins the job's
plan (waiting for it to be published), then claims two items at a time until none is left,
"working" each for HOLD_SECONDS and marking it done.  Every event is a JSON line on stdout.
"""

from __future__ import annotations

import json
import sys

import anyio

from transfer.journal.postgres import PgJournal


async def main(url: str, job: str, worker: str, hold: float) -> None:
    async with PgJournal(url) as journal:
        queue = journal.work_queue
        print("ready", flush=True)
        ticket = await queue.join_plan(job, worker, lease_seconds=30, poll_interval=0.05)
        print(json.dumps({"plan": ticket.plan_id, "planner": ticket.planner}), flush=True)
        while items := await queue.claim(
            job, worker, limit=2, lease_seconds=30, plan_id=ticket.plan_id
        ):
            for claim in items:
                source_id, target_key = claim.key
                await anyio.sleep(hold)
                await journal.update_entry(
                    job, source_id, target_key, fence=claim.epoch, state="done"
                )
                print(json.dumps({"claimed": [source_id, target_key]}), flush=True)
            await queue.release(job, worker, {c.key: c.epoch for c in items})


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
