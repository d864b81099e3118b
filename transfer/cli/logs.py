"""Logging set-up: structlog to stderr, human console lines or JSON lines.

Context (job, image, target, step) is bound where it is known, so every line carries it.  No code
path logs a secret: credentials travel as ``transfer.config.settings.Secret``, which prints as
``***``, and the client logs URL paths, never headers.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from transfer.config.settings import LogFormat, LogLevel

LEVELS = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}


def configure_logging(
    level: LogLevel = LogLevel.INFO,
    fmt: LogFormat = LogFormat.AUTO,
    stream: TextIO | None = None,
) -> None:
    out = stream or sys.stderr
    if fmt is LogFormat.AUTO:
        fmt = LogFormat.CONSOLE if out.isatty() else LogFormat.JSON
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt is LogFormat.JSON
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
