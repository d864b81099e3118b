"""The bench's reading of its figures, on plain data: the knee of the curve, the side that
limits, percentiles, the table and the SVG chart."""

from __future__ import annotations

from xml.etree import ElementTree

from transfer.bench.chart import svg
from transfer.bench.figures import Kind, Latency, Measurement, knee, limit, percentile, table

MiB = 1024 * 1024


def measured(kind: Kind, points: dict[int, float], size: int = 64 * MiB) -> list[Measurement]:
    """Measurements of ``kind`` moving 4 images of ``size`` at ``points`` MiB/s."""
    return [
        Measurement(kind, t, images=4, bytes=4 * size, seconds=4 * size / (rate * MiB))
        for t, rate in points.items()
    ]


def test_the_knee_is_where_the_next_value_adds_less_than_a_tenth() -> None:
    assert knee({1: 10.0, 2: 19.0, 4: 36.0, 8: 38.0, 16: 39.0})[0] == 4
    value, why = knee({1: 10.0, 2: 20.0, 4: 40.0})
    assert value == 4 and "still gaining at 4 transfers" in why
    assert knee({}) == (None, "nothing was measured")


def test_the_slower_half_limits_unless_round_trips_fill_the_images_time() -> None:
    down = measured(Kind.DOWNLOAD, {1: 10.0, 4: 20.0})
    up = measured(Kind.UPLOAD, {1: 30.0, 4: 60.0})
    copy = measured(Kind.COPY, {1: 9.5, 4: 19.0})
    quick = [Latency("target", "create", [0.002] * 5)]
    verdict = limit(down + up + copy, quick, 4, 64 * MiB)
    assert verdict.side == "download" and "the copy reached 19.0 MiB/s (95%" in verdict.reason
    # The same rates with 1 MiB images and 100 ms round trips: latency holds the copy back.
    small = measured(Kind.COPY, {1: 2.0, 4: 7.0}, size=MiB)
    slow = [Latency("target", "create", [0.1] * 5), Latency("source", "show", [0.1] * 5)]
    assert limit(down + up + small, slow, 4, MiB).side == "latency"
    alike = measured(Kind.UPLOAD, {1: 10.5, 4: 21.0})
    assert limit(down + alike, quick, 4, 64 * MiB).side == "both"


def test_percentiles_interpolate_between_samples() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == 4.8
    assert Latency("source", "show").p50 is None


def test_the_table_and_the_chart_show_every_measured_figure() -> None:
    figures = measured(Kind.DOWNLOAD, {1: 10.0, 2: 20.0}) + measured(Kind.COPY, {1: 9.0})
    figures.append(Measurement(Kind.UPLOAD, 1, failed=1, error="503"))
    rows = table(figures)
    assert rows[0].split() == ["transfers", "download", "upload", "copy", "copied"]
    assert rows[1].split() == ["1", "10.0", "MiB/s", "failed", "9.0", "MiB/s", "4"]
    assert rows[2].split() == ["2", "20.0", "MiB/s", "-", "-", "-"]
    drawn = ElementTree.fromstring(svg(figures, 2, "bench a -> b"))
    lines = drawn.findall("{http://www.w3.org/2000/svg}polyline")
    assert [len(line.attrib["points"].split()) for line in lines] == [2, 1]
