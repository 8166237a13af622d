"""What every benchmark process shares: the JSON-lines report, the message counter, RSS.

Child processes speak to ``bench.cli`` only through ``emit``: one JSON object per line on
stdout, ``{"event": "ready", ...}`` then ``{"event": "done", ...}``. Anything else they print
(logging) goes to stderr, which the parent keeps in a log file for failure messages.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Counter", "cpu_seconds", "emit", "percentile", "rss_kb"]


def emit(event: str, **fields: Any) -> None:
    """Report ``event`` to the parent process (flushed at once: the parent is waiting)."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


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


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of ``pid`` in KiB, from /proc/<pid>/status (``VmHWM`` for the peak)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ValueError(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may contain spaces; utime and stime follow its ")".
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (``fraction`` 0.99 for p99)."""
    if not sorted_values:
        return float("nan")
    rank = min(max(1, math.ceil(fraction * len(sorted_values))), len(sorted_values))
    return sorted_values[rank - 1]
