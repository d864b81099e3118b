"""A real browser for the live page's tests: the operating system's Chromium, driven by
playwright (never a browser playwright downloads: ``make browser`` installs Debian's).

Without Chromium or playwright the tests skip with the reason, unless
``IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1`` (CI sets it): then they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.pg.conftest import _unavailable

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = Path(os.environ.get("IMAGE_TRANSFER_CHROMIUM", "/usr/bin/chromium"))
# Headless, and nothing that would reach the network on its own.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where to copy the screenshot too (the README's ``docs/live-page.png``), when set.
SCREENSHOT_COPY = "IMAGE_TRANSFER_SCREENSHOT"


def require_browser() -> None:
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM}: `make browser` installs Debian's")
    if importlib.util.find_spec("playwright") is None:
        _unavailable("playwright is not installed: pip install -e '.[test]'")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def keep_screenshot(path: Path) -> None:
    """Copy a screenshot to where ``IMAGE_TRANSFER_SCREENSHOT`` says, if it says."""
    target = os.environ.get(SCREENSHOT_COPY)
    if target:
        shutil.copyfile(path, target)
