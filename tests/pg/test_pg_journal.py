"""The PostgreSQL journal where it differs from SQLite: several workers (connections and OS
processes) sharing one job, connection loss, timeouts, passwords, schema and migrations."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

import anyio
import psycopg
import pytest

from tests.pg.conftest import PASSWORD_ROLE, PgDatabase, PgServer
from tests.pg.helpers import epochs, keys
from transfer.config.loader import load_config
from transfer.config.settings import JournalConfig, Secret
from transfer.errors import JournalError
from transfer.journal import open_journal
from transfer.journal.postgres import PG_MIGRATIONS, PgJournal
from transfer.journal.records import ItemKey, PlanTicket
from transfer.journal.sqlite import SqliteJournal

JOB = "job1"
KEY = "dst/KR2"
REPO = Path(__file__).resolve().parents[2]


async def add_entries(journal: PgJournal, sources: list[str]) -> None:
    for source_id in sources:
        await journal.ensure_entry(
            JOB,
            source_id,
            KEY,
            source_name=source_id,
            source_checksum=None,
            source_size=1,
            target_id=None,
            generation=0,
        )


async def test_three_connections_claim_each_item_exactly_once(pg_db: PgDatabase) -> None:
    sources = [f"s{i:03}" for i in range(90)]
    claimed: dict[ItemKey, str] = {}
    async with PgJournal(pg_db.url) as planner:
        ticket = await planner.work_queue.join_plan(JOB, "planner", lease_seconds=30)
        await add_entries(planner, sources)
        await planner.work_queue.publish_plan(ticket, [(s, KEY) for s in sources])

        async def worker(name: str) -> None:
            async with PgJournal(pg_db.url) as journal:
                queue = journal.work_queue
                while claims := await queue.claim(JOB, name, limit=3, lease_seconds=30):
                    for item in keys(claims):
                        assert item not in claimed, f"{item} claimed twice"
                        claimed[item] = name
                        await journal.update_entry(JOB, *item, state="done")
                    await queue.release(JOB, name, epochs(claims))

        async with anyio.create_task_group() as tg:
            for name in ("w1", "w2", "w3"):
                tg.start_soon(worker, name)
        assert sorted(claimed) == [(s, KEY) for s in sources]
        assert {name: list(claimed.values()).count(name) > 0 for name in ("w1", "w2", "w3")} == {
            "w1": True,
            "w2": True,
            "w3": True,
        }
        assert await planner.state_counts(JOB) == {"done": 90}
        status = await planner.work_queue.plan_status(JOB)
        assert status is not None and (status.items, status.open, status.held) == (90, 0, 0)


async def test_three_processes_share_one_job(pg_db: PgDatabase) -> None:
    """Three real OS processes join one plan and claim until nothing is left: every item is
    worked exactly once, and each process gets a share."""
    sources = [f"s{i:03}" for i in range(60)]
    async with PgJournal(pg_db.url) as journal:
        ticket = await journal.work_queue.join_plan(JOB, "planner", lease_seconds=30)
        assert ticket.planner
        await add_entries(journal, sources)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.pg.claimer",
                pg_db.url,
                JOB,
                f"proc{n}",
                "0.02",
                cwd=REPO,
                env=env,
                stdout=asyncio.subprocess.PIPE,
            )
            for n in range(3)
        ]
        try:
            with anyio.fail_after(30):
                for process in processes:  # all three wait for the plan before it is out
                    assert process.stdout is not None
                    assert await process.stdout.readline() == b"ready\n"
                await anyio.sleep(0.2)
                await journal.work_queue.publish_plan(ticket, [(s, KEY) for s in sources])
                outputs = [await p.communicate() for p in processes]
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        assert [p.returncode for p in processes] == [0, 0, 0]
        per_process: list[list[ItemKey]] = []
        for stdout, _ in outputs:
            events = [json.loads(line) for line in stdout.decode().splitlines()]
            assert events[0] == {"plan": ticket.plan_id, "planner": False}
            per_process.append([(e["claimed"][0], e["claimed"][1]) for e in events[1:]])
        everything = [item for items in per_process for item in items]
        assert sorted(everything) == [(s, KEY) for s in sources]  # each exactly once
        assert all(len(items) >= 5 for items in per_process), [len(i) for i in per_process]
        assert await journal.state_counts(JOB) == {"done": 60}


async def test_planning_happens_once_among_three_connections(pg_db: PgDatabase) -> None:
    tickets: dict[str, PlanTicket] = {}
    returned_at: dict[str, float] = {}
    published_at: list[float] = []

    async def contender(name: str) -> None:
        async with PgJournal(pg_db.url) as journal:
            queue = journal.work_queue
            ticket = await queue.join_plan(JOB, name, lease_seconds=30, poll_interval=0.05)
            returned_at[name] = time.monotonic()
            tickets[name] = ticket
            if ticket.planner:
                await anyio.sleep(0.3)  # listing the clouds takes a while
                await add_entries(journal, ["s1", "s2"])
                await queue.publish_plan(ticket, [("s1", KEY), ("s2", KEY)])
                published_at.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        for name in ("a", "b", "c"):
            tg.start_soon(contender, name)
    planners = [name for name, t in tickets.items() if t.planner]
    assert len(planners) == 1
    assert len({t.plan_id for t in tickets.values()}) == 1
    for name in set(tickets) - set(planners):
        assert returned_at[name] >= published_at[0]  # they waited for the published plan
    rows = pg_db.execute("SELECT planner, ready_at IS NOT NULL, items FROM plans")
    assert rows == [(planners[0], True, 2)]


async def test_a_dropped_connection_is_reopened_and_nothing_is_lost(pg_db: PgDatabase) -> None:
    async with PgJournal(pg_db.url) as journal:
        queue = journal.work_queue
        run_id = await journal.start_run(JOB, "w")
        ticket = await queue.join_plan(JOB, "w", lease_seconds=30)
        await add_entries(journal, ["s1", "s2"])
        await queue.publish_plan(ticket, [("s1", KEY), ("s2", KEY)])
        held = await queue.claim(JOB, "w", limit=2, lease_seconds=30)
        [before] = pg_db.journal_backends()
        pg_db.execute("SELECT pg_terminate_backend(%s)", (before,))
        # The next write finds the connection gone before committing anything: it runs again
        # on a new connection, once.
        await journal.step_started(JOB, "s1", KEY, "create", run_id)
        [after] = pg_db.journal_backends()
        assert after != before
        pg_db.execute("SELECT pg_terminate_backend(%s)", (after,))
        assert len(await journal.steps(JOB, "s1", KEY)) == 1  # a read reconnects too
        # Leases are rows: the drop did not lose them.
        assert await queue.renew(JOB, "w", epochs(held), 30) == set(keys(held))
        assert pg_db.execute("SELECT COUNT(*) FROM steps") == [(1,)]
        assert (await journal.entries(JOB))[("s1", KEY)].state == "running"


async def test_an_unreachable_database_is_a_clear_error_then_recovers(pg_db: PgDatabase) -> None:
    async with PgJournal(pg_db.url, password=Secret("hunter2"), reconnect=0.5) as journal:
        await add_entries(journal, ["s1"])
        with pg_db.server.admin() as admin:
            admin.execute(f'ALTER DATABASE "{pg_db.name}" ALLOW_CONNECTIONS false'.encode())
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (pg_db.name,),
            )
        with pytest.raises(JournalError) as info:
            await journal.update_entry(JOB, "s1", KEY, state="done")
        message = str(info.value)
        assert message.startswith("journal postgresql://postgres@127.0.0.1:")
        assert f"/{pg_db.name}: cannot connect: " in message
        assert "not currently accepting connections" in message
        assert "hunter2" not in message and "\n" not in message
        with pg_db.server.admin() as admin:
            admin.execute(f'ALTER DATABASE "{pg_db.name}" ALLOW_CONNECTIONS true'.encode())
        # Back: the next call reconnects, and the failed write left nothing behind.
        assert (await journal.entries(JOB))[("s1", KEY)].state == "pending"
        await journal.update_entry(JOB, "s1", KEY, state="done")
        assert await journal.state_counts(JOB) == {"done": 1}


async def test_a_call_that_started_finishes_even_when_cancelled(pg_db: PgDatabase) -> None:
    async with PgJournal(pg_db.url) as journal:
        await add_entries(journal, ["s1"])
        with pg_db.server.admin(pg_db.name) as blocker:
            blocker.execute("BEGIN")
            blocker.execute("SELECT * FROM entries FOR UPDATE")
            returned: list[tuple[bool, float]] = []
            async with anyio.create_task_group() as tg:

                async def write() -> None:
                    with anyio.move_on_after(0.2) as scope:
                        await journal.update_entry(JOB, "s1", KEY, state="done")
                    returned.append((scope.cancel_called, time.monotonic()))

                tg.start_soon(write)
                await anyio.sleep(0.6)
                unblocked = time.monotonic()
                blocker.execute("COMMIT")
        # Cancelled at 0.2 s, the call still waited until its write could go through.
        [(cancelled, returned_at)] = returned
        assert cancelled and returned_at >= unblocked
        assert await journal.state_counts(JOB) == {"done": 1}


async def test_a_call_that_hangs_times_out_and_the_next_one_works(pg_db: PgDatabase) -> None:
    async with PgJournal(pg_db.url, timeout=0.5) as journal:
        await add_entries(journal, ["s1"])
        with pg_db.server.admin(pg_db.name) as blocker:
            blocker.execute("BEGIN")
            blocker.execute("SELECT * FROM entries FOR UPDATE")
            with pytest.raises(JournalError, match=r"no answer in 0\.5 s"):
                await journal.update_entry(JOB, "s1", KEY, state="failed")
            blocker.execute("COMMIT")
        await journal.update_entry(JOB, "s1", KEY, state="done")
        assert await journal.state_counts(JOB) == {"done": 1}


async def test_connection_failures_never_show_the_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    journal = PgJournal(f"postgresql://op:hunter2@127.0.0.1:{port}/db", connect_timeout=3)
    assert journal.display == f"postgresql://op@127.0.0.1:{port}/db"
    assert "hunter2" not in repr(journal)
    with pytest.raises(JournalError) as info:
        async with journal:
            pass
    assert str(info.value).startswith(
        f"journal postgresql://op@127.0.0.1:{port}/db: cannot connect"
    )
    assert "hunter2" not in str(info.value)
    with pytest.raises(JournalError, match="not a PostgreSQL URL") as bad:
        PgJournal("postgresql://op:hunter2@host/db?nonsense=1")
    assert "hunter2" not in str(bad.value)


async def test_password_from_the_config_or_pgpass(
    pg_db: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: PgServer = pg_db.server
    with server.admin() as admin:
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PASSWORD_ROLE,))
        if exists.fetchone() is None:
            admin.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN".encode())
        admin.execute(f"ALTER ROLE {PASSWORD_ROLE} PASSWORD 'correct horse'".encode())
        admin.execute(f'ALTER DATABASE "{pg_db.name}" OWNER TO {PASSWORD_ROLE}'.encode())
    url = server.database_url(pg_db.name, user=PASSWORD_ROLE)
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[journal]\nurl = "{url}"\npassword_env = "JOURNAL_PW"\n'
        '[clouds.c]\ntenant_id = "t"\nusername = "u"\npassword_env = "API_PW"\n'
    )
    config_file.chmod(0o600)
    environ = {"JOURNAL_PW": "correct horse", "API_PW": "x", "HOME": str(tmp_path)}
    config = load_config(config_file, environ=environ, resolve_secrets=False)
    assert config.journal.url == url and "correct horse" not in repr(config)
    async with open_journal(config.journal) as journal:
        assert isinstance(journal, PgJournal)
        await journal.start_run(JOB, "w")
    if server.own:  # this cluster's pg_hba.conf makes the role prove its password
        wrong = JournalConfig(path=tmp_path / "unused.db", url=url, password=Secret("battery"))
        with pytest.raises(JournalError, match="password authentication failed") as info:
            async with open_journal(wrong):
                pass
        assert "battery" not in str(info.value)
    # No password in the config: libpq's password file provides it.
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"*:*:{pg_db.name}:{PASSWORD_ROLE}:correct horse\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    async with PgJournal(url) as journal:
        assert len(await journal.runs(JOB)) == 1


def test_open_configured_picks_the_backend(tmp_path: Path) -> None:
    sqlite = open_journal(JournalConfig(path=tmp_path / "j.db"))
    assert isinstance(sqlite, SqliteJournal) and sqlite.path == tmp_path / "j.db"
    pg = open_journal(
        JournalConfig(path=tmp_path / "j.db", url="postgresql://op@db:5432/jobs", password=None)
    )
    assert isinstance(pg, PgJournal) and pg.display == "postgresql://op@db:5432/jobs"


async def test_migrations_apply_one_transaction_each(pg_db: PgDatabase) -> None:
    first = (("CREATE TABLE one (x INTEGER)",),)
    async with PgJournal(pg_db.url, migrations=first):
        pass
    broken = (*first, ("CREATE TABLE two (x INTEGER)", "INSERT INTO nowhere VALUES (1)"))
    with pytest.raises(JournalError, match=r"migration 2 failed: .*\"nowhere\" does not exist"):
        async with PgJournal(pg_db.url, migrations=broken):
            pass
    tables = {r[0] for r in pg_db.execute("SELECT tablename FROM pg_tables")}
    assert "two" not in tables  # the failed migration left nothing behind
    assert pg_db.execute("SELECT version FROM schema_migrations") == [(1,)]
    fixed = (*first, ("CREATE TABLE two (x INTEGER)",), ("CREATE TABLE three (x INTEGER)",))
    async with PgJournal(pg_db.url, migrations=fixed):
        pass
    assert pg_db.execute("SELECT version FROM schema_migrations ORDER BY 1") == [(1,), (2,), (3,)]
    with pytest.raises(JournalError, match=r"schema version 3 is newer than this image-transfer"):
        async with PgJournal(pg_db.url, migrations=first):
            pass


async def test_workers_starting_together_migrate_once(pg_db: PgDatabase) -> None:
    async def open_one() -> None:
        async with PgJournal(pg_db.url) as journal:
            await journal.start_run(JOB, "w")

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(open_one)
    versions = pg_db.execute("SELECT version FROM schema_migrations")
    assert versions == [(n,) for n in range(1, len(PG_MIGRATIONS) + 1)]
    assert pg_db.execute("SELECT COUNT(*) FROM runs") == [(4,)]


async def test_foreign_tables_are_refused(pg_db: PgDatabase) -> None:
    pg_db.execute("CREATE TABLE entries (id INTEGER)")
    with pytest.raises(JournalError, match="tables named entries but no schema_migrations"):
        async with PgJournal(pg_db.url):
            pass
    pg_db.execute("DROP TABLE entries")
    pg_db.execute("CREATE TABLE schema_migrations (version BIGINT, dirty BOOLEAN)")
    with pytest.raises(JournalError, match="schema_migrations table of another tool"):
        async with PgJournal(pg_db.url):
            pass


async def test_tables_go_to_the_schema_the_url_names(pg_db: PgDatabase) -> None:
    pg_db.execute("CREATE SCHEMA image_transfer")
    url = pg_db.url + "?options=-csearch_path%3Dimage_transfer"
    async with PgJournal(url) as journal:
        await journal.start_run(JOB, "w")
    schemas = {
        r[0] for r in pg_db.execute("SELECT schemaname FROM pg_tables WHERE tablename = 'runs'")
    }
    assert schemas == {"image_transfer"}
    missing = pg_db.url + "?options=-csearch_path%3Dnot_there"
    with pytest.raises(JournalError, match="no schema to create the tables in"):
        async with PgJournal(missing):
            pass


async def test_psycopg_errors_become_journal_errors(pg_db: PgDatabase) -> None:
    async with PgJournal(pg_db.url) as journal:
        await add_entries(journal, ["s1"])
        with pytest.raises(JournalError, match="violates foreign key constraint") as info:
            await journal.step_started(JOB, "s1", KEY, "create", 12345)  # no such run
        assert isinstance(info.value.__cause__, psycopg.Error)
        # The failed transaction was rolled back whole: the entry did not become running.
        assert (await journal.entries(JOB))[("s1", KEY)].state == "pending"
