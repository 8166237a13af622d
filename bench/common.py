"""What the benchmark children share: the JSON-lines report, the message counter, peak RSS.

Child processes speak to ``bench.cli`` only through ``emit`` (``harness.events``): one JSON
object per line on stdout, ``{"event": "ready", ...}`` then ``{"event": "done", ...}``. Nothing
here imports psutil or the parent's process machinery: a bridge child's memory is measured.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from typing import Any

from harness.events import emit

__all__ = ["Counter", "emit", "peak_rss_kb", "percentile"]


class Counter:
    """Counts handled messages; calls ``on_done`` once when ``target`` is reached.

    Rates are taken from the first to the last message handled, so connection set-up and the
    time the publisher needs to get going are not part of them.
    """

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.first = 0.0
        self.last = 0.0
        self.on_done: Callable[[], None] | None = None

    def hit(self) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now
        if self.count == self.target and self.on_done is not None:
            self.on_done()

    def result(self, *, complete: bool = True) -> dict[str, Any]:
        seconds = self.last - self.first
        rate = (self.count - 1) / seconds if self.count > 1 and seconds > 0 else 0.0
        return {
            "count": self.count,
            "target": self.target,
            "complete": complete,
            "seconds": seconds,
            "rate": rate,
            # perf_counter() is CLOCK_MONOTONIC on Linux, so these compare across processes.
            "first_at": self.first,
            "last_at": self.last,
        }

    def idle_for(self, now: float) -> float:
        """Seconds since the last message (0 before the first: the publisher may be late)."""
        return now - self.last if self.count else 0.0


def peak_rss_kb() -> int:
    """The most this process has ever been resident, in KiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (``fraction`` 0.99 for p99)."""
    if not sorted_values:
        return float("nan")
    rank = min(max(1, math.ceil(fraction * len(sorted_values))), len(sorted_values))
    return sorted_values[rank - 1]
