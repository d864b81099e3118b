"""The SQLite journal, on real files: durability, permissions, migrations, refusals, speed.

What it shares with the PostgreSQL journal (the Journal's semantics) runs on both, SQLite
included, in ``tests/pg/test_journal_backends``."""

from __future__ import annotations

import sqlite3
import stat
import time
from pathlib import Path

import anyio
import pytest

from tests.pg.helpers import JOB, KEY, add_entry
from transfer.errors import JournalError
from transfer.journal.records import STEPS
from transfer.journal.sqlite import MIGRATIONS, SqliteJournal


async def test_a_write_is_committed_before_the_call_returns(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with SqliteJournal(path) as journal:
        await add_entry(journal, "s1")
        await journal.update_entry(JOB, "s1", KEY, state="done", last_step="accept")
        # Another connection (as another process would) sees it while the journal is open.
        other = sqlite3.connect(path)
        try:
            row = other.execute("SELECT state, last_step FROM entries").fetchone()
            mode = other.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            other.close()
        assert row == ("done", "accept")
        assert mode == "wal"


async def test_files_are_private_and_parents_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "image-transfer" / "journal.db"
    async with SqliteJournal(path) as journal:
        await add_entry(journal, "s1")
        files = [path, path.with_name("journal.db-wal"), path.with_name("journal.db-shm")]
        for file in files:
            assert file.exists(), file
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_migrations_apply_one_transaction_each(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    first = (("CREATE TABLE one (x INTEGER)",),)
    async with SqliteJournal(path, migrations=first):
        pass
    broken = (*first, ("CREATE TABLE two (x INTEGER)", "INSERT INTO nowhere VALUES (1)"))
    with pytest.raises(JournalError, match=r"journal .*j\.db: .*nowhere"):
        async with SqliteJournal(path, migrations=broken):
            pass
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert "two" not in tables and versions == [1]  # the failed migration left nothing behind
    fixed = (*first, ("CREATE TABLE two (x INTEGER)",), ("CREATE TABLE three (x INTEGER)",))
    async with SqliteJournal(path, migrations=fixed):
        pass
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert conn.execute("SELECT COUNT(*) FROM three").fetchone() == (0,)
    assert versions == [1, 2, 3]


async def test_a_journal_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with SqliteJournal(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (?, 'later')", (len(MIGRATIONS) + 1,))
    newer = len(MIGRATIONS) + 1
    with pytest.raises(
        JournalError, match=rf"schema version {newer} is newer than this image-transfer"
    ):
        async with SqliteJournal(path):
            pass


async def test_corrupt_and_foreign_files_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match=r"garbage\.db: not an image-transfer journal"):
        async with SqliteJournal(garbage):
            pass
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(JournalError, match=r"foreign\.db: an SQLite database of something else"):
        async with SqliteJournal(foreign):
            pass


async def test_status_queries_stay_fast_with_100k_steps(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    async with SqliteJournal(path) as journal:
        run_id = await journal.start_run(JOB, "w")
    now = "2024-01-01T00:00:00.000Z"
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO entries (job, source_id, target_key, state, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            ((JOB, f"s{i:05}", KEY, "done" if i % 10 else "failed", now) for i in range(15_000)),
        )
        conn.executemany(
            "INSERT INTO steps (run_id, job, source_id, target_key, step, started_at, "
            "finished_at, ok) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
            (
                (run_id, JOB, f"s{i % 15_000:05}", KEY, STEPS[i % len(STEPS)], now, now)
                for i in range(100_000)
            ),
        )
        plans = {
            sql: " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
            for sql, args in (
                (
                    "SELECT * FROM steps WHERE job = ? AND source_id = ? AND target_key = ? "
                    "ORDER BY id",
                    (JOB, "s00001", KEY),
                ),
                ("SELECT state, COUNT(*) FROM entries WHERE job = ? GROUP BY state", (JOB,)),
                ("SELECT * FROM runs WHERE job = ? ORDER BY id DESC LIMIT 20", (JOB,)),
            )
        }
    assert all("INDEX" in plan and "SCAN steps" not in plan for plan in plans.values()), plans
    async with SqliteJournal(path) as journal:
        started = time.perf_counter()
        for index in range(50):
            steps = await journal.steps(JOB, f"s{index:05}", KEY)
            assert len(steps) in (6, 7)
        counts = await journal.state_counts(JOB)
        await journal.runs(JOB)
        elapsed = time.perf_counter() - started
    assert counts == {"done": 13_500, "failed": 1_500}
    assert elapsed < 2.0  # about 0.05 s here; a full scan per call would be far slower


async def test_a_local_journal_refuses_fenced_writes(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "journal.db") as journal:
        await journal.ensure_entry(
            "job",
            "s1",
            "dst/KR1",
            source_name="s",
            source_checksum=None,
            source_size=1,
            target_id="t",
            generation=0,
        )
        with pytest.raises(ValueError, match="hands out no leases"):
            await journal.update_entry("job", "s1", "dst/KR1", fence=1, state="done")
        assert (await journal.entries("job"))[("s1", "dst/KR1")].state == "pending"


async def test_a_damaged_journal_says_so_and_what_to_do(tmp_path: Path) -> None:
    async def make(path: Path) -> None:
        async with SqliteJournal(path) as journal:
            await add_entry(journal, "s1")

    # Its record of migrations lost: the schema is there, the record says nothing was applied.
    forgotten = tmp_path / "forgotten.db"
    await make(forgotten)
    with sqlite3.connect(forgotten) as conn:
        conn.execute("DELETE FROM schema_migrations")
    # Pages overwritten in the middle of the file.
    mangled = tmp_path / "mangled.db"
    await make(mangled)
    with sqlite3.connect(mangled) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(mangled.read_bytes())
    data[4096 : 3 * 4096] = b"\xa5" * (2 * 4096)
    mangled.write_bytes(bytes(data))

    for path in (forgotten, mangled):
        with pytest.raises(JournalError) as info:
            async with SqliteJournal(path):
                pass
        message = str(info.value)
        assert message.startswith(f"journal {path} is damaged ("), message
        assert f"move it aside (for example to {path.name}.damaged) and run again" in message
        assert "disk full" not in message


async def test_writes_made_together_share_commits_and_each_is_durable_on_return(
    tmp_path: Path,
) -> None:
    path = tmp_path / "together.db"
    n = 60
    async with SqliteJournal(path) as journal:
        for i in range(n):
            await add_entry(journal, f"s{i}")
        before = journal.commits

        async def one(i: int) -> None:
            await journal.update_entry(JOB, f"s{i}", KEY, bytes_done=i)
            # Durable when the call returns: another connection reads it at once.
            other = sqlite3.connect(path)
            try:
                row = other.execute(
                    "SELECT bytes_done FROM entries WHERE source_id = ?", (f"s{i}",)
                ).fetchone()
            finally:
                other.close()
            assert row == (i,)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        assert journal.commits - before < n  # they shared commits


async def test_writers_cancelled_while_waiting_leave_each_write_whole_or_absent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cancelled.db"
    n = 40
    async with SqliteJournal(path) as journal:
        for i in range(n):
            await add_entry(journal, f"s{i}")
        returned: set[int] = set()

        async def one(i: int) -> None:
            await journal.update_entry(JOB, f"s{i}", KEY, bytes_done=1000 + i)
            returned.add(i)

        with anyio.move_on_after(0.002):
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
        # The journal still takes writes (no writer left waiting for a commit that never
        # comes), and every write whose call returned is there.
        with anyio.fail_after(10):
            await journal.update_entry(JOB, "s0", KEY, last_error="after")
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT source_id, bytes_done FROM entries").fetchall()
    written = {int(source[1:]) for source, done in rows if done >= 1000}
    assert returned <= written
    # Each write whole or absent: a value is either the one written or the one before.
    assert all(done in (0, 1000 + int(source[1:])) for source, done in rows), rows
