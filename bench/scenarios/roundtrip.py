"""3. Round trip device -> bridge consumer -> device at 1,000 pings/s, QoS 0 and QoS 1."""

from __future__ import annotations

from typing import Any

from bench.report import Row
from bench.scenarios.context import Context, log


def _round_trip(ctx: Context, qos: int, label: str) -> dict[str, Any]:
    s = ctx.sizes
    bridge_args = ["--mode", "pong", "--qos", str(qos)]
    with ctx.child("bridge-pong", "bench.bridge_runner", bridge_args) as bridge:
        bridge.expect("ready", timeout=30)
        args = [
            "--count", str(s.roundtrip), "--warmup", str(s.roundtrip_warmup),
            "--rate", "1000", "--qos", str(qos),
        ]  # fmt: skip
        with ctx.child("device", "bench.rt_device", args) as device:
            result = device.expect("done", timeout=s.roundtrip / 1000 + 60)
    log(
        f"{label:<34} p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
        f"max {result['max_ms']:.1f} ms  ({result['measured']} measured, {result['lost']} lost)"
    )
    return result


def roundtrip(ctx: Context) -> list[Row]:
    runs: dict[str, Any] = {}
    rows = []
    for qos in (0, 1):
        r = runs[f"qos{qos}"] = _round_trip(ctx, qos, f"round trip QoS {qos}")
        lost = f", {r['lost']} LOST" if r["lost"] else ""
        note = f"{r['measured']:,} round trips at 1,000/s over 10 devices{lost}"
        rows += [
            Row("3 round trip", f"QoS {qos} p50", r["p50_ms"], "ms", note=note),
            Row(
                "3 round trip",
                f"QoS {qos} p99",
                float("nan") if r["lost"] else r["p99_ms"],
                "ms",
                ("<=", 5.0),
            ),
            Row("3 round trip", f"QoS {qos} max", r["max_ms"], "ms"),
        ]
    ctx.data["roundtrip"] = runs
    return rows
