"""The throughput chart, drawn on the server as SVG (pure: a ``Series`` in, SVG text out).

No script and no style attribute in it (the page's Content-Security-Policy allows neither):
colours are presentation attributes, every text is escaped.  The job's throughput is a filled
area, each worker's a line over it, the time axis in UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from transfer.web.throughput import Series

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 78, 12, 14, 46
#: Workers' line colours (distinguishable, and readable on white).
PALETTE = ("#d9480f", "#2b8a3e", "#5f3dc4", "#c2255c", "#0b7285", "#e67700", "#364fc7")
AREA = "#a5d8ff"
Scale = Callable[[float], float]
EDGE = "#1864ab"


def _clock(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M:%S")


def _nice(top: float) -> tuple[float, int]:
    """A round upper bound of the y axis, at or above ``top`` bytes/s, and how many grid steps
    divide it roundly: 1, 2, 2.5 or 5 times a power of ten of a 1024-based unit."""
    if top <= 0:
        return 1024.0, 4
    unit = 1.0
    while top / unit >= 1024:
        unit *= 1024
    mantissa, step = top / unit, 1.0
    while step * 10 <= mantissa:
        step *= 10
    for factor, divisions in ((1, 4), (2, 4), (2.5, 5), (5, 5)):
        if step * factor >= mantissa:
            return step * factor * unit, divisions
    return step * 10 * unit, 5


def _rate_label(rate: float, top: float) -> str:
    """A grid line's rate in the unit of the axis' top: ``0.5 MiB/s``."""
    unit, name = 1.0, "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if top / unit < 1024:
            break
        unit, name = unit * 1024, bigger
    return f"{rate / unit:g} {name}/s"


def render(series: Series | None, *, title: str, samples: int) -> str:
    """The chart of ``series`` (None: no sample yet), with ``samples`` in its data."""
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" class="chart" data-samples="{samples}" '
        f"aria-label={quoteattr('throughput of ' + title)}>"
    )
    parts = [head, f"<title>{escape('throughput of ' + title)}</title>"]
    parts.append(f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>')
    if series is None:
        parts.append(
            f'<text x="{WIDTH // 2}" y="{HEIGHT // 2}" text-anchor="middle" fill="#495057" '
            'font-size="14">no samples yet: the chart starts with the first bytes moved</text>'
        )
        return "".join([*parts, "</svg>"])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top, divisions = _nice(max([*series.total, 0.0]) * 1.05)
    span = series.end - series.start

    def x(moment: float) -> float:
        return LEFT + (moment - series.start) / span * plot_w

    def y(rate: float) -> float:
        return TOP + plot_h - rate / top * plot_h

    parts += _axes(series, top, divisions, x, y)
    edges = _steps(series.total, series, x, y)
    base = f"{x(series.end):.1f},{y(0):.1f} {x(series.start):.1f},{y(0):.1f}"
    parts.append(f'<polygon class="total" points="{edges} {base}" fill="{AREA}" stroke="none"/>')
    parts.append(f'<polyline points="{edges}" fill="none" stroke="{EDGE}" stroke-width="1.5"/>')
    legend_x = LEFT
    for n, (worker, values) in enumerate(sorted(series.workers.items())):
        colour = PALETTE[n % len(PALETTE)]
        if len(series.workers) > 1:
            line = _steps(values, series, x, y)
            parts.append(
                f'<polyline class="worker" data-worker={quoteattr(worker)} points="{line}" '
                f'fill="none" stroke="{colour}" stroke-width="1.2"/>'
            )
        legend = f"{worker}" if len(series.workers) > 1 else "all transfers"
        parts.append(
            f'<rect x="{legend_x}" y="{HEIGHT - 14}" width="10" height="10" '
            f'fill="{colour if len(series.workers) > 1 else AREA}"/>'
            f'<text x="{legend_x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#212529">'
            f"{escape(legend)}</text>"
        )
        legend_x += 22 + 7 * len(legend)
    return "".join([*parts, "</svg>"])


def _steps(values: list[float], series: Series, x: Scale, y: Scale) -> str:
    """The points of a step line through the buckets' values."""
    points = []
    for index, value in enumerate(values):
        left, right = series.bounds(index)
        points.append(f"{x(left):.1f},{y(value):.1f}")
        points.append(f"{x(right):.1f},{y(value):.1f}")
    return " ".join(points)


def _axes(series: Series, top: float, divisions: int, x: Scale, y: Scale) -> list[str]:
    """Grid lines with their rates, and the time axis with its ends (UTC)."""
    parts = []
    for k in range(divisions + 1):
        rate = top * k / divisions
        at = y(rate)
        parts.append(
            f'<line x1="{LEFT}" y1="{at:.1f}" x2="{WIDTH - RIGHT}" y2="{at:.1f}" '
            f'stroke="#dee2e6" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{at + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#495057">{_rate_label(rate, top)}</text>'
        )
    bottom = y(0) + 16
    for moment, anchor in ((series.start, "start"), (series.end, "end")):
        parts.append(
            f'<text x="{x(moment):.1f}" y="{bottom:.1f}" text-anchor="{anchor}" '
            f'font-size="11" fill="#495057">{_clock(moment)} UTC</text>'
        )
    middle = (series.start + series.end) / 2
    parts.append(
        f'<text x="{x(middle):.1f}" y="{bottom:.1f}" text-anchor="middle" font-size="11" '
        f'fill="#495057">{_clock(middle)}</text>'
    )
    return parts
