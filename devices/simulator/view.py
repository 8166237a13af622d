"""What a running fleet shows: a live table on a terminal (rich), a log line otherwise."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TextIO

__all__ = ["LiveView", "PlainLog"]

logger = logging.getLogger("mqttbridge.devices.simulator")


class _Rates:
    """Messages per second since the previous look."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.last = (time.monotonic(), stats.published, stats.commands)

    def sample(self) -> tuple[float, float]:
        now = time.monotonic()
        then, published, commands = self.last
        self.last = (now, self.stats.published, self.stats.commands)
        span = max(now - then, 1e-9)
        return (self.stats.published - published) / span, (self.stats.commands - commands) / span


class PlainLog:
    """One log line every few seconds: for pipes, CI and files."""

    interval = 5.0

    def __init__(self, fleet: Any, where: str, stream: TextIO) -> None:
        self.fleet = fleet
        self.where = where
        self.rates = _Rates(fleet.stats)

    async def run(self) -> None:
        devices = self.fleet.stats.devices
        noun = "device" if devices == 1 else "devices"
        logger.info("simulating %d %s against %s", devices, noun, self.where)
        while True:
            await asyncio.sleep(self.interval)
            stats = self.fleet.stats
            rate, _ = self.rates.sample()
            logger.info(
                "%d/%d connected, %.0f msg/s, %d published, %d commands, %d reconnects, %d errors",
                stats.connected,
                stats.devices,
                rate,
                stats.published,
                stats.commands,
                stats.reconnects,
                sum(stats.errors.values()),
            )

    def close(self) -> None:
        pass


class LiveView:
    """A table redrawn twice a second while the fleet runs."""

    def __init__(self, fleet: Any, where: str, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.fleet = fleet
        self.where = where
        self.rates = _Rates(fleet.stats)
        self.live = Live(console=Console(file=stream), auto_refresh=False, transient=False)
        self.live.start()

    async def run(self) -> None:
        while True:
            self.live.update(self._table(), refresh=True)
            await asyncio.sleep(0.5)

    def _table(self) -> Any:
        from rich.table import Table

        stats = self.fleet.stats
        rate, command_rate = self.rates.sample()
        table = Table(title=f"mqttbridge simulate → {self.where}", show_header=False)
        table.add_column(justify="right", style="bold")
        table.add_column()
        latency = stats.latency()
        rows = [
            ("connected", f"{stats.connected} / {stats.devices}"),
            ("telemetry", f"{stats.published}  ({rate:,.0f} msg/s)"),
            ("other publishes", str(stats.other_published)),
            ("commands handled", f"{stats.commands}  ({command_rate:,.1f}/s)"),
            ("reconnects", str(stats.reconnects)),
            ("skipped offline", str(stats.skipped_offline)),
            ("errors", ", ".join(f"{k}: {v}" for k, v in stats.errors.most_common(3)) or "0"),
        ]
        if latency["count"]:
            rows.append(
                (
                    "round trip",
                    f"p50 {latency['p50_ms']:.1f} ms  p99 {latency['p99_ms']:.1f} ms"
                    f"  ({latency['count']} samples)",
                )
            )
        for row in rows:
            table.add_row(*row)
        return table

    def close(self) -> None:
        self.live.update(self._table(), refresh=True)
        self.live.stop()
