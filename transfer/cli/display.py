"""The progress of a run: the live display on a terminal (``transfer.cli.live``, rich), the
stats line elsewhere.

A subscriber to ``engine.Progress``: it only reads the counters the engine keeps, every half
second on a terminal, every ``interval`` seconds (default 10) otherwise, like rclone's ``--stats``.
rich is imported only for a terminal: a run from cron or a pipe never loads it.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

import anyio

from transfer.cli.report import progress_line

if TYPE_CHECKING:
    from transfer.engine.results import Progress


async def show_progress(
    progress: Progress, *, stream: TextIO | None = None, interval: float = 10.0
) -> None:
    """Show progress until cancelled."""
    out = stream or sys.stderr
    if out.isatty():
        from transfer.cli.live import show_live

        await show_live(progress, out)
        return
    while True:
        await anyio.sleep(interval)
        out.write(time.strftime("%H:%M:%S ") + progress_line(progress) + "\n")
        out.flush()
