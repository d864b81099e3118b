"""Logging set-up: structlog to stderr (or ``--log-file``), compact console lines or JSON lines.

Console lines are the default, terminal or not (colours only on a terminal); JSON only when
asked for (``--log-format json`` or ``[log] format = "json"``; ``"auto"`` is read as console, so
old configs still load).  Every rendered line goes to one ``LogSink``: while the live display is
up, the display routes the sink's terminal lines through its own console (``routed_through``),
so they scroll above the live region instead of landing inside it.

Context (job, image, target, step) is bound where it is known, so every line carries it.  No code
path logs a secret: credentials travel as ``transfer.config.settings.Secret``, which prints as
``***``, the client logs URL paths, never headers, and tracebacks are rendered without locals.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from transfer import log
from transfer.cli.stats import short_ids
from transfer.config.settings import LogFormat, LogLevel

if TYPE_CHECKING:
    from structlog.typing import Processor

LEVELS = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}


class LogSink:
    """Where rendered lines go: a stream, or a printer while the live display owns the terminal."""

    def __init__(self, stream: TextIO, *, terminal: bool) -> None:
        self.stream = stream
        self.terminal = terminal  # the stream is the terminal the live display draws on
        self._printer: Callable[[str], None] | None = None

    def write(self, line: str) -> None:
        printer = self._printer
        if printer is not None:
            printer(line)
            return
        self.stream.write(line + "\n")
        self.stream.flush()

    @contextmanager
    def routed_through(self, printer: Callable[[str], None]) -> Iterator[None]:
        """Lines meant for the terminal go to ``printer`` until the block ends (a log file's
        lines stay in the file)."""
        if not self.terminal:
            yield
            return
        before, self._printer = self._printer, printer
        try:
            yield
        finally:
            self._printer = before


class SinkLogger:
    """The structlog logger behind every bound logger: hands each rendered line to the sink."""

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink

    def msg(self, message: str) -> None:
        self._sink.write(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


_SINK = LogSink(sys.stderr, terminal=False)


def current_sink() -> LogSink:
    """The sink ``configure_logging`` set up last (stderr, not a terminal, before any)."""
    return _SINK


def _short_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """On a terminal, for 80 columns: image ids cut short (``stats.short_ids``), and no job
    name (jobs run one after another, each announced by a ``job NAME: ...`` line)."""
    event.pop("job", None)
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = short_ids(value)
    return event


def _processors(
    structlog: ModuleType, fmt: LogFormat, *, colors: bool, short: bool
) -> list[Processor]:
    common: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if fmt is LogFormat.JSON:
        return [
            *common,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    renderer = structlog.dev.ConsoleRenderer(
        colors=colors,
        pad_event_to=0,
        pad_level=False,
        exception_formatter=structlog.dev.plain_traceback,
    )
    stamp = structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False)
    return [*common, stamp, *([_short_ids] if short else []), renderer]


def configure_logging(
    level: LogLevel = LogLevel.INFO,
    fmt: LogFormat = LogFormat.CONSOLE,
    stream: TextIO | None = None,
    *,
    log_file: Path | None = None,
) -> None:
    """Log at ``level`` in ``fmt`` to ``log_file`` (appended, no colours), else to ``stream``
    (default stderr).  ``OSError`` if the log file cannot be opened."""
    global _SINK
    if log_file is not None:
        out: TextIO = log_file.open("a", encoding="utf-8")  # open for the process's life
        terminal = False
    else:
        out = stream or sys.stderr
        terminal = out.isatty()
    sink = _SINK = LogSink(out, terminal=terminal)
    console = LogFormat.JSON if fmt is LogFormat.JSON else LogFormat.CONSOLE

    def setup(structlog: ModuleType) -> None:
        structlog.configure(
            processors=_processors(structlog, console, colors=terminal, short=terminal),
            wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
            logger_factory=lambda *_: SinkLogger(sink),
            cache_logger_on_first_use=False,
        )

    # applied when structlog is loaded (``transfer.log``): at the first line, or while a run's
    # token requests are in flight
    log.configure(setup)
