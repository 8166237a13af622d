"""1. QoS 0 throughput (raw paho, the bridge, mqttasgi, mqttasgi's app under the bridge) and
2. QoS 1 throughput with acknowledgement after handling (raw paho, the bridge)."""

from __future__ import annotations

from typing import Any

from bench.report import Row
from bench.scenarios.context import BRIDGE, RAW, Context, log, measure, median_rate, ratio

MQTTASGI_APP = ("bench.bridge_runner", ["--mode", "mqttasgi-app"])


def _pair(ctx: Context, label: str, qos: int, protocol: str) -> tuple[list[Any], list[Any]]:
    raw: list[dict[str, Any]] = []
    bridge: list[dict[str, Any]] = []
    n = ctx.sizes.throughput
    for _ in range(ctx.sizes.repeat):  # interleaved, so drift on the machine hits both alike
        raw.append(measure(ctx, f"{label} raw paho", RAW, n, qos=qos, protocol=protocol))
        bridge.append(measure(ctx, f"{label} bridge", BRIDGE, n, qos=qos, protocol=protocol))
    return raw, bridge


def throughput(ctx: Context) -> list[Row]:
    s = ctx.sizes
    raw, bridge = _pair(ctx, "qos0", 0, "3.1.1")
    mqttasgi_args = ["--timeout", str(s.mqttasgi_seconds)]
    mqttasgi = measure(
        ctx, "qos0 mqttasgi", ("bench.mqttasgi_runner", mqttasgi_args), s.mqttasgi,
        done_timeout=s.mqttasgi_seconds + 30,
    )  # fmt: skip
    mqttasgi_rate = mqttasgi["rate"] if mqttasgi["count"] > 1 else float("nan")
    app = [
        measure(ctx, "qos0 mqttasgi app under bridge", MQTTASGI_APP, s.app_under_bridge)
        for _ in range(s.repeat)
    ]
    raw_rate, bridge_rate, app_rate = median_rate(raw), median_rate(bridge), median_rate(app)
    ctx.data["throughput"] = {
        "raw": raw, "bridge": bridge, "mqttasgi": mqttasgi, "mqttasgi_app_under_bridge": app,
    }  # fmt: skip
    many = f"median of {s.repeat} runs of {s.throughput:,} msgs, 100 devices"
    capped = f"{mqttasgi['count']:,} msgs (cap: {s.mqttasgi:,} or {s.mqttasgi_seconds:g} s)"
    app_note = f"median of {s.repeat} runs of {s.app_under_bridge:,} msgs"
    group = "1 QoS 0"
    rows = [
        Row(group, "raw paho subscriber", raw_rate, "msg/s", note=many),
        Row(group, "bridge (routed, 100 instances)", bridge_rate, "msg/s", note=many),
        Row(group, "bridge / raw", ratio(bridge_rate, raw_rate), "", (">=", 0.7)),
        Row(group, "mqttasgi 2.0.0", mqttasgi_rate, "msg/s", note=capped),
        Row(group, "bridge / mqttasgi", ratio(bridge_rate, mqttasgi_rate), "", (">=", 300)),
        Row(group, "mqttasgi app under the bridge", app_rate, "msg/s", note=app_note),
        Row(group, "app under bridge / mqttasgi", ratio(app_rate, mqttasgi_rate), "", (">=", 40)),
    ]
    if not s.extras:
        return rows
    raw5, bridge5 = _pair(ctx, "qos0 MQTT 5", 0, "5")
    raw5_rate, bridge5_rate = median_rate(raw5), median_rate(bridge5)
    paho_args = ["--count", str(s.throughput), "--engine", "paho"]
    with ctx.child("paho-publisher", "bench.publisher", paho_args) as pub:
        paho_pub = pub.expect("done", timeout=120)
    log(f"{'paho publisher, alone':<34} {paho_pub['rate']:>10,.0f} msg/s")
    ctx.data["throughput"] |= {
        "raw_mqtt5": raw5, "bridge_mqtt5": bridge5, "paho_publisher_alone": paho_pub,
    }  # fmt: skip
    return [
        *rows,
        Row(group, "raw paho subscriber, MQTT 5", raw5_rate, "msg/s", note=many),
        Row(group, "bridge, MQTT 5", bridge5_rate, "msg/s", note=many),
        Row(group, "bridge / raw, MQTT 5", ratio(bridge5_rate, raw5_rate), "", (">=", 0.7)),
        Row(
            group,
            "paho publisher alone",
            paho_pub["rate"],
            "msg/s",
            note="why the load is not paho",
        ),
    ]


def qos1(ctx: Context) -> list[Row]:
    s = ctx.sizes
    raw, bridge = _pair(ctx, "qos1", 1, "3.1.1")
    ctx.data["qos1"] = {"raw": raw, "bridge": bridge}
    raw_rate, bridge_rate = median_rate(raw), median_rate(bridge)
    many = f"median of {s.repeat} runs of {s.throughput:,} msgs, ack after handling"
    return [
        Row("2 QoS 1", "raw paho subscriber", raw_rate, "msg/s", note=many),
        Row("2 QoS 1", "bridge", bridge_rate, "msg/s", note=many),
        Row("2 QoS 1", "bridge / raw", ratio(bridge_rate, raw_rate), "", (">=", 0.5)),
    ]
