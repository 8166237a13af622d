"""The load: one client publishing as fast as it can, round-robin over device ids.

    python -m bench.publisher --port P --count N [--devices 100] [--qos 0] [--engine socket]
                              [--rate MSG_PER_S]

Two engines:

* ``socket`` (default): CONNECT, then PUBLISH packets encoded once and written a thousand per
  ``sendall``. Measured on the benchmark machine, a paho client publishes ~40k msg/s at best,
  which is no faster than a paho subscriber receives: with it as the load, "raw paho
  subscriber" measures the publisher. This engine costs next to no CPU, so on two cores the
  broker and the subscriber under test get the machine, and the subscriber is what is measured.
* ``paho``: paho 2.x driven from this thread (no ``loop_start``, so ``publish()`` writes to the
  socket itself: the fastest a paho client goes). Reported once as the paho publisher's rate.

At QoS 1 at most ``--window`` messages are unacknowledged at a time (packet ids are 16 bits).
``--rate`` (socket engine, QoS 0) paces the load instead: a hundredth of a second's worth of
messages every 10 ms, catching up if a write was late, for a steady background load.
Emits ``done`` once every message is written (QoS 0) or acknowledged (QoS 1).
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from typing import Any

from bench.common import emit
from harness.wire import CONNACK, PUBACK, connect_packet, packet, string, take_packet

PAYLOAD = b'{"temperature": 21.5, "humidity": 40}'
_BATCH = 1000
_TICK = 0.01  # --rate: seconds between writes


def encode_publish(topic: bytes, payload: bytes, qos: int, mid: int, v5: bool) -> bytes:
    body = string(topic) + (mid.to_bytes(2, "big") if qos else b"") + (b"\x00" if v5 else b"")
    return packet(0x30 | (qos << 1), body + payload)


class RawConnection:
    """Just enough MQTT (3.1.1 or 5) on a blocking socket to publish and count PUBACKs."""

    def __init__(
        self, host: str, port: int, client_id: str, v5: bool, timeout: float = 10.0
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.v5 = v5
        self.buf = b""
        self.sock.sendall(connect_packet(client_id, v5=v5))
        kind, body = self.read_packet()
        if kind != CONNACK or body[1] != 0:
            raise ConnectionError(f"CONNACK refused: packet {kind:#x} {body!r}")
        self.sock.settimeout(None)

    def read_packet(self) -> tuple[int, bytes]:
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self.buf += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        parsed, self.buf = take_packet(self.buf)
        return parsed

    def read_pubacks(self, block: bool) -> int:
        """Count the PUBACKs that have arrived (waiting for at least one if ``block``)."""
        self.sock.setblocking(block)
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            chunk = b""
        finally:
            self.sock.setblocking(True)
        if block and not chunk:
            raise ConnectionError("the broker closed the connection")
        self.buf += chunk
        acks = 0
        while (parsed := self._parse()) is not None:
            acks += parsed[0] == PUBACK
        return acks

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()


def publish_socket(args: argparse.Namespace, topics: list[bytes]) -> tuple[float, int]:
    v5 = args.protocol == "5"
    conn = RawConnection(args.host, args.port, f"bench-publisher-{os.getpid()}", v5)
    count, qos = args.count, args.qos
    started = time.perf_counter()
    acked = 0
    if qos == 0:
        packets = [encode_publish(t, PAYLOAD, 0, 0, v5) for t in topics]
        sent = 0
        while sent < count:
            n = min(_BATCH, count - sent)
            if args.rate:
                due = int((time.perf_counter() - started) * args.rate) + 1
                if due <= sent:
                    time.sleep(_TICK)
                    continue
                n = min(n, due - sent)
            conn.sock.sendall(b"".join(packets[(sent + i) % len(topics)] for i in range(n)))
            sent += n
    else:
        sent = 0
        while sent < count:
            while sent - acked >= args.window:
                acked += conn.read_pubacks(block=True)
            n = min(_BATCH, count - sent, args.window - (sent - acked))
            conn.sock.sendall(
                b"".join(
                    encode_publish(
                        topics[(sent + i) % len(topics)], PAYLOAD, 1, (sent + i) % 65535 + 1, v5
                    )
                    for i in range(n)
                )
            )
            sent += n
            acked += conn.read_pubacks(block=False)
        while acked < count:
            acked += conn.read_pubacks(block=True)
    seconds = time.perf_counter() - started
    conn.close()
    return seconds, acked


def publish_paho(args: argparse.Namespace, topics: list[bytes]) -> tuple[float, int]:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-publisher-{os.getpid()}",
        protocol=paho.MQTTv5 if args.protocol == "5" else paho.MQTTv311,
    )
    client.max_inflight_messages_set(0)  # no client-side cap: the broker's is off too
    client.max_queued_messages_set(0)
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.connect(args.host, args.port, keepalive=60)
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        client.loop(0.05)
    names = [t.decode() for t in topics]
    publish, qos, count, devices = client.publish, args.qos, args.count, len(names)
    started = time.perf_counter()
    for i in range(count):
        publish(names[i % devices], PAYLOAD, qos)
        if i & 255 == 255:
            client.loop(0)  # read PUBACKs, retry writes the socket refused
    deadline = time.monotonic() + args.timeout
    while ((qos and acked < count) or client.want_write()) and time.monotonic() < deadline:
        client.loop(0.01)
    seconds = time.perf_counter() - started
    client.disconnect()
    client.loop(0.1)
    return seconds, acked


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument(
        "--devices", type=int, default=100, help="distinct device ids (0 = --count)"
    )
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1))
    parser.add_argument("--protocol", default="3.1.1", choices=("3.1.1", "5"))
    parser.add_argument("--topic", default="bench/{device_id}/data")
    parser.add_argument("--engine", default="socket", choices=("socket", "paho"))
    parser.add_argument("--window", type=int, default=20000, help="QoS 1 messages in flight")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="messages per second (socket, QoS 0); 0: flat out"
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    if args.rate and (args.engine != "socket" or args.qos):
        parser.error("--rate paces the socket engine at QoS 0 only")
    devices = args.devices or args.count
    topics = [args.topic.format(device_id=f"d{i}").encode() for i in range(devices)]
    run = publish_socket if args.engine == "socket" else publish_paho
    seconds, acked = run(args, topics)
    emit("done", published=args.count, acked=acked, seconds=seconds, rate=args.count / seconds)


if __name__ == "__main__":
    main()
