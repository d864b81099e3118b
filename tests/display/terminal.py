"""A command run in a pseudo-terminal of a given size, its output fed to a terminal emulator
(pyte), and the screens a user saw along the way."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect
import pyte


def _text(line: Mapping[int, Any], columns: int) -> str:
    return "".join(line[x].data for x in range(columns)).rstrip()


@dataclass
class Terminal:
    """What a terminal of ``columns`` x ``lines`` showed of a command's output."""

    columns: int
    lines: int
    #: The visible screen after each chunk of output, oldest first.
    screens: list[list[str]] = field(default_factory=list)
    #: Everything at the end: the lines scrolled off the top, then the screen.
    final: list[str] = field(default_factory=list)
    status: int | None = None
    raw: bytes = b""

    def run(self, args: list[str], env: Mapping[str, str], cwd: Path, within: float) -> None:
        """Run ``python -m transfer ARGS`` to its end (blocking: call it in a thread)."""
        screen = pyte.HistoryScreen(self.columns, self.lines, history=5000, ratio=0.5)
        stream = pyte.ByteStream(screen)
        child: pexpect.spawn[bytes] = pexpect.spawn(
            sys.executable,
            ["-m", "transfer", *args],
            cwd=str(cwd),
            env=dict(env),
            dimensions=(self.lines, self.columns),
        )
        deadline = time.monotonic() + within
        chunks: list[bytes] = []
        try:
            while time.monotonic() < deadline:
                try:
                    chunk = child.read_nonblocking(65536, timeout=0.2)
                except pexpect.TIMEOUT:
                    continue
                except pexpect.EOF:
                    break
                chunks.append(chunk)
                stream.feed(chunk)
                self.screens.append(
                    [_text(screen.buffer[y], self.columns) for y in range(self.lines)]
                )
            else:
                raise AssertionError(f"the command did not finish within {within}s")
        finally:
            child.close(force=True)
        self.raw = b"".join(chunks)
        self.status = child.exitstatus
        history = [_text(line, self.columns) for line in screen.history.top]
        self.final = history + [_text(screen.buffer[y], self.columns) for y in range(self.lines)]
