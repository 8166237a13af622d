"""The device simulator as a bench party: one process, one event loop, N devices.

    python -m bench.sim_fleet --port P --devices 1000 --rate 10 --duration 30 [--round-trip]

Emits ``connected`` once every device is online (with the seconds it took), and ``done`` with
the simulator's summary and its CPU time: in all, and from ``connected`` to the end, so that
CPU per message is that of publishing, not of connecting.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from typing import Any

from bench.common import emit
from mqttbridge.devices.simulator.cli import _raise_descriptor_limit
from mqttbridge.devices.simulator.connection import BrokerTarget
from mqttbridge.devices.simulator.fleet import Fleet, FleetOptions
from mqttbridge.devices.simulator.profiles import load_profile


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    target = BrokerTarget(args.host, args.port, keepalive=60, connect_timeout=60)
    options = FleetOptions(
        devices=args.devices,
        rate=args.rate,
        duration=args.duration,
        qos=args.qos,
        ramp=args.ramp,
        round_trip=args.round_trip,
        handshakes=args.handshakes,
    )
    fleet = Fleet([load_profile(args.profile)], target, options)
    started = time.monotonic()
    run = asyncio.get_running_loop().create_task(fleet.run())
    stats = fleet.stats
    while stats.connected < args.devices and not run.done():
        await asyncio.sleep(0.05)
    connect_seconds = time.monotonic() - started
    cpu_at, published_at, connected_at = _cpu(), stats.published, time.monotonic()
    emit("connected", devices=stats.connected, seconds=round(connect_seconds, 2))
    await run
    steady_messages = stats.published - published_at
    steady_cpu = _cpu() - cpu_at
    summary = stats.summary()
    return {
        **summary,
        "connect_seconds": round(connect_seconds, 2),
        "steady_seconds": round(time.monotonic() - connected_at, 2),
        "steady_messages": steady_messages,
        "steady_cpu_seconds": round(steady_cpu, 3),
        "cpu_us_per_message": round(steady_cpu / steady_messages * 1e6, 1)
        if steady_messages
        else None,
        "cpu_seconds": round(_cpu(), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1))
    parser.add_argument("--ramp", type=float, default=None)
    parser.add_argument("--handshakes", type=int, default=200)
    parser.add_argument("--profile", default="generic")
    parser.add_argument("--round-trip", action="store_true")
    args = parser.parse_args()
    _raise_descriptor_limit(args.devices)
    emit("done", **asyncio.run(_run(args)))


if __name__ == "__main__":
    main()
