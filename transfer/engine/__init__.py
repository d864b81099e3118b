"""The engine: runs one job.  It plans, then copies with two bounded worker pools.

- ``planning``: list the selected source images and every target's images, read the journal,
  and ask the pure planner (``transfer.planner``) what each (source, target) pair needs; on a
  shared journal, plan once for every worker.
- ``runner``: run a plan: record the run, mark pairs found in sync as done, hand the rest to a
  scheduler, tidy the spool, record how the run ended; under the job's deadline and bandwidth
  timetable (``run_job``).
- ``schedule``: who works which pair and when: ``transfers`` workers for pairs that move bytes
  (grouped by source image, so one read feeds every target), ``checkers`` workers for pairs that
  only need metadata; on a shared journal, workers claim pairs under leases instead.
- ``pipeline`` and ``steps``: one pair's steps, each journaled before the next, under the job's
  per-image retry budget.
- ``feeds`` and ``spool``: where an upload's bytes come from: the source, a download shared by
  several targets, or a verified spool file on local disk.
- ``results``: what a run produces (results, summary, progress, differences) as enums.
- ``verification`` and ``prune``: the deep comparison of ``verify``, and the deletion of targets
  whose source is gone.

One pair's failure never stops the others.  A stop request (SIGINT/SIGTERM, or the deadline)
lets running pairs finish and starts no new one; the journal stays true either way, because
every step is journaled before the next begins.
"""
