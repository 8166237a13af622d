"""The MQTT packets a simulated device sends and reads, for MQTT 3.1.1 and 5.

Only a device's side is here (CONNECT out, CONNACK in, PUBLISH both ways, PUBACK, SUBSCRIBE,
PINGREQ, DISCONNECT), and of MQTT 5 only empty property sets are written; properties read are
skipped. A paho client per device costs a thread or a socket pair and far more CPU per message
than building these few bytes, which is what holding 10,000 devices in one process needs.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = [
    "CONNACK",
    "DISCONNECT",
    "PINGRESP",
    "PUBACK",
    "PUBLISH",
    "SUBACK",
    "Incoming",
    "PacketReader",
    "Will",
    "connect",
    "disconnect",
    "packet",
    "pingreq",
    "puback",
    "publish",
    "string",
    "subscribe",
]

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14

_U16 = struct.Struct(">H")


class Will(NamedTuple):
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class Incoming(NamedTuple):
    """One packet read: its type, flags, and the fields a device uses."""

    kind: int
    flags: int
    packet_id: int = 0
    topic: str = ""
    payload: bytes = b""
    code: int = 0  # CONNACK's return (3.1.1) or reason (5) code


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _U16.pack(len(data)) + data


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def connect(
    client_id: str,
    *,
    version: int = 4,
    keepalive: int = 60,
    clean: bool = True,
    will: Will | None = None,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT; ``version`` is the protocol level: 4 for MQTT 3.1.1, 5 for MQTT 5."""
    flags = 0x02 if clean else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    props = b"\x00" if version == 5 else b""
    body = [string("MQTT"), bytes((version, flags)), _U16.pack(keepalive), props]
    body.append(string(client_id))
    if will is not None:
        body += [props, string(will.topic), string(will.payload)]
    if username is not None:
        body.append(string(username))
    if password is not None:
        body.append(string(password))
    return packet(CONNECT << 4, b"".join(body))


def publish(
    topic: bytes, payload: bytes, *, qos: int = 0, retain: bool = False, packet_id: int = 0,
    version: int = 4,
) -> bytes:  # fmt: skip
    """PUBLISH; ``topic`` comes encoded, as devices publish the same topics again and again."""
    body = _U16.pack(len(topic)) + topic
    if qos:
        body += _U16.pack(packet_id)
    if version == 5:
        body += b"\x00"
    body += payload
    return packet((PUBLISH << 4) | (qos << 1) | retain, body)


def puback(packet_id: int) -> bytes:
    # Without a reason code, MQTT 5 reads "success", so one form serves both versions.
    return bytes((PUBACK << 4, 2)) + _U16.pack(packet_id)


def subscribe(packet_id: int, filters: list[tuple[str, int]], *, version: int = 4) -> bytes:
    body = _U16.pack(packet_id) + (b"\x00" if version == 5 else b"")
    body += b"".join(string(topic) + bytes((qos,)) for topic, qos in filters)
    return packet((SUBSCRIBE << 4) | 0x02, body)


def pingreq() -> bytes:
    return bytes((PINGREQ << 4, 0))


def disconnect() -> bytes:
    return bytes((DISCONNECT << 4, 0))


class ProtocolError(ValueError):
    """The broker sent something no MQTT broker may send."""


class PacketReader:
    """Splits a byte stream into packets; ``feed`` returns those complete so far."""

    def __init__(self, version: int = 4) -> None:
        self.version = version
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Incoming]:
        self._buffer += data
        packets: list[Incoming] = []
        while True:
            header = self._header()
            if header is None:
                return packets
            start, length = header
            body = bytes(self._buffer[start : start + length])
            first = self._buffer[0]
            del self._buffer[: start + length]
            packets.append(self._decode(first >> 4, first & 0x0F, body))

    def _header(self) -> tuple[int, int] | None:
        """Where the body starts and how long it is, once the whole packet is buffered."""
        length, shift = 0, 0
        for index in range(1, min(len(self._buffer), 5)):
            byte = self._buffer[index]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                end = index + 1 + length
                return (index + 1, length) if len(self._buffer) >= end else None
        if len(self._buffer) >= 5:
            raise ProtocolError("malformed remaining length")
        return None

    def _decode(self, kind: int, flags: int, body: bytes) -> Incoming:
        if kind == PUBLISH:
            return self._publish(flags, body)
        if kind == CONNACK:
            return Incoming(kind, flags, code=body[1] if len(body) > 1 else 0)
        if kind in (PUBACK, SUBACK) and len(body) >= 2:
            (packet_id,) = _U16.unpack_from(body)
            code = body[2] if kind == PUBACK and len(body) > 2 else 0
            if kind == SUBACK:  # the first granted QoS (0x80 and up: refused)
                code = body[self._skip_properties(body, 2)] if len(body) > 2 else 0
            return Incoming(kind, flags, packet_id=packet_id, code=code)
        if kind == DISCONNECT:
            return Incoming(kind, flags, code=body[0] if body else 0)
        return Incoming(kind, flags)

    def _publish(self, flags: int, body: bytes) -> Incoming:
        (size,) = _U16.unpack_from(body)
        topic = body[2 : 2 + size].decode("utf-8", "replace")
        at = 2 + size
        packet_id = 0
        if flags & 0x06:
            (packet_id,) = _U16.unpack_from(body, at)
            at += 2
        at = self._skip_properties(body, at)
        return Incoming(PUBLISH, flags, packet_id=packet_id, topic=topic, payload=body[at:])

    def _skip_properties(self, body: bytes, at: int) -> int:
        if self.version != 5:
            return at
        length, shift = 0, 0
        while True:
            byte = body[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return at + length
