"""The live display of a run on a terminal, drawn with rich (imported only on a terminal:
``transfer.cli.display`` loads this module when its stream is one)."""

from __future__ import annotations

import time
from typing import TextIO

import anyio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from transfer.cli.report import human_rate
from transfer.engine.results import Progress
from transfer.streams import human_bytes


def _eta(remaining: float, rate: float) -> str:
    if rate <= 0 or remaining <= 0:
        return "-"
    seconds = int(remaining / rate)
    return f"{seconds // 3600}:{seconds // 60 % 60:02}:{seconds % 60:02}"


def render(progress: Progress) -> Group:
    now = time.monotonic()
    table = Table(box=None, pad_edge=False, show_edge=False, expand=False)
    for column, justify in (
        ("image", "left"),
        ("target", "left"),
        ("done", "right"),
        ("size", "right"),
        ("rate", "right"),
        ("ETA", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for active in list(progress.active.values())[:12]:
        elapsed = max(now - active.started, 1e-6)
        rate = active.done / elapsed
        table.add_row(
            active.name[:40],
            active.target,
            human_bytes(active.done),
            human_bytes(active.total),
            human_rate(rate),
            _eta(active.total - active.done, rate),
        )
    remaining = progress.bytes_total - progress.bytes_done
    header = Text(
        f"images {progress.images_done}/{progress.images_total}, "
        f"{progress.images_failed} errors  |  "
        f"{human_bytes(progress.bytes_done)}/{human_bytes(progress.bytes_total)} at "
        f"{human_rate(progress.rate)}, ETA {_eta(remaining, progress.rate)}"
    )
    return Group(header, table) if progress.active else Group(header)


async def show_live(progress: Progress, out: TextIO) -> None:
    """Redraw the table every half second until cancelled."""
    console = Console(file=out)
    with Live(render(progress), console=console, refresh_per_second=4, transient=True) as live:
        while True:
            await anyio.sleep(0.5)
            live.update(render(progress))
