"""What the scenarios share: sizes, the run's services, and "one subscriber against one load".

Every measured run starts its subscriber (raw paho, the bridge or mqttasgi), waits for
``ready`` (subscriptions acknowledged), only then starts the publisher, and takes the
subscriber's ``done``: its rate runs from the first to the last message it handled.
"""

from __future__ import annotations

import collections
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import Child
from harness.processes import MosquittoProcess, RedisProcess

__all__ = ["BRIDGE", "RAW", "Context", "Sizes", "log", "measure", "median_rate", "ratio"]

RAW: tuple[str, list[str]] = ("bench.raw_subscriber", [])
BRIDGE: tuple[str, list[str]] = ("bench.bridge_runner", ["--mode", "count"])


@dataclass
class Sizes:
    """Message counts; ``quick()`` shrinks them so the smoke run ends within a minute."""

    throughput: int = 100_000
    mqttasgi: int = 2_000
    mqttasgi_seconds: float = 30.0
    app_under_bridge: int = 20_000
    roundtrip: int = 5_000
    roundtrip_warmup: int = 200
    instances: int = 10_000
    layer: int = 5_000
    profile: int = 100_000
    repeat: int = 3
    extras: bool = True  # the MQTT 5 rows and the diagnostics
    # Not in the default run (``python -m bench scaleout``).
    scaleout: int = 100_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            throughput=10_000, mqttasgi=200, mqttasgi_seconds=10.0, app_under_bridge=5_000,
            roundtrip=1_000, roundtrip_warmup=100, instances=1_000, layer=1_000,
            profile=20_000, repeat=1, extras=False, scaleout=20_000,
        )  # fmt: skip


@dataclass
class Context:
    broker: MosquittoProcess
    logdir: Path
    results_dir: Path
    stamp: str
    sizes: Sizes
    redis: RedisProcess | None = None
    data: dict[str, Any] = field(default_factory=dict)
    _names: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def port(self) -> str:
        return str(self.broker.port)

    def child(self, name: str, module: str, args: list[str], *, broker: bool = True) -> Child:
        """Start ``module``; ``broker`` passes it ``--port`` of this run's Mosquitto."""
        self._names[name] += 1
        full = ["--port", self.port, *args] if broker else args
        return Child(f"{name}-{self._names[name]}", module, full, self.logdir)


def log(message: str) -> None:
    print(f"  {message}", flush=True)


def measure(
    ctx: Context,
    label: str,
    subscriber: tuple[str, list[str]],
    count: int,
    *,
    qos: int = 0,
    protocol: str = "3.1.1",
    done_timeout: float = 120.0,
) -> dict[str, Any]:
    """Run ``subscriber`` (module, args) against ``count`` messages from the socket publisher."""
    module, args = subscriber
    args = [*args, "--count", str(count), "--qos", str(qos)]
    if module != "bench.mqttasgi_runner":  # mqttasgi speaks MQTT 3.1.1 only
        args += ["--protocol", protocol]
    exits_itself = module == "bench.bridge_runner"
    if exits_itself:
        args.append("--exit-when-done")
    with ctx.child(label, module, args) as sub:
        sub.expect("ready", timeout=30)
        load = ["--count", str(count), "--qos", str(qos), "--protocol", protocol]
        with ctx.child("publisher", "bench.publisher", load) as pub:
            published = pub.expect("done", timeout=done_timeout)
            result = sub.expect("done", timeout=done_timeout)
        if exits_itself:
            result["shutdown_seconds"] = sub.expect("stopped", timeout=30)["shutdown_seconds"]
            sub.stop(grace=15)
    result["publisher"] = published
    note = "" if result["complete"] else f" INCOMPLETE: {result['count']}/{count}"
    log(
        f"{label:<34} {result['rate']:>10,.0f} msg/s"
        f"  ({result['count']} in {result['seconds']:.2f} s){note}"
    )
    return result


def median_rate(samples: list[dict[str, Any]]) -> float:
    if not all(s["complete"] for s in samples):
        return float("nan")  # messages were lost: a rate over what arrived would flatter
    return statistics.median(s["rate"] for s in samples)


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")
