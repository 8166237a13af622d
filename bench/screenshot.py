"""Regenerate docs/dashboard.png, the dashboard example as a user sees it:

    make screenshot        (or: .venv/bin/python -m bench.screenshot [--out FILE])

A private Mosquitto, the dashboard (``harness.dashboard``: ``python manage.py
mqttbridge run --http``), five simulated generic devices, and a sixth that is
killed so that one card shows ``offline``. Once every live chart has ``--points`` points, the
fan button of one device is clicked and its acknowledgement awaited; then headless Chromium
(Debian's, ``harness.browser``) takes the screenshot.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from playwright.sync_api import expect

from harness.browser import chromium
from harness.children import ROOT
from harness.dashboard import DashboardProcess, SimulatedDevices
from harness.processes import MosquittoProcess

__all__ = ["main"]

OUT = ROOT / "docs" / "dashboard.png"
VIEWPORT = {"width": 1280, "height": 720}  # full_page: as tall as the cards need


def take(out: Path, devices: int, points: int, rate: float, workdir: Path) -> None:
    with (
        MosquittoProcess(workdir=workdir / "mosquitto") as broker,
        DashboardProcess(workdir / "dashboard", broker.url) as dashboard,
        SimulatedDevices(workdir / "devices", broker.url, devices=devices, rate=rate) as fleet,
        SimulatedDevices(workdir / "lost", broker.url, prefix="sensor-lost", rate=rate) as lost,
        chromium() as browser,
    ):
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)
        page.goto(dashboard.url)
        expect(page.locator("body")).to_have_attribute("data-ws", "open")
        # The lost device: online with a few readings, then gone (its last will).
        lost_row = page.locator(f'[data-device="{lost.ids[0]}"]')
        expect(lost_row.locator(".status")).to_have_text("online")
        lost.kill()
        expect(lost_row.locator(".status")).to_have_text("offline")
        page.wait_for_function(
            """([ids, n]) => ids.every((id) => {
                const line = document.querySelector(`[data-device="${id}"] svg.chart polyline`);
                return (line?.getAttribute("points") || "").trim().split(/\\s+/).length >= n;
            })""",
            arg=[fleet.ids, points],
            polling=500,
        )
        first = page.locator(f'[data-device="{fleet.ids[0]}"]')
        first.locator('button.command[data-fan="on"]').click()
        expect(first.locator(".ack")).to_contain_text("fan on")
        expect(first.locator(".fan")).to_have_text("on")  # the readings since say so too
        page.mouse.move(0, 0)  # no hover effect in the picture
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        dashboard.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screenshot", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--points", type=int, default=40, help="chart points to wait for")
    parser.add_argument("--rate", type=float, default=4.0, help="readings per device per second")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mqttbridge-screenshot-") as tmp:
        take(args.out, args.devices, args.points, args.rate, Path(tmp))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
