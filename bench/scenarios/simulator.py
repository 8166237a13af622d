"""The device simulator (``mqttbridge simulate``): rate accuracy, connections held, round trip.

Run on request (``python -m bench simulator``): about three minutes. Every count is taken by an
independent subscriber (``bench.raw_subscriber``), never by the simulator's own counters.

* rate: 1,000 devices x 10 msg/s for 30 s = 300,000 messages, within 2 %; CPU per message.
* held: 10,000 devices, each its own TCP connection, client id and will, at 1 msg/s for 30 s.
* round trip: 100 devices x 10 msg/s = 1,000 msg/s through the bridge and ``FanConsumer``,
  which answers each reading; the simulator times device -> consumer -> device.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from bench.procs import ROOT, BenchError
from bench.report import Row
from bench.scenarios.context import Context, log

_S = "9 simulator"


def _fleet(ctx: Context, devices: int, rate: float, duration: float, *extra: str) -> dict[str, Any]:
    """Run a fleet against a counting subscriber; the result has both counts."""
    expected = int(devices * rate * duration)
    counter_args = [
        "--topic",
        "sensors/+/temperature",
        "--count",
        str(expected * 2),
        "--idle",
        "5",
        "--timeout",
        str(duration + 600),
    ]
    with ctx.child("sim-counter", "bench.raw_subscriber", counter_args) as counter:
        counter.expect("ready", timeout=30)
        fleet_args = [
            "--devices",
            str(devices),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            *extra,
        ]
        with ctx.child("sim-fleet", "bench.sim_fleet", fleet_args) as fleet:
            connected = fleet.expect("connected", timeout=300)
            result = fleet.expect("done", timeout=duration + 300)
        counted = counter.expect("done", timeout=60)
    result["all_connected"] = connected["devices"]
    result["expected"] = expected
    result["counted"] = counted["count"]
    result["rate_error"] = (counted["count"] - expected) / expected
    log(
        f"{devices:,} devices x {rate:g} msg/s x {duration:g} s: {counted['count']:,} counted "
        f"of {expected:,} ({result['rate_error']:+.2%}), connected in {connected['seconds']} s, "
        f"{result['cpu_us_per_message']} us CPU/message, at most {result['max_lag_ms']} ms behind "
        f"schedule ({result['late_messages']} messages over 100 ms late)"
    )
    return result


def _bridge(ctx: Context) -> subprocess.Popen[bytes]:
    config = ctx.logdir / "simulator-bridge.yaml"
    config.write_text(
        f"broker:\n  url: mqtt://127.0.0.1:{ctx.port}\n  protocol: '3.1.1'\n"
        "routes:\n  - topic: sensors/{device_id}/temperature\n"
        "    consumer: mqttbridge.consumers.examples_devices:FanConsumer\n    qos: 0\n"
    )
    log_path = ctx.logdir / "simulator-bridge.log"
    with open(log_path, "wb") as log_file:
        bridge = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mqttbridge",
                "run",
                "--config",
                str(config),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
    time.sleep(3)  # warning level logs nothing on start; give it its connection
    if bridge.poll() is not None:
        raise BenchError(f"the bridge exited: {log_path.read_text()[-2000:]}")
    return bridge


def simulator(ctx: Context) -> list[Row]:
    quick = not ctx.sizes.extras
    duration = 10.0 if quick else 30.0
    rows = []
    rate = ctx.data["simulator_rate"] = _fleet(ctx, 100 if quick else 1000, 10, duration)
    rows += [
        Row(
            _S,
            "1,000 x 10 msg/s rate error",
            abs(rate["rate_error"]) * 100,
            "%",
            ("<=", 2.0),
            note=f"{rate['counted']:,} counted of {rate['expected']:,}",
        ),
        Row(
            _S,
            "CPU per message",
            rate["cpu_us_per_message"],
            "us",
            note="simulator process, publishing phase",
        ),
    ]
    held_devices = 1000 if quick else 10_000
    held = ctx.data["simulator_held"] = _fleet(ctx, held_devices, 1, duration, "--ramp", "2000")
    rows += [
        Row(
            _S,
            f"{held_devices:,} devices at 1 msg/s rate error",
            abs(held["rate_error"]) * 100,
            "%",
            ("<=", 2.0),
            note=f"connected in {held['connect_seconds']} s",
        ),
        Row(
            _S,
            "devices held",
            held["connected"] if held["connected"] else held_devices,
            "devices",
            (">=", 10_000.0) if not quick else None,
        ),
    ]
    bridge = _bridge(ctx)
    try:
        rt = ctx.data["simulator_roundtrip"] = _fleet(ctx, 100, 10, duration, "--round-trip")
    finally:
        bridge.terminate()
        bridge.wait(30)
    latency = rt["round_trip"]
    log(f"round trip through the bridge: p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms")
    rows += [
        Row(
            _S,
            "round trip p50 (1,000 msg/s)",
            latency["p50_ms"],
            "ms",
            note=f"{latency['count']:,} replies from FanConsumer",
        ),
        Row(_S, "round trip p99 (1,000 msg/s)", latency["p99_ms"], "ms"),
    ]
    return rows
