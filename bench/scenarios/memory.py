"""4. Memory: the bridge's RSS idle, then with 10,000 live device instances.

Each of 10,000 distinct device ids publishes one QoS 1 message; once all are handled, the resident
memory of the bridge process is read (psutil). The instances stay alive (idle_timeout 300 s), so the
difference is what 10,000 instances cost. The time to handle those first messages is the
instance creation rate, reported too.
"""

from __future__ import annotations

import time
from typing import Any

from bench.procs import BenchError
from bench.report import Row, rss_kb
from bench.scenarios.context import Context, log


def _memory(ctx: Context, layer: str, label: str) -> dict[str, Any]:
    n = ctx.sizes.instances
    args = [
        "--mode", "count", "--qos", "1", "--count", str(n), "--layer", layer,
        "--max-instances", str(max(n, 10_000)), "--timeout", "600", "--idle", "60",
        "--exit-when-done",
    ]  # fmt: skip
    with ctx.child("bridge-memory", "bench.bridge_runner", args) as bridge:
        bridge.expect("ready", timeout=30)
        time.sleep(1.0)  # let start-up garbage settle before the baseline
        idle = rss_kb(bridge.pid)
        started = time.perf_counter()
        with ctx.child(
            "publisher", "bench.publisher", ["--count", str(n), "--devices", "0", "--qos", "1"]
        ) as pub:
            pub.expect("done", timeout=60)
        done = bridge.expect("done", timeout=660)
        handled_seconds = time.perf_counter() - started
        loaded = rss_kb(bridge.pid)
        # The bridge's own high-water mark at ``done``; what it grew since is in ``loaded``.
        peak = max(done["peak_kb"], loaded)
        shutdown = bridge.expect("stopped", timeout=120)["shutdown_seconds"]
        bridge.stop(grace=60)
    if not done["complete"] or done["instances"] != n:
        raise BenchError(f"{label}: {done['count']} of {n} handled, {done['instances']} instances")
    result = {
        "layer": layer, "instances": done["instances"], "idle_kb": idle, "loaded_kb": loaded,
        "peak_kb": peak, "delta_mb": (loaded - idle) / 1024, "per_instance_kb": (loaded - idle) / n,
        "handled_seconds": handled_seconds, "first_messages_per_s": n / handled_seconds,
        "shutdown_seconds": shutdown,
    }  # fmt: skip
    log(
        f"{label:<34} idle {idle / 1024:.1f} MB, {n:,} instances {loaded / 1024:.1f} MB "
        f"(+{result['delta_mb']:.1f} MB, {result['per_instance_kb']:.1f} KB each); "
        f"handled in {handled_seconds:.1f} s, shutdown {shutdown:.1f} s"
    )
    return result


def memory(ctx: Context) -> list[Row]:
    n = ctx.sizes.instances
    runs = {"memory": _memory(ctx, "memory://", "memory, layer memory:// (default)")}
    m = runs["memory"]
    each = f"{m['per_instance_kb']:.1f} KB per instance, channel_layer memory:// (default)"
    rows = [
        Row("4 memory", "bridge RSS idle", m["idle_kb"] / 1024, "MB"),
        Row("4 memory", f"bridge RSS, {n:,} instances", m["loaded_kb"] / 1024, "MB"),
        Row("4 memory", f"RSS above idle, {n:,} instances", m["delta_mb"], "MB", ("<=", 100), each),
        Row(
            "4 memory",
            f"first messages of {n:,} new devices",
            m["first_messages_per_s"],
            "msg/s",
            note="instance creation rate",
        ),
    ]
    if not ctx.sizes.extras:
        ctx.data["memory"] = runs
        return rows
    if ctx.redis is not None:
        r = runs["redis"] = _memory(ctx, ctx.redis.url, "memory, layer redis://")
        each = f"{r['per_instance_kb']:.1f} KB per instance"
        rows += [
            Row("4 memory", "RSS above idle, redis:// layer", r["delta_mb"], "MB", note=each),
            Row("4 memory", "first messages, redis:// layer", r["first_messages_per_s"], "msg/s"),
        ]
    z = runs["none"] = _memory(ctx, "none", "memory, no layer (diagnostic)")
    diag = f"diagnostic: CHANNEL_LAYERS = {{}}, {z['per_instance_kb']:.1f} KB per instance"
    rows += [
        Row("4 memory", "RSS above idle, no channel layer", z["delta_mb"], "MB", note=diag),
        Row("4 memory", "first messages, no channel layer", z["first_messages_per_s"], "msg/s"),
    ]
    ctx.data["memory"] = runs
    return rows
