"""The PostgreSQL journal's schema: its numbered migrations (``PG_MIGRATIONS``) and the
tables they make (``OUR_TABLES``), kept apart from ``transfer.journal.postgres``, which uses
them."""

from __future__ import annotations

# Identifiers compare byte-wise (COLLATE "C"), as in SQLite, whatever the database's locale.
# Each migration is a tuple of statements applied in one transaction; never edit a published
# one, append a new one.  This history differs from SQLite's (where spools came later, as
# migration 2): here everything, plans and leases included, is migration 1.  Both stay as
# published.
PG_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job TEXT COLLATE "C" NOT NULL,
            worker TEXT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            outcome TEXT,
            summary JSONB
        )""",
        "CREATE INDEX runs_by_job ON runs (job, id)",
        """CREATE TABLE plans (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job TEXT COLLATE "C" NOT NULL,
            planner TEXT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            ready_at TIMESTAMPTZ,
            lease_seconds DOUBLE PRECISION NOT NULL,
            lease_expires TIMESTAMPTZ NOT NULL,
            items INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX plans_by_job ON plans (job, id)",
        """CREATE TABLE entries (
            job TEXT COLLATE "C" NOT NULL,
            source_id TEXT COLLATE "C" NOT NULL,
            target_key TEXT COLLATE "C" NOT NULL,
            source_name TEXT,
            source_checksum TEXT,
            source_size BIGINT,
            target_id TEXT,
            generation INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'done', 'failed')),
            last_step TEXT,
            bytes_done BIGINT NOT NULL DEFAULT 0,
            md5 TEXT,
            sha512 TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            updated_at TIMESTAMPTZ NOT NULL,
            plan_id BIGINT,
            plan_rank BIGINT,
            lease_owner TEXT,
            lease_expires TIMESTAMPTZ,
            PRIMARY KEY (job, source_id, target_key)
        )""",
        "CREATE INDEX entries_by_state ON entries (job, state)",
        "CREATE INDEX entries_claimable ON entries (job, plan_id, plan_rank) "
        "WHERE state IN ('pending', 'running')",
        """CREATE TABLE steps (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id BIGINT NOT NULL REFERENCES runs (id),
            job TEXT COLLATE "C" NOT NULL,
            source_id TEXT COLLATE "C" NOT NULL,
            target_key TEXT COLLATE "C" NOT NULL,
            step TEXT NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            ok BOOLEAN,
            detail JSONB,
            error TEXT
        )""",
        "CREATE INDEX steps_by_entry ON steps (job, source_id, target_key, id)",
        "CREATE INDEX steps_by_run ON steps (run_id)",
        """CREATE TABLE spools (
            job TEXT COLLATE "C" NOT NULL,
            source_id TEXT COLLATE "C" NOT NULL,
            host TEXT COLLATE "C" NOT NULL,
            path TEXT NOT NULL,
            source_checksum TEXT,
            size BIGINT,
            bytes_done BIGINT NOT NULL DEFAULT 0,
            complete BOOLEAN NOT NULL DEFAULT false,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (job, source_id, host)
        )""",
    ),
    # 2: fencing tokens (every claim makes a new epoch; a write carrying an older one is
    # refused) and the count of takeovers (a holder's lease ran out before it finished).
    (
        "ALTER TABLE entries ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE entries ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0",
    ),
    # 3: the step whose failure an entry's last_error reports, and whether that failure was
    # transient (what ``status`` shows and its exit code).
    (
        "ALTER TABLE entries ADD COLUMN failed_step TEXT",
        "ALTER TABLE entries ADD COLUMN retryable BOOLEAN NOT NULL DEFAULT false",
    ),
    # 4: the samples a running worker writes every few seconds (``transfer.journal.samples``):
    # the live page's throughput over time, and the bytes of what each worker holds now.
    (
        """CREATE TABLE samples (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job TEXT COLLATE "C" NOT NULL,
            run_id BIGINT NOT NULL REFERENCES runs (id),
            worker TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL,
            bytes_done BIGINT NOT NULL,
            bytes_total BIGINT NOT NULL,
            images_done INTEGER NOT NULL,
            images_failed INTEGER NOT NULL,
            images_total INTEGER NOT NULL,
            active JSONB
        )""",
        "CREATE INDEX samples_by_job ON samples (job, at)",
    ),
)
#: The tables of ``PG_MIGRATIONS``: a schema holding one of them but no ``schema_migrations``
#: is not a journal.
OUR_TABLES = frozenset({"runs", "plans", "entries", "steps", "spools", "samples"})
