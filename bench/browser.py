"""Device publish -> browser DOM update latency through the dashboard example, one process:

    python -m bench.browser [--devices 100] [--rate 10] [--seconds 30] [--warmup 10]

A private Mosquitto; the dashboard (``harness.dashboard``: ``python manage.py
mqttbridge run --http``, HTTP, WebSocket and MQTT in one process, SQLite); the
page open in headless Chromium (Debian's, ``harness.browser``); then ``mqttbridge simulate``
with ``--devices`` generic devices at ``--rate`` readings each per second (100 x 10 = 1,000
msg/s by default).

Each reading carries ``ts``, the device's send time in ms (the simulator's ``unix_ms``
timestamp, taken as the payload is built). A script injected before the page's own
(``harness.browser.LATENCY_PROBE``) wraps the page's WebSocket: each reading of a ``readings``
batch (or a single ``reading`` event) is noted per device as it arrives, and a MutationObserver
records ``performance.timeOrigin + performance.now()`` when that device's ``.celsius`` text
changes, which the page does in the same task. Latency is that moment minus ``ts`` (same
machine, same wall clock); the bridge's own ``received`` stamp in the event splits it into
device -> consumer and consumer -> DOM. ``--viewer socket`` reads the page's WebSocket with a
Python client instead of Chromium: the server's share alone. Readings of the first ``--warmup``
seconds (devices connecting, the page fetching each new card's history) are left out.
Also reported: readings arrived at the page and updated in the DOM against those sent,
and CPU time per message of the bridge process (psutil), of Chromium, the simulator and
Mosquitto.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
from playwright.sync_api import expect

from bench.cli import RESULTS
from bench.common import percentile
from bench.report import cpu_seconds, machine_info, write_json
from harness.browser import LATENCY_PROBE, chromium
from harness.dashboard import DashboardProcess, SimulatedDevices
from harness.processes import MosquittoProcess, find_binary

__all__ = ["main"]


def _chromium_cpu() -> float:
    """CPU seconds of the Chromium processes this process started (through Playwright)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            if "chrom" in child.name():
                times = child.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {name: cpu_seconds(pid) for name, pid in pids.items()}
    out["chromium"] = _chromium_cpu()
    return out


def _stored(database: Path) -> int:
    """Readings the dashboard has committed so far: what the bridge process has handled."""
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT COUNT(*) FROM telemetry_reading").fetchone()[0])


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 0.50),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else float("nan"),
    }


