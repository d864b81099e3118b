"""The overlap lock: one live run per job and journal.

An exclusive ``flock`` on a lock file next to the journal.  The kernel releases it when the
process dies, however it dies (SIGKILL included), so a lock left by a dead run is taken over by the
next one without any guessing about ages or process ids.  The file records who holds it, only to
make the refusal message useful.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from transfer.errors import JobLocked


def lock_path(journal_path: Path, job: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", job)
    return journal_path.with_name(f"{journal_path.name}.{safe}.lock")


@contextlib.contextmanager
def job_lock(journal_path: Path, job: str) -> Iterator[None]:
    """Hold the job's lock for the duration of the block, or raise ``JobLocked`` at once."""
    path = lock_path(journal_path, job)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise JobLocked(
                f"job {job!r} is already running ({holder}); refusing to start a second run "
                f"(lock: {path})"
            ) from None
        os.ftruncate(fd, 0)
        record = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _read_holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(data["since"])))
        return f"pid {data['pid']} on {data['host']} since {since}"
    except (ValueError, KeyError, TypeError, OSError):
        return "holder unknown"
