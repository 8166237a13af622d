"""Simulated devices for the round trip: ping the bridge at a fixed rate, time the pongs.

    python -m bench.rt_device --port P --count 5000 [--rate 1000] [--devices 10] [--qos 0]

One paho client plays ``--devices`` devices: it publishes ``rt/<id>/ping`` (round-robin over
the ids) carrying a sequence number and ``perf_counter_ns()``, and subscribes ``rt/+/pong``;
a consumer answers each ping on its device's pong topic. paho is driven from this thread
alone, with TCP_NODELAY, so the clock is read next to the socket: before ``publish()`` writes
the ping, in ``on_message`` right after the pong is read. The first ``--warmup`` round trips
(instances being created, caches warming) are not counted.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import emit, percentile

_STAMP = struct.Struct(">Iq")  # sequence number, perf_counter_ns at send


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=5000, help="round trips measured")
    parser.add_argument(
        "--warmup", type=int, default=200, help="round trips sent first, not measured"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="pings per second")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1))
    parser.add_argument("--protocol", default="3.1.1", choices=("3.1.1", "5"))
    parser.add_argument(
        "--drain", type=float, default=5.0, help="wait this long for the last pongs"
    )
    args = parser.parse_args()

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-device-{os.getpid()}",
        protocol=paho.MQTTv5 if args.protocol == "5" else paho.MQTTv311,
    )
    client.max_inflight_messages_set(0)
    latencies_ns: list[int] = []
    subscribed = [False]

    def on_message(_c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        received = time.perf_counter_ns()
        seq, sent = _STAMP.unpack_from(message.payload)
        if seq >= args.warmup:
            latencies_ns.append(received - sent)

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.__setitem__(0, True)
    client.connect(args.host, args.port, keepalive=60)
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        client.loop(0.05)
    # The instrument must not add Nagle's delay of its own (paho does not set TCP_NODELAY):
    # without this, a QoS 1 ping waits behind the previous pong's PUBACK for the peer's
    # delayed ACK, and p50 reads ~20 ms whatever the bridge does.
    sock = client.socket()
    assert isinstance(sock, socket.socket), sock
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.subscribe("rt/+/pong", args.qos)
    while not subscribed[0] and time.monotonic() < deadline:
        client.loop(0.05)
    if not subscribed[0]:
        emit("error", message="no CONNACK or SUBACK from the broker within 10 s")
        return

    topics = [f"rt/d{i}/ping" for i in range(args.devices)]
    total = args.warmup + args.count
    interval = 1.0 / args.rate
    padding = b"\x00" * 24  # a small reading's worth of payload
    started = next_at = time.perf_counter()
    late = 0
    for seq in range(total):
        while True:
            now = time.perf_counter()
            if now >= next_at:
                break
            client.loop(next_at - now)
        if now - next_at > interval:
            late += 1  # this ping went out more than one interval behind schedule
        client.publish(
            topics[seq % len(topics)], _STAMP.pack(seq, time.perf_counter_ns()) + padding, args.qos
        )
        next_at += interval
    send_seconds = time.perf_counter() - started
    deadline = time.monotonic() + args.drain
    while len(latencies_ns) < args.count and time.monotonic() < deadline:
        client.loop(0.01)
    client.disconnect()

    values = sorted(ns / 1e6 for ns in latencies_ns)
    emit(
        "done",
        measured=len(values),
        expected=args.count,
        lost=args.count - len(values),
        send_rate=total / send_seconds,
        late_sends=late,
        qos=args.qos,
        p50_ms=percentile(values, 0.50),
        p90_ms=percentile(values, 0.90),
        p99_ms=percentile(values, 0.99),
        p999_ms=percentile(values, 0.999),
        max_ms=values[-1] if values else float("nan"),
        mean_ms=sum(values) / len(values) if values else float("nan"),
    )


if __name__ == "__main__":
    main()
