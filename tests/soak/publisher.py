"""The soak's load: paced QoS 1 publishes from one persistent session that outlives the broker.

    python -m tests.soak.publisher --port P --count N --rate R [--devices 100]

Message ``i`` is payload ``p<i:06d>`` on ``soak/d<i % devices>``, so the parent can tell from
the record which payload is missing or came twice. The client connects with a fixed client id
and clean session 0 (MQTT 3.1.1), keeps at most ``--window`` publishes unacknowledged, and when
the connection drops (the broker restarts) reconnects and sends every unacknowledged publish
again, with DUP set and its packet id, as MQTT 3.1.1 4.4 requires. A message is published once
the broker has acknowledged it: nothing acknowledged is ever sent again.

Emits ``ready`` after the first CONNACK, ``progress`` every ``--progress`` messages sent, and
``done`` once all are acknowledged, with what it resent and how long each outage lasted.
"""

from __future__ import annotations

import argparse
import select
import socket
import time
from typing import Any

from harness.events import emit
from harness.wire import CONNACK, PUBACK, connect_packet, packet, string, take_packet

CLIENT_ID = "soak-publisher"


def encode_publish(topic: bytes, payload: bytes, mid: int, dup: bool) -> bytes:
    first = 0x30 | 0x02 | (0x08 if dup else 0)  # PUBLISH, QoS 1
    return packet(first, string(topic) + mid.to_bytes(2, "big") + payload)


class Session:
    """One MQTT 3.1.1 client id whose unacknowledged publishes survive reconnects."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.address = (host, port)
        self.client_id = client_id
        self.sock: socket.socket | None = None
        self.buf = b""
        self.inflight: dict[int, tuple[int, bytes, bytes]] = {}  # mid -> (index, topic, payload)
        self.acked = 0
        self.resent: list[int] = []
        self.session_present: list[bool] = []
        self.outages: list[float] = []
        self.unknown_acks = 0

    def connect(self, timeout: float) -> None:
        """Connect (retrying every 50 ms until ``timeout``) and resend what is unacknowledged."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._connect_once()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # In packet-id order of sending (dicts keep insertion order): the broker sees them in
        # the order it would have, had the connection not dropped.
        again = [
            encode_publish(topic, payload, mid, dup=True)
            for mid, (_, topic, payload) in self.inflight.items()
        ]
        self.resent += [index for index, _, _ in self.inflight.values()]
        if again:
            self._send(b"".join(again))

    def _connect_once(self) -> None:
        self.close()
        sock = socket.create_connection(self.address, timeout=2.0)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(connect_packet(self.client_id, clean=False))  # MQTT 3.1.1
            self.sock, self.buf = sock, b""
            kind, body = self._read_packet(deadline=time.monotonic() + 2.0)
        except BaseException:
            self.sock = None
            sock.close()
            raise
        if kind != CONNACK or body[1] != 0:
            raise ConnectionRefusedError(f"CONNACK refused: packet {kind:#x} {body!r}")
        self.session_present.append(bool(body[0] & 1))

    def _read_packet(self, deadline: float) -> tuple[int, bytes]:
        assert self.sock is not None
        while (parsed := self._parse()) is None:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self.buf += chunk
        return parsed

    def _parse(self) -> tuple[int, bytes] | None:
        parsed, self.buf = take_packet(self.buf)
        return parsed

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.settimeout(5.0)
        self.sock.sendall(data)

    def publish(self, batch: list[tuple[int, bytes, bytes]]) -> None:
        packets = []
        for index, topic, payload in batch:
            mid = index % 65535 + 1
            self.inflight[mid] = (index, topic, payload)
            packets.append(encode_publish(topic, payload, mid, dup=False))
        self._send(b"".join(packets))

    def read_acks(self, wait: float) -> None:
        """Take the PUBACKs that arrive within ``wait`` seconds."""
        assert self.sock is not None
        ready, _, _ = select.select([self.sock], [], [], wait)
        if not ready:
            return
        self.sock.settimeout(0)
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        self.buf += chunk
        while (parsed := self._parse()) is not None:
            kind, body = parsed
            if kind != PUBACK:
                continue
            if self.inflight.pop(int.from_bytes(body[:2], "big"), None) is None:
                self.unknown_acks += 1
            else:
                self.acked += 1

    def close(self) -> None:
        if self.sock is not None:
            sock, self.sock = self.sock, None
            try:
                sock.settimeout(0.5)
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            except OSError:
                pass
            sock.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    topics = [f"soak/d{n}".encode() for n in range(args.devices)]
    session = Session(args.host, args.port, args.client_id)
    session.connect(timeout=10)
    emit("ready", session_present=session.session_present[0])
    count, rate, window = args.count, args.rate, args.window
    sent = 0
    started = time.monotonic()
    deadline = started + count / rate + args.timeout
    next_progress = args.progress
    while session.acked < count:
        now = time.monotonic()
        if now > deadline:
            elapsed = now - started
            raise TimeoutError(f"{session.acked} of {count} acknowledged after {elapsed:.0f} s")
        try:
            due = min(count, int((now - started) * rate) + 1)
            room = window - len(session.inflight)
            if sent < due and room > 0:
                batch = range(sent, min(due, sent + room))
                session.publish([(i, topics[i % len(topics)], b"p%06d" % i) for i in batch])
                sent = batch[-1] + 1
                if sent >= next_progress:
                    emit("progress", sent=sent, acked=session.acked)
                    next_progress += args.progress
            session.read_acks(wait=0.002)
        except OSError:  # ConnectionError included: the broker went away
            lost_at = time.monotonic()
            session.connect(timeout=args.timeout)
            session.outages.append(time.monotonic() - lost_at)
    seconds = time.monotonic() - started
    session.close()
    return {
        "published": count,
        "acked": session.acked,
        "seconds": seconds,
        "rate": count / seconds,
        "resent": session.resent,
        "reconnects": len(session.session_present) - 1,
        "session_present": session.session_present,
        "outage_seconds": session.outages,
        "unknown_acks": session.unknown_acks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--window", type=int, default=1000, help="unacknowledged at most")
    parser.add_argument("--client-id", default=CLIENT_ID)
    parser.add_argument("--progress", type=int, default=1000, help="report every N sent")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="longest outage, and slack past count/rate"
    )
    args = parser.parse_args()
    emit("done", **run(args))


if __name__ == "__main__":
    main()
