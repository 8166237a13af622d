"""``umqtt.simple``'s MQTTClient API on a blocking socket, built on the simulator's codec.

It speaks real MQTT 3.1.1 to a real broker, so the firmware's topics, will, QoS and retain flags
are what the broker sees; only the transport underneath differs from the board's.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from mqttbridge.devices.simulator import codec


class MQTTException(Exception):
    pass


class MQTTClient:
    def __init__(
        self,
        client_id: str,
        server: str,
        port: int = 1883,
        user: str | None = None,
        password: str | None = None,
        keepalive: int = 0,
    ) -> None:
        self.client_id, self.server, self.port = client_id, server, port
        self.user, self.password, self.keepalive = user, password, keepalive
        self.will: codec.Will | None = None
        self.callback: Callable[[bytes, bytes], None] | None = None
        self.sock: socket.socket | None = None
        self.reader = codec.PacketReader()
        self.pending: list[codec.Incoming] = []
        self.next_id = 0

    def set_callback(self, callback: Callable[[bytes, bytes], None]) -> None:
        self.callback = callback

    def set_last_will(self, topic: str, msg: str, retain: bool = False, qos: int = 0) -> None:
        self.will = codec.Will(topic, msg.encode(), qos, retain)

    def connect(self, clean_session: bool = True) -> bool:
        self.sock = socket.create_connection((self.server, self.port), timeout=5)
        self.sock.sendall(
            codec.connect(
                self.client_id,
                keepalive=self.keepalive,
                clean=clean_session,
                will=self.will,
                username=self.user,
                password=self.password,
            )
        )
        connack = self._wait(codec.CONNACK)
        if connack.code:
            raise MQTTException(connack.code)
        return False

    def publish(self, topic: str, msg: str, retain: bool = False, qos: int = 0) -> None:
        assert self.sock is not None
        self.next_id += 1
        packet = codec.publish(
            topic.encode(),
            _bytes(msg),
            qos=qos,
            retain=retain,
            packet_id=self.next_id if qos else 0,
        )
        self.sock.sendall(packet)
        if qos:
            self._wait(codec.PUBACK)

    def subscribe(self, topic: str, qos: int = 0) -> None:
        assert self.sock is not None
        self.next_id += 1
        self.sock.sendall(codec.subscribe(self.next_id, [(topic, qos)]))
        self._wait(codec.SUBACK)

    def check_msg(self) -> None:
        """Handle what has arrived, without waiting."""
        assert self.sock is not None
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            data = None
        finally:
            self.sock.settimeout(5)
        if data == b"":
            raise OSError("connection closed")
        if data:
            self.pending += self.reader.feed(data)
        self._deliver()

    def disconnect(self) -> None:
        if self.sock is not None:
            self.sock.sendall(codec.disconnect())
            self.sock.close()
            self.sock = None

    def _wait(self, kind: int) -> codec.Incoming:
        assert self.sock is not None
        while True:
            for index, packet in enumerate(self.pending):
                if packet.kind == kind:
                    del self.pending[index]
                    return packet
            data = self.sock.recv(65536)
            if not data:
                raise OSError("connection closed")
            self.pending += self.reader.feed(data)

    def _deliver(self) -> None:
        assert self.sock is not None
        keep = []
        for packet in self.pending:
            if packet.kind != codec.PUBLISH:
                keep.append(packet)
                continue
            if packet.flags & 0x06:
                self.sock.sendall(codec.puback(packet.packet_id))
            if self.callback is not None:
                self.callback(packet.topic.encode(), packet.payload)
        self.pending = keep


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
