"""The project's one door to structlog: loggers that load it on their first line, and a set-up
that waits for it.

structlog and its processors take about 10 ms to import, and every command would pay them
before its first request.  ``get_logger`` returns a ``Logger`` that needs no import; the first
line logged (or ``load()``, which ``run`` calls in the worker thread that imports the engine
while the token requests are in flight) imports structlog and applies the set-up that
``configure`` recorded.  So no line is ever rendered with structlog's defaults (to stdout),
whichever thread logs first.

structlog is imported without rich: its ``dev`` and ``tracebacks`` modules import rich when they
find it (for pretty tracebacks, which no log of ours renders), and rich with pygments costs 0.1 s
or more.  A ``None`` in ``sys.modules`` makes ``import rich`` fail for the length of structlog's
import, as if rich were not installed; structlog then formats exceptions as plain text.  rich is
imported only by the live display, on a terminal.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

Setup = Callable[[ModuleType], None]

_lock = threading.Lock()
_structlog: ModuleType | None = None
_setup: Setup | None = None


def _import_without_rich() -> ModuleType:
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog
    finally:
        del sys.modules["rich"]
    return structlog


def load() -> ModuleType:
    """structlog, imported and set up (``configure``) on the first call, from any thread."""
    module = _structlog
    if module is not None:
        return module
    return _load()


def _load() -> ModuleType:
    global _structlog
    with _lock:
        if _structlog is None:
            module = _import_without_rich()
            if _setup is not None:
                _setup(module)
            _structlog = module
        return _structlog


def configure(setup: Setup) -> None:
    """Set logging up with ``setup(structlog)``: now if structlog is loaded, else as it loads."""
    global _setup
    with _lock:
        _setup = setup
        if _structlog is not None:
            setup(_structlog)


class Logger:
    """A structlog logger by name and bound context, resolved at each line (so a set-up made
    after it was created, or a test's ``capture_logs``, applies to it)."""

    __slots__ = ("_context", "_name")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}

    def bind(self, **values: Any) -> Logger:
        return Logger(self._name, {**self._context, **values})

    def _line(self, level: str, event: str, values: dict[str, Any]) -> None:
        logger = load().get_logger(self._name, **self._context)
        getattr(logger, level)(event, **values)

    def debug(self, event: str, **values: Any) -> None:
        self._line("debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        self._line("info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._line("warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        self._line("error", event, values)

    def exception(self, event: str, **values: Any) -> None:
        self._line("exception", event, values)


def get_logger(name: str) -> Logger:
    """The logger of ``name`` (a module's dotted name), without importing structlog."""
    return Logger(name)
