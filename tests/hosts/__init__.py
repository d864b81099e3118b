"""Fault-injection scenarios for several ``image-transfer run`` workers on one PostgreSQL
journal: pauses, crashes, database restarts and network partitions, each checked against what
the target cloud really holds."""
