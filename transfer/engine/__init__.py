"""The engine: runs one job: lists, plans, then copies with two bounded worker pools.

A run opens one authenticated session per cloud the job names, lists the selected source images
and every target's images, asks the pure planner what each (source, target) pair needs, and hands
the pairs to workers: ``transfers`` workers for pairs that move bytes, ``checkers`` workers for
pairs that only need metadata.  One pair's failure never stops the others.  A stop request
(SIGINT/SIGTERM, see ``cli``) lets running pairs finish and starts no new one; the journal stays
true either way because every step is journaled before the next begins.

The pairs that move bytes are grouped by source image: one group takes one ``transfers`` slot
and runs its pairs at once, reading the source once for all of them (fan-out) or from a spool
file, as ``transfer.engine.feeds`` decides.  Spool files no failed image needs any more are removed
at the end of the run (all of them with ``clean_spool``).
"""
