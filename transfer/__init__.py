"""image-transfer: asynchronous bulk transfer and migration engine for NHN Cloud images.

structlog is imported here, first, without rich: its ``dev`` and ``tracebacks`` modules import
rich when they find it (for pretty tracebacks, which no log of ours renders), and rich with
pygments costs a start-up of 0.1 s or more.  Every command pays that before its first request;
rich itself is imported only by the live display, on a terminal.  A ``None`` in ``sys.modules``
makes ``import rich`` fail for the length of structlog's import, as if rich were not installed;
structlog then formats exceptions as plain text.
"""

import sys


def _import_structlog_without_rich() -> None:
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()

__version__ = "0.1.0"
