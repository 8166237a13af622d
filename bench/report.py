"""Rows of results, the table printed at the end, the machine description and the JSON file."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "CpuAccount",
    "Row",
    "busy_fraction",
    "code_fingerprint",
    "core_busy_seconds",
    "cpu_seconds",
    "format_table",
    "machine_busy_seconds",
    "machine_info",
    "rss_kb",
    "write_json",
]


@dataclass
class Row:
    """One measured value; ``target`` is ``(">=", 0.7)`` or ``("<=", 5.0)`` or None (context)."""

    scenario: str
    name: str
    value: float
    unit: str
    target: tuple[str, float] | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        if math.isnan(self.value):
            return "FAIL"
        op, bound = self.target
        ok = self.value >= bound if op == ">=" else self.value <= bound
        return "pass" if ok else "FAIL"

    def shown_value(self) -> str:
        return _number(self.value) + (f" {self.unit}" if self.unit else "")

    def shown_target(self) -> str:
        if self.target is None:
            return ""
        op, bound = self.target
        return f"{'≥' if op == '>=' else '≤'} {_number(bound)}" + (
            f" {self.unit}" if self.unit else ""
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"verdict": self.verdict}


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(rows: list[Row], *, markdown: bool = False) -> str:
    header = ("scenario", "measurement", "value", "target", "result")
    body = [(r.scenario, r.name, r.shown_value(), r.shown_target(), r.verdict) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in body
    ]
    return "\n".join(lines)


def _first_line(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(mosquitto_binary: str | None, redis_binary: str | None) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "paho-mqtt": _version("paho-mqtt"),
        "channels": _version("channels"),
        "channels-redis": _version("channels-redis"),
        "django": _version("django"),
        "mqttasgi": _version("mqttasgi"),
        "mosquitto": _first_line([mosquitto_binary, "-h"]) if mosquitto_binary else "not found",
        "redis": _first_line([redis_binary, "--version"]) if redis_binary else "not found",
    }


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` in KiB."""
    return int(psutil.Process(pid).memory_info().rss) // 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _cpu_model() -> str:
    # psutil has no processor name; platform.processor() is empty on Linux.
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, all cores: as ``psutil.cpu_percent``
    counts busy, without idle and iowait, and without guest time (already in user time)."""
    return _busy(psutil.cpu_times())


def core_busy_seconds() -> list[float]:
    """:func:`machine_busy_seconds` of each core, by core number."""
    return [_busy(t) for t in psutil.cpu_times(percpu=True)]


def _busy(t: Any) -> float:
    return float(sum(t) - t.idle - t.iowait - t.guest - t.guest_nice)


class CpuAccount:
    """How much of the machine other processes took while we measured.

    System-wide busy time minus what this run used: this process, its reaped children
    (os.times) and the long-lived services (their CPU times). Children still
    running are not counted, so take ``foreign_share`` only when a scenario's children are
    gone. Kernel time spent on loopback traffic is not always charged to a process, so a quiet
    machine reads a few percent.
    """

    def __init__(self, service_pids: list[int]) -> None:
        self.service_pids = service_pids
        self.cores = len(os.sched_getaffinity(0))
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        busy = machine_busy_seconds()
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        for pid in self.service_pids:
            # A stopped service's time is in children_* already.
            with contextlib.suppress(psutil.Error):
                ours += cpu_seconds(pid)
        return time.monotonic(), busy, ours

    def foreign_share(self) -> float:
        """Share of all cores (0..1) used by other processes since the last call."""
        start, end = self._start, self._sample()
        self._start = end
        elapsed = max(end[0] - start[0], 1e-9)
        foreign = (end[1] - start[1]) - (end[2] - start[2])
        return max(foreign, 0.0) / (elapsed * self.cores)


def busy_fraction(seconds: float = 1.0) -> float:
    """How busy all CPUs are (0..1) over ``seconds``: others' load skews us."""
    return float(psutil.cpu_percent(interval=seconds)) / 100


def code_fingerprint(root: Path) -> str:
    """A short hash of the code under test (bridge/ and consumers/), to tell runs apart."""
    digest = hashlib.sha256()
    for path in sorted([*root.glob("bridge/**/*.py"), *root.glob("consumers/**/*.py")]):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
