"""5. Publish from another process: ``mqttbridge.apublish`` over a private Redis channel layer.

A paho subscriber counts arrivals at the broker; the rate runs from the publisher's first
``apublish`` call to the last arrival (clocks are CLOCK_MONOTONIC on one machine).
"""

from __future__ import annotations

from bench.procs import BenchError
from bench.report import Row, cpu_seconds
from bench.scenarios.context import Context, log


def layer(ctx: Context) -> list[Row]:
    if ctx.redis is None:
        raise BenchError("the layer scenario needs Redis (redis-server not found)")
    n = ctx.sizes.layer
    config = ctx.logdir / "layer-config.yaml"
    config.write_text(
        f"broker:\n  url: mqtt://127.0.0.1:{ctx.port}\n  protocol: '3.1.1'\n"
        f"channel_layer:\n  url: {ctx.redis.url}\n"
    )
    bridge_args = ["--mode", "layer", "--layer", ctx.redis.url]
    counter_args = ["--count", str(n), "--topic", "layer/#"]
    publisher_args = ["--config", str(config), "--count", str(n)]
    with ctx.child("bridge-layer", "bench.bridge_runner", bridge_args) as bridge:
        bridge.expect("ready", timeout=30)
        with ctx.child("layer-subscriber", "bench.raw_subscriber", counter_args) as sub:
            sub.expect("ready", timeout=30)
            bridge_cpu = cpu_seconds(bridge.pid)
            with ctx.child(
                "layer-publisher", "bench.layer_publisher", publisher_args, broker=False
            ) as pub:
                published = pub.expect("done", timeout=300)
            arrived = sub.expect("done", timeout=60)
            bridge_cpu = cpu_seconds(bridge.pid) - bridge_cpu
    rate = arrived["count"] / (arrived["last_at"] - published["started_at"])
    if not arrived["complete"]:
        rate = float("nan")
    bridge_ms = 1000 * bridge_cpu / n
    ctx.data["layer"] = {
        "publisher": published, "subscriber": arrived, "end_to_end_rate": rate,
        "bridge_cpu_ms_per_message": bridge_ms,
    }  # fmt: skip
    full = published["channel_full"]
    log(
        f"{'publish over the Redis layer':<34} {rate:>10,.0f} msg/s end to end "
        f"({arrived['count']}/{n} arrived; ChannelFull, retried: {full})"
    )
    return [
        Row(
            "5 Redis layer",
            "apublish -> bridge -> broker",
            rate,
            "msg/s",
            (">=", 2000),
            note=f"{n:,} calls awaited one by one; first call to last arrival",
        ),
        Row(
            "5 Redis layer",
            "ChannelFull refusals, retried",
            full,
            "",
            note="channels_redis capacity: 100 per channel",
        ),
        Row("5 Redis layer", "bridge CPU per publish request", bridge_ms, "ms"),
        Row(
            "5 Redis layer",
            "publisher CPU per apublish",
            published["cpu_ms_per_message"],
            "ms",
            note="includes the ChannelFull retries",
        ),
    ]
