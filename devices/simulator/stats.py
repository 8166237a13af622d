"""What a fleet did, counted as it happens, for the live view and the ``--json`` summary."""

from __future__ import annotations

import collections
import time
from typing import Any

__all__ = ["Stats", "percentile"]

_LATENCY_SAMPLES = 100_000  # a bounded record: enough for p99 over any run


def percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Stats:
    def __init__(self, devices: int) -> None:
        self.devices = devices
        self.started = time.monotonic()
        self.published = 0  # telemetry sent
        self.other_published = 0  # birth messages, replies, offline notices
        self.skipped_offline = 0  # telemetry due while the device was disconnected
        self.acked = 0
        self.commands = 0
        self.commands_rejected = 0
        self.connected = 0
        self.connects = 0
        self.reconnects = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.latencies_ms: list[float] = []
        self.bad_refs = 0
        # How far behind its schedule the fleet published: a fleet too big for its CPU shows
        # here first (the grid keeps the count exact, the messages come late).
        self.max_lag = 0.0
        self.late_messages = 0  # over 100 ms behind

    def late(self, lag: float) -> None:
        if lag > self.max_lag:
            self.max_lag = lag
        if lag > 0.1:
            self.late_messages += 1

    def device_online(self, reconnect: bool) -> None:
        self.connected += 1
        self.connects += 1
        if reconnect:
            self.reconnects += 1

    def round_trip(self, ref: Any) -> None:
        try:
            sent = int(ref)
        except (TypeError, ValueError):
            self.bad_refs += 1
            return
        if len(self.latencies_ms) < _LATENCY_SAMPLES:
            self.latencies_ms.append((time.perf_counter_ns() - sent) / 1e6)

    def latency(self) -> dict[str, float | None]:
        ordered = sorted(self.latencies_ms)
        return {
            "count": len(ordered),
            "p50_ms": percentile(ordered, 0.50),
            "p90_ms": percentile(ordered, 0.90),
            "p99_ms": percentile(ordered, 0.99),
            "max_ms": ordered[-1] if ordered else None,
        }

    def summary(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        return {
            "devices": self.devices,
            "elapsed_s": round(elapsed, 3),
            "telemetry_published": self.published,
            "telemetry_rate": round(self.published / elapsed, 1) if elapsed else 0.0,
            "other_published": self.other_published,
            "puback_received": self.acked,
            "skipped_offline": self.skipped_offline,
            "connected": self.connected,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "commands_handled": self.commands,
            "commands_rejected": self.commands_rejected,
            "errors": dict(self.errors),
            "max_lag_ms": round(self.max_lag * 1000, 1),
            "late_messages": self.late_messages,
            "round_trip": self.latency(),
        }