class SocketViewer:
    """``--viewer socket``: the page's WebSocket feed read by a Python client instead of a
    browser, to tell the server's share of the latency from the browser's."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        origin = url.rstrip("/")
        self.socket = connect(origin.replace("http", "ws", 1) + "/ws/dashboard/", origin=origin)
        self.samples: list[list[float]] = []
        self.arrived = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):
            for text in self.socket:
                now = time.time() * 1000
                event = json.loads(text)
                kind = event.get("type")
                batch = event.get("readings") if kind == "readings" else [event]
                if kind not in ("reading", "readings") or not isinstance(batch, list):
                    continue
                for one in batch:
                    if isinstance(one.get("ts"), int | float):
                        self.arrived += 1
                        self.samples.append([one["ts"], one["received"], now, now])

    def close(self) -> None:
        self.socket.close()
        self.thread.join(5)


@contextlib.contextmanager
def viewer(kind: str, url: str) -> Iterator[Callable[[], dict[str, Any]]]:
    """Open the dashboard in ``kind`` ("browser" or "socket"); yields a function returning
    ``{"arrived", "samples", "cards"}`` so far."""
    if kind == "socket":
        client = SocketViewer(url)
        try:
            yield lambda: {"arrived": client.arrived, "samples": client.samples, "cards": None}
        finally:
            client.close()
        return
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.add_init_script(LATENCY_PROBE)
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ws", "open", timeout=60_000)

        def read() -> dict[str, Any]:
            probe = page.evaluate("({arrived: __latency.arrived, samples: __latency.samples})")
            return {**probe, "cards": page.locator("[data-device]").count()}

        yield read


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    total = args.warmup + args.seconds
    with (
        MosquittoProcess(workdir=workdir / "mosquitto") as broker,
        DashboardProcess(workdir / "dashboard", broker.url) as dashboard,
        viewer(args.viewer, dashboard.url) as read_probe,
    ):
        summary_path = workdir / "simulate.json"
        extra = ("--duration", str(total + 2), "--json", str(summary_path), "--qos", "0")
        started = time.time()
        with SimulatedDevices(
            workdir / "devices", broker.url, devices=args.devices, rate=args.rate, extra=extra
        ) as fleet:
            pids = {"bridge": dashboard.pid, "simulator": fleet.pid}
            if broker.pid:
                pids["mosquitto"] = broker.pid
            time.sleep(args.warmup)
            window_start = time.time()
            cpu_before, stored_before = _cpu(pids), _stored(dashboard.database)
            time.sleep(args.seconds)
            window_end = time.time()
            cpu_after, stored_after = _cpu(pids), _stored(dashboard.database)
            load = os.getloadavg()
            fleet.wait(timeout=60)
        time.sleep(1)  # the last readings reach the page
        probe = read_probe()
    sent = json.loads(summary_path.read_text())["telemetry_published"]
    samples = probe["samples"]
    window = [s for s in samples if window_start * 1000 <= s[0] < window_end * 1000]
    cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
    elapsed = window_end - window_start
    # Messages the bridge handled in the window: readings it stored (it stores every one).
    messages = stored_after - stored_before
    return {
        "devices": args.devices,
        "rate_per_device": args.rate,
        "target_msg_per_s": args.devices * args.rate,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "started": started,
        "sent": sent,
        "arrived_at_page": probe["arrived"],
        "dom_updates": len(samples),
        "viewer": args.viewer,
        "cards": probe["cards"],
        "stored_per_s": messages / elapsed,
        "dom_per_s": len(window) / elapsed,
        "latency_ms": _stats([s[3] - s[0] for s in window]),
        "device_to_consumer_ms": _stats([s[1] - s[0] for s in window]),
        "consumer_to_dom_ms": _stats([s[3] - s[1] for s in window]),
        "socket_to_dom_ms": _stats([s[3] - s[2] for s in window]),
        "cpu_seconds": cpu,
        "cpu_ms_per_message": {k: 1000 * v / max(messages, 1) for k, v in cpu.items()},
        "load_at_end": load,
        # [ts, received, arrived, dom] per reading of the window, ms: for plots and spikes.
        "samples": window,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.browser",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="readings per device per s")
    parser.add_argument("--seconds", type=float, default=30.0, help="the measured window")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds left out first")
    parser.add_argument(
        "--viewer",
        choices=("browser", "socket"),
        default="browser",
        help="the page in headless Chromium, or only its WebSocket read by a Python client",
    )
    args = parser.parse_args(argv)
    machine = machine_info(find_binary("mosquitto", "MOSQUITTO_BIN"), None)
    print("machine: " + json.dumps(machine), flush=True)
    print(f"load before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mqttbridge-browser-bench-") as tmp:
        result = run(args, Path(tmp))
    result["machine"] = machine
    lat = result["latency_ms"]
    print(
        f"\n{result['target_msg_per_s']:g} msg/s over {result['devices']} devices, "
        f"{result['seconds']:g} s measured: the bridge stored {result['stored_per_s']:.0f}/s, "
        f"the page showed {result['dom_per_s']:.0f}/s\n"
        f"device -> DOM latency ms: p50 {lat['p50']:.1f}, p99 {lat['p99']:.1f}, "
        f"max {lat['max']:.1f}"
    )
    for part in ("device_to_consumer_ms", "consumer_to_dom_ms", "socket_to_dom_ms"):
        s = result[part]
        print(f"  {part}: p50 {s['p50']:.1f}, p99 {s['p99']:.1f}, max {s['max']:.1f}")
    print(
        f"readings sent {result['sent']}, arrived at the page {result['arrived_at_page']}, "
        f"DOM updates {result['dom_updates']}; cards {result['cards']}"
    )
    print(
        "CPU ms per message stored: "
        + ", ".join(f"{k} {v:.3f}" for k, v in result["cpu_ms_per_message"].items())
    )
    out = RESULTS / f"browser-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json(out, result)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
