"""A step's end and the next step's start are one transaction, and writes made together share
a commit: a journal process killed (SIGKILL) at random moments leaves every entry either before
a transition or after it, never in between, and every write whose call returned is there.

The child process writes chains of transitions for several entries at once (so SQLite's group
commit batches them) and prints each entry's progress once the call returned; the parent kills
it at a random moment and reads the file.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import sys
from pathlib import Path

from transfer.journal.records import Step
from transfer.journal.sqlite import SqliteJournal

CHAIN = [s.value for s in Step]
ENTRIES = 6

CHILD = f"""
import asyncio, sys
from pathlib import Path
from transfer.journal.sqlite import SqliteJournal

CHAIN = {CHAIN!r}

async def entry(journal, run_id, n):
    key = ("job", f"src-{{n}}", "t")
    await journal.ensure_entry(*key, source_name=None, source_checksum=None, source_size=None,
                               target_id=None, generation=0)
    await journal.step_started(*key, CHAIN[0], run_id)
    round = 0
    while True:
        for step, then in zip(CHAIN, CHAIN[1:]):
            await journal.step_finished(*key, step, run_id, ok=True, then=then,
                                        fields={{"attempts": round}})
            print(n, step, flush=True)  # durable now
        await journal.step_finished(*key, CHAIN[-1], run_id, ok=True, then=CHAIN[0])
        round += 1

async def main():
    async with SqliteJournal(Path(sys.argv[1])) as journal:
        run_id = await journal.start_run("job", "w")
        print("ready", flush=True)
        await asyncio.gather(*(entry(journal, run_id, n) for n in range({ENTRIES})))

asyncio.run(main())
"""


async def _kill_at_random(path: Path, seed: int) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"ready\n"
    await asyncio.sleep(random.Random(seed).uniform(0.05, 0.4))
    proc.send_signal(signal.SIGKILL)
    out, _ = await proc.communicate()
    return out.decode().split("\n")[:-1]  # the last line may have been cut short


async def test_transitions_are_whole_after_sigkill_at_random_moments(tmp_path: Path) -> None:
    for seed in range(4):
        path = tmp_path / f"journal-{seed}.db"
        said = await _kill_at_random(path, seed)
        reported: dict[int, list[str]] = {n: [] for n in range(ENTRIES)}
        for line in said:
            number, step = line.split()
            reported[int(number)].append(step)
        assert sum(map(len, reported.values())) > ENTRIES, said  # it got well under way
        async with SqliteJournal(path) as journal:
            entries = await journal.entries("job")
            assert len(entries) == ENTRIES
            for n in range(ENTRIES):
                key = (f"src-{n}", "t")
                history = await journal.steps("job", *key)
                entry = entries[key]
                # Exactly one step is open: the one after the entry's last step (the start
                # of a step went in with the end of the one before).
                open_steps = [s.step for s in history if s.finished_at is None]
                last = entry.last_step
                expected = CHAIN[0] if last in (None, CHAIN[-1]) else CHAIN[CHAIN.index(last) + 1]
                assert open_steps == [expected], (seed, n, last, open_steps)
                assert entry.state == "running"
                # Each finished step's next start is in the history right after it.
                for before, after in itertools.pairwise(history):
                    assert before.finished_at is not None
                    assert after.step == CHAIN[(CHAIN.index(before.step) + 1) % len(CHAIN)]
                # What a returned call reported is there: durable on return.
                finished = [s.step for s in history if s.finished_at is not None]
                if reported[n]:
                    mine = [s for s in finished if s != CHAIN[-1]]
                    assert mine[: len(reported[n])] == reported[n]
