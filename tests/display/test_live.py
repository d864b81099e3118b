"""``image-transfer run`` in a real pseudo-terminal at 80x24 and 160x40, as a user watches it:
a copy slowed by the emulator, one request retried and one image failed by injected faults.

What the screens must show: log lines and the live region never share a line, the stats and
the injected error's text are visible while the run goes on, no stale frame is left in the
scrollback, and the closing table comes out whole, each row on a line of its own."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.display.terminal import Terminal
from tests.engine.helpers import (
    REPO,
    SRC,
    MiB,
    environment,
    job_toml,
    new_emulator,
    write_config,
)
from transfer.emulator import Emulator

#: Every name is cut in the live table at 80 columns (about 27 left for it there) and whole at
#: 160, whichever images are in flight when a screen is caught; short enough for the closing
#: table's header to fit 80 columns.
NAMES = tuple(f"golden-ubuntu-22.04-cloudimg-amd64-{n}" for n in range(6))
INJECTED = "Injected fault: the emulated service failed this request."

LOG_LINE = re.compile(r"\d\d:\d\d:\d\d \[(debug|info|warning|error)\]")
COUNTS = re.compile(r"images (\d+)/(\d+), (\d+) failed, (\d+) retr(y|ies)")
BYTES = re.compile(r"\d+\.\d \w?i?B/\d+\.\d \w?i?B at \d+\.\d \w?i?B/s, ETA (-|\d+:\d\d:\d\d)")
TABLE_HEAD = re.compile(r"^ +outcome +image +target +bytes +time +note$")


async def _inject_faults(emu: Emulator) -> None:
    """First one 503 on a download (the client retries it), then one 400 on an upload (the
    image fails for good, with the injected message)."""
    emu.set_faults(
        bandwidth=MiB,
        error_rate=1.0,
        error_routes={"download"},
        error_statuses=(503,),
        errors_remaining=1,
    )
    while emu.faults.errors_remaining:  # noqa: ASYNC110 (the emulator signals no event)
        await asyncio.sleep(0.02)
    emu.set_faults(error_routes={"upload"}, error_statuses=(400,), errors_remaining=1)


async def _watch(tmp_path: Path, columns: int, lines: int) -> Terminal:
    async with new_emulator(seed=7) as emu:
        for n, name in enumerate(NAMES):
            await emu.seed_image("KR1", SRC.tenant_id, size=MiB, fill_seed=n, name=name)
        config = write_config(tmp_path, emu, job_toml(targets=(("dst", "KR1"),), transfers=2))
        config.write_text(config.read_text().replace('level = "warning"', 'level = "info"'))
        env = {"TERM": "xterm-256color", "PATH": "/usr/bin:/bin", **environment()}
        terminal = Terminal(columns, lines)
        faults = asyncio.create_task(_inject_faults(emu))
        await asyncio.to_thread(
            terminal.run, ["run", "-c", str(config), "--log-format", "console"], env, REPO, 60
        )
        faults.cancel()
    return terminal


def _live_screens(terminal: Terminal) -> list[list[str]]:
    """The screens seen before the closing table began."""
    shown = []
    for screen in terminal.screens:
        if any(TABLE_HEAD.match(line) for line in screen):
            break
        shown.append(screen)
    return shown


def _check_table(final: list[str]) -> str:
    """The closing table is whole: its header, its rule, then one row per image, each on a line
    of its own (a row longer than the terminal wraps onto the next lines, nothing else shares
    them); returns the name of the failed image."""
    heads = [n for n, line in enumerate(final) if TABLE_HEAD.match(line)]
    assert len(heads) == 1, "\n".join(final)
    rule = final[heads[0] + 1]
    assert re.fullmatch(r"[- ]+", rule) and rule.count("-") > 20, rule
    rows = [line for line in final[heads[0] + 2 :] if re.match(r"[+*!=-] +(copied|failed) ", line)]
    named = {
        name: [r for r in rows if re.match(rf"[+!] +\w+ +{re.escape(name)} ", r)] for name in NAMES
    }
    assert all(len(found) == 1 for found in named.values()), (named, "\n".join(final))
    failed = [name for name, found in named.items() if re.match(r"\+ +failed ", found[0])]
    assert len(failed) == 1, rows
    assert any(re.match(r"job move: 5 copied, .* 1 failed", line) for line in final), final
    return failed[0]


@pytest.mark.parametrize(("columns", "lines"), [(80, 24), (160, 40)])
async def test_the_live_display_stays_clean_at_80_and_160_columns(
    tmp_path: Path, columns: int, lines: int
) -> None:
    terminal = await _watch(tmp_path, columns, lines)
    dump = "\n".join(terminal.final)
    assert terminal.status == 1, dump
    assert b"Traceback" not in terminal.raw, dump

    every_line = [line for screen in terminal.screens for line in screen] + terminal.final
    for line in every_line:
        # A log line starts its line; stats text never shares a line with a log event.
        assert not (LOG_LINE.search(line) and (COUNTS.search(line) or BYTES.search(line))), line
        match = LOG_LINE.search(line)
        assert match is None or match.start() == 0, line
        assert len(line) <= columns

    live = _live_screens(terminal)
    seen = [line for screen in live for line in screen]
    assert any(COUNTS.match(line) for line in seen), "\n".join(seen)
    assert any(BYTES.search(line) for line in seen), "\n".join(seen)
    assert any((m := COUNTS.match(line)) and int(m[4]) >= 1 for line in seen), "no retry shown"
    assert any(INJECTED[:40] in line and not LOG_LINE.match(line) for line in seen), seen
    in_flight = [line for line in seen if re.search(r" dst/KR1 .*/s ", line)]
    if columns == 80:
        assert any(re.match(r"golden-ubuntu-22\.04-cl\S*… ", line) for line in in_flight), in_flight
    else:
        assert any(line.startswith(tuple(f"{name} " for name in NAMES)) for line in in_flight)

    failed = _check_table(terminal.final)
    assert any(line.strip() == f"{failed} -> dst/KR1" for line in seen), "failure not shown"
    # No stale frame in the scrollback: the one stats header left is the final one.
    headers = [line for line in terminal.final if COUNTS.match(line)]
    assert len(headers) == 1 and headers[0].startswith("images 6/6, 1 failed"), dump
