"""7. Scale-out: one bridge against two sharing the routes (``broker.shared_group``).

The throughput scenario's load and counting consumer (``bench/{device_id}/data`` over 100
devices, MQTT 3.1.1), against three set-ups on the run's Mosquitto, interleaved:

* one bridge, plain subscription (as in the throughput scenario);
* one bridge in a shared group (``$share/bench/bench/+/data``): what the group costs the broker;
* two bridges in the same group: the broker hands each message to one of them.

A member of the pair cannot know when it has its share, so every bridge reports ``done`` after
1.5 s without a message, with the CLOCK_MONOTONIC times of its first and last message: the
rate of a set-up is all messages over first-to-last across its bridges. The CPU each bridge,
the broker, the publisher and the machine used in that same window is sampled (psutil):
on two cores it says what limits the pair.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import threading
import time
from contextlib import ExitStack
from typing import Any

import psutil

from bench.procs import BenchError, Child
from bench.report import Row, cpu_seconds, machine_busy_seconds
from bench.scenarios.context import Context, log, ratio

GROUP = "7 scale-out"
SHARE = "bench"
SETUPS = (
    ("1 bridge", 1, False),
    ("1 bridge, shared group", 1, True),
    ("2 bridges, shared group", 2, True),
)


class CpuSampler:
    """CPU seconds of some processes and of the machine, every 20 ms, on a thread.

    The bridges time their first and last message with CLOCK_MONOTONIC, which is what
    ``time.monotonic()`` reads here too, so ``window()`` interpolates the CPU used between
    exactly those two instants: process start-up and the idle wait at the end stay out.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.pids: dict[str, int] = {}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            values = {"machine": machine_busy_seconds()}
            for name, pid in list(self.pids.items()):
                with contextlib.suppress(psutil.Error):
                    values[name] = cpu_seconds(pid)
            self.samples.append((time.monotonic(), values))
            self._stop.wait(self.interval)

    def _at(self, name: str, when: float) -> float:
        points = [(t, v[name]) for t, v in self.samples if name in v]
        if not points:
            return float("nan")
        if when <= points[0][0]:
            return points[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(points):
            if t0 <= when <= t1:
                return v0 + (v1 - v0) * (when - t0) / (t1 - t0) if t1 > t0 else v1
        return points[-1][1]

    def window(self, start: float, end: float) -> dict[str, float]:
        """Cores each process (and the machine) kept busy from ``start`` to ``end``."""
        names = {name for _, values in self.samples for name in values}
        return {n: (self._at(n, end) - self._at(n, start)) / (end - start) for n in names}


def _sample(ctx: Context, label: str, bridges: int, shared: bool, qos: int) -> dict[str, Any]:
    n = ctx.sizes.scaleout
    args = [
        "--mode", "count", "--count", str(n), "--qos", str(qos),
        "--idle", "1.5", "--timeout", "90",
    ]  # fmt: skip
    module = "bench.shared_runner" if shared else "bench.bridge_runner"
    if shared:
        args = ["--group", SHARE, *args]
    assert ctx.broker.pid is not None
    with ExitStack() as stack:
        subs: list[Child] = [
            stack.enter_context(ctx.child(f"scaleout-bridge{i}", module, args))
            for i in range(bridges)
        ]
        for sub in subs:
            sub.expect("ready", timeout=30)
        sampler = stack.enter_context(CpuSampler())
        sampler.pids = {f"bridge{i}": sub.pid for i, sub in enumerate(subs)}
        sampler.pids["broker"] = ctx.broker.pid
        load = ["--count", str(n), "--qos", str(qos)]
        with ctx.child("scaleout-publisher", "bench.publisher", load) as pub:
            sampler.pids["publisher"] = pub.pid
            published = pub.expect("done", timeout=120)
        results = [sub.expect("done", timeout=120) for sub in subs]
    counted = [r["count"] for r in results]
    total = sum(counted)
    active = [r for r in results if r["count"]]
    if not active:
        raise BenchError(f"{label}: no bridge handled a message")
    first, last = min(r["first_at"] for r in active), max(r["last_at"] for r in active)
    seconds = last - first
    rate = (total - 1) / seconds if total > 1 and seconds > 0 else float("nan")
    used = sampler.window(first, last)
    ours = sum(v for k, v in used.items() if k != "machine")
    cores = {
        "bridges": [used.get(f"bridge{i}", float("nan")) for i in range(bridges)],
        "broker": used.get("broker", float("nan")),
        "publisher": used.get("publisher", float("nan")),
        "machine": used["machine"],
        # Loopback TCP, the parent's sampling and any other process on the machine.
        "other": used["machine"] - ours,
    }
    sample = {
        "label": label,
        "qos": qos,
        "count": total,
        "per_bridge": counted,
        "complete": total == n,
        "seconds": seconds,
        "rate": rate if total == n else float("nan"),
        "cores": cores,
        "publisher": published,
    }
    split = " + ".join(f"{c:,}" for c in counted)
    note = "" if total == n else f" INCOMPLETE: {total}/{n}"
    log(f"qos{qos} {label:<24} {rate:>9,.0f} msg/s ({split}) cores: " + _cores(cores) + note)
    return sample


def _cores(cores: dict[str, Any]) -> str:
    return (
        "bridges " + " + ".join(f"{c:.2f}" for c in cores["bridges"])
        + f", broker {cores['broker']:.2f}, publisher {cores['publisher']:.2f}"
        + f", other {cores['other']:.2f}; machine {cores['machine']:.2f} of 2"
    )  # fmt: skip


def scaleout(ctx: Context) -> list[Row]:
    s = ctx.sizes
    samples: dict[str, list[dict[str, Any]]] = {}
    for qos in (1, 0):
        for _ in range(s.repeat):  # interleaved, so drift on the machine hits all alike
            for label, bridges, shared in SETUPS:
                samples.setdefault(f"qos{qos} {label}", []).append(
                    _sample(ctx, label, bridges, shared, qos)
                )
    ctx.data["scaleout"] = samples
    rows: list[Row] = []
    for qos in (1, 0):
        medians = {}
        for label, _, _ in SETUPS:
            runs = samples[f"qos{qos} {label}"]
            medians[label] = _median(runs, "rate")
            cores = _cores(runs[_median_index(runs)]["cores"])
            rows.append(
                Row(GROUP, f"QoS {qos}, {label}", medians[label], "msg/s",
                    note=f"median of {len(runs)} x {s.scaleout:,}; cores of that run: {cores}")
            )  # fmt: skip
        rows.append(
            Row(GROUP, f"QoS {qos}, 2 bridges / 1 bridge (shared)",
                ratio(medians["2 bridges, shared group"], medians["1 bridge, shared group"]), "")
        )  # fmt: skip
    return rows


def _median(runs: list[dict[str, Any]], key: str) -> float:
    if not all(r["complete"] for r in runs):
        return float("nan")  # messages lost: a rate over what arrived would flatter
    return statistics.median(r[key] for r in runs)


def _median_index(runs: list[dict[str, Any]]) -> int:
    """The sample with the median rate, whose CPU figures the row shows."""
    order = sorted(range(len(runs)), key=lambda i: runs[i]["rate"] if runs[i]["complete"] else 0)
    return order[len(order) // 2]
