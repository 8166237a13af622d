"""Headless Chromium, driven by Playwright's Python package, for the browser tests, the
dashboard screenshot and the browser latency benchmark.

The browser is Debian's ``chromium`` package (``/usr/bin/chromium``, or ``$CHROMIUM_BIN``),
never one Playwright downloads: the machines running this have no internet, and
``playwright install`` is not part of any setup here.

    with chromium() as browser:
        page = browser.new_page()
        page.goto(url)

Playwright's sync API runs its own event loop on the calling thread (in a greenlet); call it
from plain functions and sync tests, not from inside a running asyncio loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from harness.processes import ServiceBinaryNotFound, find_binary

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["CHROMIUM_ENV", "chromium", "find_chromium"]

CHROMIUM_ENV = "CHROMIUM_BIN"


def find_chromium() -> str:
    """The Chromium executable; :class:`ServiceBinaryNotFound` names the package if missing."""
    # Debian's package installs /usr/bin/chromium (a wrapper script around /usr/lib/chromium).
    found = find_binary("chromium", CHROMIUM_ENV)
    if found is None:
        raise ServiceBinaryNotFound("chromium", "chromium", CHROMIUM_ENV)
    return found


@contextlib.contextmanager
def chromium(*, executable: str | None = None) -> Iterator[Browser]:
    """A headless Chromium for the duration of the block; closed (with Playwright) after it."""
    from playwright.sync_api import sync_playwright

    path = executable or find_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path,
            headless=True,
            # No GPU on these machines; software rendering without probing for one.
            args=["--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()
