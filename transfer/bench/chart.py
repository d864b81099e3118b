"""Throughput against transfers, one line per kind (download, upload, copy), the knee marked:
an SVG written here (no dependency), or a PNG drawn by matplotlib (the ``bench`` extra)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from transfer.bench.figures import Kind, Measurement, rates
from transfer.errors import ConfigError

_COLOURS = {Kind.DOWNLOAD: "#1f77b4", Kind.UPLOAD: "#ff7f0e", Kind.COPY: "#2ca02c"}
_W, _H = 640, 400
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 130, 40, 50
MiB = 1024 * 1024


def write_chart(
    path: Path, measurements: Sequence[Measurement], knee: int | None, title: str
) -> None:
    """Write the chart to ``path``: SVG or PNG, as its suffix says."""
    suffix = path.suffix.lower()
    if suffix == ".svg":
        path.write_text(svg(measurements, knee, title))
    elif suffix == ".png":
        _png(path, measurements, knee, title)
    else:
        raise ConfigError(f"--chart {path}: expected a file name ending in .svg or .png")


def _nice_step(value: float) -> float:
    """A round tick step at or above ``value`` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return float(next(f * power for f in (1, 2, 2.5, 5, 10) if f * power >= value))


def svg(measurements: Sequence[Measurement], knee: int | None, title: str) -> str:
    """The chart as an SVG document (MiB/s against the transfers values, evenly spaced)."""
    values = sorted({m.transfers for m in measurements})
    lines = {kind: rates(measurements, kind) for kind in Kind}
    highest = max((r / MiB for line in lines.values() for r in line.values()), default=1.0)
    step = _nice_step(highest / 5)
    ticks = math.ceil(highest / step)
    top = step * ticks
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(t: int) -> float:
        n = values.index(t)
        return _LEFT + (plot_w * n / (len(values) - 1) if len(values) > 1 else plot_w / 2)

    def y(rate: float) -> float:
        return _TOP + plot_h * (1 - rate / MiB / top)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
        f'<text x="{_W / 2}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    for n in range(ticks + 1):
        value = step * n
        yy = y(value * MiB)
        out.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>'
        )
        out.append(f'<text x="{_LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">{value:g}</text>')
    for t in values:
        out.append(f'<text x="{x(t):.1f}" y="{_TOP + plot_h + 18}" text-anchor="middle">{t}</text>')
    out.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{_H - 10}" text-anchor="middle">transfers</text>'
    )
    out.append(
        f'<text x="16" y="{_TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {_TOP + plot_h / 2})">MiB/s</text>'
    )
    if knee in values:
        out.append(
            f'<line x1="{x(knee):.1f}" x2="{x(knee):.1f}" y1="{_TOP}" '
            f'y2="{_TOP + plot_h}" stroke="#888" stroke-dasharray="4 4"/>'
        )
        out.append(
            f'<text x="{x(knee) - 4:.1f}" y="{_TOP + 12}" fill="#555" text-anchor="end">knee</text>'
        )
    for n, kind in enumerate(Kind):
        points = sorted(lines[kind].items())
        colour = _COLOURS[kind]
        if points:
            path = " ".join(f"{x(t):.1f},{y(r):.1f}" for t, r in points)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            out += [
                f'<circle cx="{x(t):.1f}" cy="{y(r):.1f}" r="3" fill="{colour}"/>'
                for t, r in points
            ]
        ly = _TOP + 16 + 20 * n
        lx = _LEFT + plot_w + 16
        out.append(
            f'<line x1="{lx}" x2="{lx + 20}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        out.append(f'<text x="{lx + 26}" y="{ly}">{kind}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _png(path: Path, measurements: Sequence[Measurement], knee: int | None, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise ConfigError(
            f"--chart {path}: a PNG needs matplotlib (pip install 'image-transfer[bench]'); "
            "a .svg needs nothing"
        ) from None
    figure, axes = pyplot.subplots(figsize=(6.4, 4.0))
    for kind in Kind:
        points = sorted(rates(measurements, kind).items())
        if points:
            axes.plot(
                [t for t, _ in points],
                [r / MiB for _, r in points],
                marker="o",
                label=str(kind),
                color=_COLOURS[kind],
            )
    if knee is not None:
        axes.axvline(knee, linestyle="--", color="#888")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("transfers")
    axes.set_ylabel("MiB/s")
    axes.set_ylim(bottom=0)
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
