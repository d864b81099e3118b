"""The SQLite journal, on real files: durability, permissions, migrations, concurrency."""

from __future__ import annotations

import sqlite3
import stat
import time
from pathlib import Path

import anyio
import pytest

from transfer.errors import TransferError
from transfer.journal.records import STEPS, JournalEntry
from transfer.journal.sqlite import MIGRATIONS, SqliteJournal

JOB = "job1"
KEY = "dst/KR2"


async def add_entry(
    journal: SqliteJournal, source_id: str, target_id: str | None = "t"
) -> JournalEntry:
    return await journal.ensure_entry(
        JOB,
        source_id,
        KEY,
        source_name=f"name-{source_id}",
        source_checksum="c" * 32,
        source_size=123,
        target_id=target_id,
        generation=0,
    )


async def test_everything_written_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with SqliteJournal(path) as journal:
        run_id = await journal.start_run(JOB, "host:1")
        created = await add_entry(journal, "s1")
        assert (created.state, created.last_step, created.attempts) == ("pending", None, 0)
        await journal.step_started(JOB, "s1", KEY, "create", run_id)
        await journal.step_finished(JOB, "s1", KEY, "create", run_id, ok=True, detail={"id": "t"})
        await journal.step_started(JOB, "s1", KEY, "upload", run_id)
        await journal.step_finished(
            JOB, "s1", KEY, "upload", run_id, ok=False, error="ServerError 503"
        )
        await journal.update_entry(JOB, "s1", KEY, attempts=1, bytes_done=100, md5="m" * 32)
        await journal.finish_run(run_id, "partial", {"failed": 1})

    async with SqliteJournal(path) as journal:
        entries = await journal.entries(JOB)
        assert list(entries) == [("s1", KEY)]
        got = entries[("s1", KEY)]
        assert (got.state, got.last_step, got.last_error) == (
            "running",
            "create",
            "ServerError 503",
        )
        assert (got.attempts, got.bytes_done, got.md5) == (1, 100, "m" * 32)
        steps = await journal.steps(JOB, "s1", KEY)
        assert [(s.step, s.ok, s.error) for s in steps] == [
            ("create", True, None),
            ("upload", False, "ServerError 503"),
        ]
        assert steps[0].detail == {"id": "t"} and steps[0].finished_at is not None
        [run] = await journal.runs(JOB)
        assert (run.id, run.worker, run.outcome, run.summary) == (
            run_id,
            "host:1",
            "partial",
            {"failed": 1},
        )
        assert await journal.jobs() == [JOB]


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


async def test_new_target_id_resets_progress_but_not_history(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.db") as journal:
        run_id = await journal.start_run(JOB, "w")
        await add_entry(journal, "s1", "old")
        await journal.step_started(JOB, "s1", KEY, "upload", run_id)
        await journal.step_finished(JOB, "s1", KEY, "upload", run_id, ok=True)
        await journal.update_entry(JOB, "s1", KEY, bytes_done=123, md5="m", attempts=2)
        same = await add_entry(journal, "s1", "old")
        assert (same.last_step, same.bytes_done, same.md5) == ("upload", 123, "m")
        kept = await add_entry(journal, "s1", None)  # no id given: nothing to reset
        assert (kept.target_id, kept.last_step) == ("old", "upload")
        fresh = await journal.ensure_entry(
            JOB,
            "s1",
            KEY,
            source_name="renamed",
            source_checksum="c" * 32,
            source_size=123,
            target_id="new",
            generation=1,
        )
        assert (fresh.target_id, fresh.generation, fresh.source_name) == ("new", 1, "renamed")
        assert (fresh.last_step, fresh.bytes_done, fresh.md5, fresh.state) == (
            None,
            0,
            None,
            "pending",
        )
        assert fresh.attempts == 2
        assert len(await journal.steps(JOB, "s1", KEY)) == 1


async def test_bad_calls_are_refused(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.db") as journal:
        run_id = await journal.start_run(JOB, "w")
        with pytest.raises(LookupError, match="no entry for job1 nope -> dst/KR2"):
            await journal.update_entry(JOB, "nope", KEY, state="done")
        with pytest.raises(LookupError):
            await journal.step_started(JOB, "nope", KEY, "create", run_id)
        await add_entry(journal, "s1")
        with pytest.raises(ValueError, match="not journal entry fields: job"):
            await journal.update_entry(JOB, "s1", KEY, job="other")
        with pytest.raises(ValueError, match="unknown entry state"):
            await journal.update_entry(JOB, "s1", KEY, state="exploded")
        with pytest.raises(ValueError, match="unknown step 'teleport'"):
            await journal.step_started(JOB, "s1", KEY, "teleport", run_id)


async def test_concurrent_writers_from_many_tasks(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.db") as journal:
        run_id = await journal.start_run(JOB, "w")

        async def work(index: int) -> None:
            source_id = f"s{index:02}"
            await add_entry(journal, source_id)
            for step in STEPS:
                await journal.step_started(JOB, source_id, KEY, step, run_id)
                await journal.step_finished(JOB, source_id, KEY, step, run_id, ok=True)
            await journal.update_entry(JOB, source_id, KEY, state="done")

        async with anyio.create_task_group() as tg:
            for index in range(40):
                tg.start_soon(work, index)

        entries = await journal.entries(JOB)
        assert len(entries) == 40
        assert {e.last_step for e in entries.values()} == {STEPS[-1]}
        assert await journal.state_counts(JOB) == {"done": 40}
        steps = await journal.steps(JOB, "s07", KEY)
        assert [s.step for s in steps] == list(STEPS) and all(s.ok for s in steps)


async def test_reset_job_forgets_entries_and_steps_but_not_runs(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j.db") as journal:
        run_id = await journal.start_run(JOB, "w")
        other_run = await journal.start_run("job2", "w")
        await add_entry(journal, "s1")
        await journal.step_started(JOB, "s1", KEY, "create", run_id)
        await journal.ensure_entry(
            "job2",
            "s1",
            KEY,
            source_name=None,
            source_checksum=None,
            source_size=None,
            target_id=None,
            generation=0,
        )
        await journal.step_started("job2", "s1", KEY, "create", other_run)
        await journal.reset_job(JOB)
        assert await journal.entries(JOB) == {}
        assert await journal.steps(JOB, "s1", KEY) == []
        assert len(await journal.entries("job2")) == 1
        assert [r.id for r in await journal.runs()] == [other_run, run_id]
        assert [r.id for r in await journal.runs(JOB)] == [run_id]
        assert await journal.jobs() == [JOB, "job2"]


async def test_migrations_apply_one_transaction_each(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    first = (("CREATE TABLE one (x INTEGER)",),)
    async with SqliteJournal(path, migrations=first):
        pass
    broken = (*first, ("CREATE TABLE two (x INTEGER)", "INSERT INTO nowhere VALUES (1)"))
    with pytest.raises(TransferError, match=r"journal .*j\.db: .*nowhere"):
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
        TransferError, match=rf"schema version {newer} is newer than this image-transfer"
    ):
        async with SqliteJournal(path):
            pass


async def test_corrupt_and_foreign_files_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(TransferError, match=r"garbage\.db: not an image-transfer journal"):
        async with SqliteJournal(garbage):
            pass
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(TransferError, match=r"foreign\.db: an SQLite database of something else"):
        async with SqliteJournal(foreign):
            pass


async def test_not_opened_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await SqliteJournal(tmp_path / "j.db").jobs()


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
