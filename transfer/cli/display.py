"""The progress of a run: the live display on a terminal (``transfer.cli.live``, rich), the
stats line elsewhere (``transfer.cli.stats``: the same words as the live display's header).

A subscriber to ``engine.Progress``: it reads the counters the engine keeps (and feeds it the
request retries ``cloud.retry`` reports while it is shown), every half second on a terminal,
every ``interval`` seconds (default 10) otherwise, like rclone's ``--stats``, and once more when
it stops, so a log of the run ends with its final stats.  rich is imported only for a terminal:
a run from cron or a pipe never loads it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

import anyio

from transfer.cli.stats import stats_of, timed_stats_line
from transfer.cloud.retry import counting_retries

if TYPE_CHECKING:
    from transfer.engine.results import Progress


async def show_progress(
    progress: Progress, *, stream: TextIO | None = None, interval: float = 10.0
) -> None:
    """Show progress until cancelled, counting the request retries meanwhile."""
    out = stream or sys.stderr
    with counting_retries(progress.request_retried):
        if out.isatty():
            from transfer.cli.live import show_live

            await show_live(progress, out)
            return
        try:
            while True:
                await anyio.sleep(interval)
                _write_line(progress, out)
        finally:
            _write_line(progress, out)


def _write_line(progress: Progress, out: TextIO) -> None:
    out.write(timed_stats_line(stats_of(progress)) + "\n")
    out.flush()
