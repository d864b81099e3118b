"""Logs and the stats line off a terminal, as a script or cron sees them: ``image-transfer run``
with stderr piped, by default, with ``--log-format json``, ``--log-file`` and ``-q``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.engine.helpers import (
    Outcome,
    cli,
    emulator_fixture,
    environment,
    job_toml,
    seed_many,
    write_config,
)
from transfer.emulator import Emulator

emu = emulator_fixture(seed=11)

CONSOLE_LINE = re.compile(r"^\d\d:\d\d:\d\d \[(debug|info|warning|error)\] \S")
STATS_LINE = re.compile(
    r"^\d\d:\d\d:\d\d images (\d+)/(\d+), (\d+) failed, \d+ retr(y|ies) \| "
    r"\S+ \w?i?B/\S+ \w?i?B at \S+ \w?i?B/s, ETA (-|\d+:\d\d:\d\d)$"
)


def _config(
    tmp_path: Path, emu: Emulator, log: str, target: tuple[str, str] = ("dst", "KR1")
) -> Path:
    """A one-target job logging at info level, its ``[log] format`` line replaced by ``log``."""
    config = write_config(tmp_path, emu, job_toml(targets=(target,)))
    text = config.read_text().replace('level = "warning"', 'level = "info"')
    config.write_text(text.replace('format = "json"\n', log))
    return config


async def _run(config: Path, *args: str) -> Outcome:
    result = await cli("run", "-c", str(config), *args, env=environment())
    assert "Traceback" not in result.err, result.err
    return result


async def test_off_a_terminal_logs_are_console_lines_and_the_stats_line_ends_the_run(
    emu: Emulator, tmp_path: Path
) -> None:
    ids = await seed_many(emu, [1000, 2000, 0])
    # No format at all, then the old "auto": console lines both times, never JSON.
    for log, target in (("", ("dst", "KR1")), ('format = "auto"\n', ("src", "KR2"))):
        result = await _run(_config(tmp_path, emu, log, target))
        assert result.code == 0, result.err
        lines = result.err.splitlines()
        assert not [line for line in lines if line.startswith("{")], result.err
        assert "\x1b[" not in result.err  # no colours in a pipe
        logged = [line for line in lines if CONSOLE_LINE.match(line)]
        assert any(" listed source " in line and "job=move" in line for line in logged), lines
        # Off a terminal the ids are whole.
        assert any(f"image={ids[0]}" in line for line in logged), result.err
        stats = [line for line in lines if STATS_LINE.match(line)]
        assert stats, result.err
        last = STATS_LINE.match(stats[-1])
        assert last is not None and last.group(1, 2, 3) == ("3", "3", "0"), stats[-1]
        assert stats[-1].endswith(", ETA -")


async def test_json_logs_only_when_asked_for(emu: Emulator, tmp_path: Path) -> None:
    await seed_many(emu, [1000])
    result = await _run(_config(tmp_path, emu, ""), "--log-format", "json", "--no-progress")
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")]
    assert {"listed source", "done"} <= {e["event"] for e in events}, result.err
    assert all(re.match(r"\d{4}-\d\d-\d\dT", e["timestamp"]) for e in events)
    assert not [line for line in result.err.splitlines() if CONSOLE_LINE.match(line)]


async def test_a_log_file_takes_the_log_and_is_appended_to(emu: Emulator, tmp_path: Path) -> None:
    await seed_many(emu, [1000, 0])
    config = _config(tmp_path, emu, "")
    log_file = tmp_path / "run.log"
    first = await _run(config, "--log-file", str(log_file))
    second = await _run(config, "--log-file", str(log_file))
    assert first.code == second.code == 0, first.err + second.err
    for result in (first, second):  # stderr keeps the plan and the stats, not the log
        assert not [line for line in result.err.splitlines() if CONSOLE_LINE.match(line)]
        assert any(STATS_LINE.match(line) for line in result.err.splitlines()), result.err
        assert "job move: " in result.err
    text = log_file.read_text()
    assert "\x1b[" not in text
    lines = text.splitlines()
    assert all(CONSOLE_LINE.match(line) for line in lines if line.startswith(("0", "1", "2")))
    assert sum(" listed source " in line for line in lines) == 2, text  # both runs


async def test_quiet_shows_no_info_and_no_stats(emu: Emulator, tmp_path: Path) -> None:
    await seed_many(emu, [1000])
    result = await _run(_config(tmp_path, emu, ""), "-q")
    assert result.code == 0, result.err
    assert not re.search(r"\[(info|debug)\]", result.err), result.err
    assert not [line for line in result.err.splitlines() if STATS_LINE.match(line)]
    assert "1 copied" in result.out


async def test_logging_options_that_cannot_work_are_refused_by_name(
    emu: Emulator, tmp_path: Path
) -> None:
    config = _config(tmp_path, emu, "")
    both = await _run(config, "-q", "-v")
    assert both.code == 2 and "-v/--verbose: not allowed with argument -q/--quiet" in both.err
    nowhere = tmp_path / "no-such-dir" / "run.log"
    unwritable = await _run(config, "--log-file", str(nowhere))
    assert unwritable.code == 2, unwritable.err
    assert f"--log-file: cannot open {nowhere}: No such file or directory" in unwritable.err
