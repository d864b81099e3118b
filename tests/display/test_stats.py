"""The stats line and the live region, on plain data: the words, the ETA, the widths, and the
agreement between the live display's header and the line written off a terminal."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from transfer.cli.live import frame, header
from transfer.cli.stats import Stats, format_eta, short_ids, stats_line, stats_of, timed_stats_line
from transfer.engine.results import ActiveTransfer, ItemResult, Outcome, Progress
from transfer.planner import Code

MiB = 1 << 20
ERROR = "PUT /v2/images/0b1c2d3e-1111-2222-3333-444455556666/file: 400 Injected fault: it broke."


def _stats(**changes: float) -> Stats:
    fields: dict[str, float] = {
        "images_done": 3,
        "images_total": 12,
        "failed": 1,
        "retries": 2,
        "bytes_done": 12 * MiB,
        "bytes_total": 48 * MiB,
        "seconds": 10.0,
    }
    fields.update(changes)
    return Stats(**fields)  # type: ignore[arg-type]


def _progress(now: float, names: tuple[str, ...] = ("img-a", "img-b")) -> Progress:
    progress = Progress(images_total=12, images_done=3, bytes_total=48 * MiB, started=now - 10)
    progress.bytes_done = 12 * MiB
    for n, name in enumerate(names):
        key = (f"id-{n}", "dst/KR1")
        progress.active[key] = ActiveTransfer(
            name=name, target="dst/KR1", total=4 * MiB, done=MiB, started=now - 2
        )
    failed = ItemResult(
        code=Code.COPY,
        target_key="dst/KR1",
        source_id="id-9",
        source_name="broken",
        outcome=Outcome.FAILED,
        attempts=3,
        error=ERROR,
    )
    progress.finished(failed)
    return progress


def _lines(progress: Progress, width: int, height: int, now: float) -> list[str]:
    console = Console(width=width, height=height, record=True, file=io.StringIO())
    console.print(frame(progress, width, height, now))
    return [line.rstrip() for line in console.export_text(styles=False).splitlines()]


def test_the_stats_line_names_every_count_and_the_eta() -> None:
    assert stats_line(_stats()) == (
        "images 3/12, 1 failed, 2 retries | 12.0 MiB/48.0 MiB at 1.2 MiB/s, ETA 0:00:30"
    )
    assert "1 retry |" in stats_line(_stats(retries=1))


@pytest.mark.parametrize(
    ("changes", "eta"),
    [
        ({}, "0:00:30"),  # 36 MiB left at 1.2 MiB/s
        ({"seconds": 36000.0}, "30:00:00"),  # three times as long again as so far
        ({"bytes_done": 0}, "-"),  # nothing moved yet: no rate to go by
        ({"bytes_done": 48 * MiB}, "-"),
        ({"images_done": 12}, "-"),  # every image finished (a failed one's bytes never come)
    ],
)
def test_the_eta_is_the_bytes_left_at_the_average_rate(changes: dict[str, float], eta: str) -> None:
    assert stats_line(_stats(**changes)).endswith(f", ETA {eta}")


def test_format_eta_rounds_to_seconds() -> None:
    assert format_eta(None) == "-"
    assert format_eta(59.6) == "0:01:00"
    assert format_eta(3 * 3600 + 61) == "3:01:01"


def test_the_line_off_a_terminal_is_the_time_then_the_live_header() -> None:
    now = time.monotonic()
    progress = _progress(now)
    live_header = [t.plain for t in header(progress, 160, now)]
    written = timed_stats_line(stats_of(progress, now))
    assert re.fullmatch(r"\d\d:\d\d:\d\d .+", written)
    assert live_header == [written[9:]]
    # The failed image's extra attempts count as retries.
    assert "1 failed, 2 retries" in written


def test_a_narrow_terminal_gets_the_header_on_two_lines_of_the_same_words() -> None:
    now = time.monotonic()
    progress = _progress(now)
    whole = stats_line(stats_of(progress, now))
    first, second = (t.plain.strip() for t in header(progress, 60, now))
    assert f"{first} | {second}" == whole


@pytest.mark.parametrize("width", [80, 160])
def test_the_region_fits_the_width_and_cuts_long_names_with_an_ellipsis(width: int) -> None:
    now = time.monotonic()
    long_name = "ubuntu-22.04-golden-server-image-built-for-the-kr1-region-2026-12-01"
    lines = _lines(_progress(now, (long_name, "small")), width, 24, now)
    assert all(len(line) <= width for line in lines), lines
    rows = [line for line in lines if "dst/KR1" in line and "/s" in line]
    assert len(rows) == 2 and rows[1].startswith("small ")
    if width == 80:
        assert rows[0].startswith(long_name[:20]) and "…" in rows[0]
    else:
        assert rows[0].startswith(long_name + " ")
    # The failure's text, its image id cut short, under the transfers.
    assert "  broken -> dst/KR1" in lines
    assert any(
        line.strip().startswith("PUT /v2/images/0b1c2d3e/file: 400 Injected") for line in lines
    )


def test_the_region_leaves_room_for_the_log_on_a_short_terminal() -> None:
    now = time.monotonic()
    many = tuple(f"img-{n:02}" for n in range(30))
    lines = _lines(_progress(now, many), 80, 24, now)
    # A third of the screen stays free; the transfers left out are counted.
    assert len(lines) <= 16, lines
    shown = [line for line in lines if re.match(r"img-\d\d ", line)]
    assert f"... and {30 - len(shown)} more in flight" in lines


def test_short_ids_cuts_uuids_only() -> None:
    text = "GET /v2/images/0b1c2d3e-1111-2222-3333-444455556666 of 0b1c2d3e-1111"
    assert short_ids(text) == "GET /v2/images/0b1c2d3e of 0b1c2d3e-1111"
