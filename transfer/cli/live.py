"""The live display of a run on a terminal, drawn with rich (imported only on a terminal:
``transfer.cli.display`` loads this module when its stream is one).

One rich ``Console`` owns the terminal while the display is up: the live region (the stats
header, the transfers in flight, the latest failures) is redrawn in place, and everything else
written meanwhile (log lines through ``LogSink.routed_through``, ``print``s to stdout and stderr
through rich's redirection) is printed above it, so nothing lands inside the region.  Every line
of the region is cut to the terminal's width (an ellipsis marks a cut), so no row wraps.  When
the display stops, the region is replaced by its final header alone, before anything else (the
run's closing table) is printed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO

import anyio
from rich.cells import cell_len
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from transfer.cli.logs import current_sink
from transfer.cli.stats import (
    SEPARATOR,
    bytes_part,
    count_part,
    eta_seconds,
    format_eta,
    human_rate,
    short_ids,
    stats_line,
    stats_of,
)
from transfer.engine.results import Progress
from transfer.streams import human_bytes

#: Columns of the transfers table after the image's name, each right-aligned.
_NUMBERS = ("done", "size", "rate", "ETA")
_GAP = "  "
#: Failures listed under the table (the closing table lists them all).
_FAILURES_SHOWN = 3


def _cut(text: str, width: int, *, style: str = "", pad: bool = False) -> Text:
    """``text`` on one line of at most (with ``pad``: exactly) ``width`` cells, cut with an
    ellipsis if longer."""
    line = Text(" ".join(text.splitlines()), style=style, no_wrap=True, overflow="ellipsis")
    line.truncate(max(width, 1), overflow="ellipsis", pad=pad)
    return line


def header(progress: Progress, width: int, now: float) -> list[Text]:
    """The stats line, on two lines when one is too narrow for it."""
    stats = stats_of(progress, now)
    whole = stats_line(stats)
    if cell_len(whole) <= width:
        return [Text(whole, style="bold", no_wrap=True)]
    return [
        _cut(count_part(stats), width, style="bold"),
        _cut(" " * len(SEPARATOR.lstrip()) + bytes_part(stats), width, style="bold"),
    ]


def _transfer_rows(progress: Progress, now: float, limit: int) -> list[list[str]]:
    rows = []
    for active in list(progress.active.values())[:limit]:
        rate = active.done / max(now - active.started, 1e-6)
        rows.append(
            [
                active.name,
                active.target,
                human_bytes(active.done),
                human_bytes(active.total),
                human_rate(rate),
                format_eta(eta_seconds(active.total - active.done, rate)),
            ]
        )
    return rows


def transfers(progress: Progress, width: int, now: float, limit: int) -> list[Text]:
    """The transfers in flight, one per line: the name takes the room the numbers leave."""
    rows = _transfer_rows(progress, now, limit)
    if not rows:
        return []
    heads = ["image", "target", *_NUMBERS]
    widths = [max(cell_len(row[i]) for row in [heads, *rows]) for i in range(len(heads))]
    widths[1] = min(widths[1], 24)
    room = width - sum(widths[1:]) - len(_GAP) * (len(heads) - 1)
    widths[0] = max(min(widths[0], room), 8)
    lines = [_row(heads, widths, style="dim")]
    lines += [_row(row, widths) for row in rows]
    hidden = len(progress.active) - len(rows)
    if hidden > 0:
        lines.append(_cut(f"... and {hidden} more in flight", width, style="dim"))
    return [line[:width] if cell_len(line.plain) > width else line for line in lines]


def _row(cells: Sequence[str], widths: Sequence[int], style: str = "") -> Text:
    line = Text(no_wrap=True, overflow="ellipsis", style=style)
    for n, (cell, w) in enumerate(zip(cells, widths, strict=True)):
        if n:
            line.append(_GAP)
        if n < 2:
            line.append_text(_cut(cell, w, pad=True))
        else:
            line.append(cell.rjust(w))
    return line


def failures(progress: Progress, width: int) -> list[Text]:
    """The latest failed images with their error's text, newest last."""
    latest = list(progress.recent_failures)[-_FAILURES_SHOWN:]
    if not latest:
        return []
    lines = [_cut(f"failed ({progress.images_failed}), latest:", width, style="red")]
    for result in latest:
        lines.append(_cut(f"  {result.source_name} -> {result.target_key}", width, style="red"))
        lines.append(_cut(f"    {short_ids(result.error or 'failed')}", width))
    return lines


def frame(progress: Progress, width: int, height: int, now: float | None = None) -> Group:
    """The live region at ``now``, at most ``width`` cells wide and well below ``height``."""
    moment = time.monotonic() if now is None else now
    top = header(progress, width, moment)
    bottom = failures(progress, width)
    # Rows left for transfers, keeping a third of the screen for the lines scrolling above.
    limit = max(height * 2 // 3 - len(top) - len(bottom) - 2, 1)
    return Group(*top, *transfers(progress, width, moment, limit), *bottom)


async def show_live(progress: Progress, out: TextIO) -> None:
    """Redraw the region twice a second, and whenever a line is printed above it, until
    cancelled; then leave its final header."""
    console = Console(file=out, highlight=False)
    final = False

    def region() -> Group:  # built afresh at each redraw, so it agrees with the lines above
        if final:
            return Group(*header(progress, console.width, time.monotonic()))
        return frame(progress, console.width, console.height)

    def above(line: str) -> None:
        console.print(Text.from_ansi(line), highlight=False, markup=False)

    live = Live(
        console=console,
        get_renderable=region,
        auto_refresh=False,  # no drawing thread: every redraw happens on the event loop
        transient=False,
        vertical_overflow="crop",
    )
    with live, current_sink().routed_through(above):
        try:
            while True:
                live.refresh()
                await anyio.sleep(0.5)
        finally:
            final = True
            live.refresh()
