"""Just enough MQTT framing to publish from a bare socket: a load that costs next to no CPU.

paho builds an ``MQTTMessageInfo`` and takes a lock per publish, so a paho publisher is no
faster than a paho subscriber and would measure itself; these encode a packet once and let a
publisher write thousands per ``sendall``. ``take_packet`` splits what a broker sends back.
"""

from __future__ import annotations

# The framing is the device simulator's: one MQTT encoder in the repository.
from mqttbridge.devices.simulator.codec import connect, packet, string

__all__ = ["CONNACK", "PUBACK", "connect_packet", "packet", "string", "take_packet"]

CONNACK = 0x20
PUBACK = 0x40


def connect_packet(client_id: str, *, v5: bool = False, clean: bool = True) -> bytes:
    """CONNECT with keepalive 60 s, MQTT 5 (no properties) or 3.1.1."""
    return connect(client_id, version=5 if v5 else 4, clean=clean)


def take_packet(buf: bytes) -> tuple[tuple[int, bytes] | None, bytes]:
    """Split one whole MQTT packet, ``(type, body)``, off the front of ``buf``; ``None`` and
    ``buf`` unchanged when it is not all there yet."""
    if len(buf) < 2:
        return None, buf
    length, shift, pos = 0, 0, 1
    while True:
        if pos >= len(buf):
            return None, buf
        byte = buf[pos]
        length |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
        if not byte & 0x80:
            break
    if len(buf) < pos + length:
        return None, buf
    return (buf[0] & 0xF0, buf[pos : pos + length]), buf[pos + length :]
