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

__all__ = ["CHROMIUM_ENV", "LATENCY_PROBE", "chromium", "find_chromium"]

CHROMIUM_ENV = "CHROMIUM_BIN"

# For ``page.add_init_script``: when did each reading reach the DOM? It wraps the page's
# WebSocket (our listener, added in the constructor, runs before the page's own) and notes each
# ``{"type": "reading", "device_id", "ts", "received"}`` event per device (or each of a
# ``{"type": "readings", "readings": [...]}`` batch); a MutationObserver,
# called at the microtask checkpoint right after the page's handler changed that device's
# ``.celsius``, records ``[ts, received, arrived, dom]`` in ms of the wall clock
# (performance.timeOrigin + performance.now()) in ``window.__latency.samples``. Readings the page
# shows in one update (coalesced) all get that update's time. The dashboard contract's DOM and
# events: see examples/dashboard.
LATENCY_PROBE = """(() => {
    const now = () => performance.timeOrigin + performance.now();
    const probe = (window.__latency = { arrived: 0, samples: [], pending: new Map() });
    const Native = window.WebSocket;
    // Our listener is added in the constructor, so it runs before the page's own.
    window.WebSocket = class extends Native {
        constructor(...args) {
            super(...args);
            this.addEventListener("message", (message) => {
                let event;
                try { event = JSON.parse(message.data); } catch { return; }
                // One reading, or several in one message ({"type": "readings", "readings": []}).
                const readings = event.type === "readings" ? event.readings : [event];
                if (!Array.isArray(readings)) return;
                const at = now();
                for (const reading of readings) {
                    if (reading.type === "status" || typeof reading.ts !== "number") continue;
                    if (event.type !== "readings" && event.type !== "reading") continue;
                    probe.arrived += 1;
                    const list = probe.pending.get(reading.device_id) || [];
                    list.push([reading.ts, reading.received, at]);
                    probe.pending.set(reading.device_id, list);
                }
            });
        }
    };
    // Runs at the microtask checkpoint right after the page's handler changed the DOM.
    new MutationObserver((records) => {
        const at = now();
        for (const record of records) {
            const node = record.target;
            const target = node.nodeType === 1 ? node : node.parentElement;
            if (!target || !target.classList.contains("celsius")) continue;
            const card = target.closest("[data-device]");
            const list = card && probe.pending.get(card.dataset.device);
            if (!list || !list.length) continue;
            for (const [ts, received, arrived] of list) {
                probe.samples.push([ts, received, arrived, at]);
            }
            list.length = 0;
        }
    }).observe(document, { subtree: true, childList: true, characterData: true });
})();"""


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
