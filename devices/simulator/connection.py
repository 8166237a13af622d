"""One device's MQTT connection on the shared event loop: connect, stay connected, reconnect.

A ``Connection`` is an ``asyncio.Protocol``: reads arrive as callbacks, writes go straight to the
transport, and no task wakes per message. ``run()`` is the device's only task; it sleeps until
the connection is lost, then reconnects with capped, jittered exponential backoff (so 10,000
devices do not all knock at once when the broker comes back).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import ssl
import time
from collections.abc import Callable
from typing import Protocol

from mqttbridge.devices.simulator import codec
from mqttbridge.devices.simulator.websocket import WebSocketFraming

__all__ = ["BrokerTarget", "ConnectRefused", "Connection", "ConnectionEvents"]

_CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
    0x84: "unsupported protocol version",
    0x85: "client id not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
}


@dataclasses.dataclass(frozen=True)
class BrokerTarget:
    """Where and how every device connects."""

    host: str
    port: int
    version: int = 4  # protocol level: 4 = MQTT 3.1.1, 5 = MQTT 5
    keepalive: int = 60
    tls: ssl.SSLContext | None = None
    websocket_path: str | None = None  # ws:// and wss:// brokers
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    connect_timeout: float = 10.0
    reconnect_min: float = 0.5
    reconnect_max: float = 10.0


class ConnectRefused(Exception):
    """The broker answered CONNECT with a failure code."""


class ConnectionEvents(Protocol):
    """What a connection reports to its device (and the fleet's counters)."""

    def on_online(self) -> None: ...
    def on_offline(self, reason: str, was_online: bool) -> None: ...
    def on_message(self, topic: str, payload: bytes) -> None: ...
    def on_puback(self) -> None: ...


class Connection(asyncio.Protocol):
    def __init__(
        self,
        target: BrokerTarget,
        client_id: str,
        will: codec.Will | None,
        subscriptions: list[tuple[str, int]],
        events: ConnectionEvents,
        gate: asyncio.Semaphore,
        rng: random.Random,
    ) -> None:
        self.target = target
        self.client_id = client_id
        self.will = will
        self.subscriptions = subscriptions
        self.events = events
        self.gate = gate  # bounds handshakes in flight: a ramp, not a SYN flood
        self.rng = rng
        self.transport: asyncio.Transport | None = None
        self.online = False
        self.closing = False
        self.last_sent = 0.0
        self.last_received = 0.0
        self.connects = 0
        self._reader = codec.PacketReader(target.version)
        self._write: Callable[[bytes], None] = _discard
        self._next_id = 0
        self._waiters: dict[int, asyncio.Future[codec.Incoming]] = {}
        self._lost: asyncio.Future[None] | None = None

    # -- the device's task ----------------------------------------------------------------------

    async def run(self) -> None:
        delay = self.target.reconnect_min
        while not self.closing:
            try:
                async with self.gate:
                    await asyncio.wait_for(self._connect(), self.target.connect_timeout)
            except (OSError, TimeoutError, ConnectRefused, codec.ProtocolError) as exc:
                self._drop_waiters()
                self._abort()
                self.events.on_offline(_describe(exc), False)
            else:
                delay = self.target.reconnect_min
                assert self._lost is not None
                await self._lost
            if self.closing:
                return
            await asyncio.sleep(delay * (0.5 + self.rng.random()))
            delay = min(delay * 2, self.target.reconnect_max)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self._reader = codec.PacketReader(self.target.version)
        vars(self).pop("data_received", None)  # a previous WebSocket's framing
        target = self.target
        await loop.create_connection(
            lambda: self, target.host, target.port, ssl=target.tls,
            server_hostname=target.host if target.tls else None,
        )  # fmt: skip
        if target.websocket_path is not None:
            framing = WebSocketFraming(self, target.host, target.port, target.websocket_path)
            await framing.handshake()
        connack = self._expect(0)
        self.send(
            codec.connect(
                self.client_id, version=target.version, keepalive=target.keepalive,
                will=self.will, username=target.username, password=target.password,
            )
        )  # fmt: skip
        reply = await connack
        if reply.code:
            raise ConnectRefused(_CONNACK_REASONS.get(reply.code, f"refused, code {reply.code}"))
        if self.subscriptions:
            packet_id = self._packet_id()
            suback = self._expect(packet_id)
            self.send(codec.subscribe(packet_id, self.subscriptions, version=target.version))
            granted = await suback
            if granted.code >= 0x80:
                raise ConnectRefused(f"subscription refused, code {granted.code:#x}")
        self.online = True
        self.connects += 1
        self.events.on_online()

    def close(self) -> None:
        """Disconnect cleanly (no last will) and end ``run``."""
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.send(codec.disconnect())
            self.transport.close()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    # -- writing --------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._write(data)
        self.last_sent = time.monotonic()

    def publish(self, topic: bytes, payload: bytes, qos: int, retain: bool) -> bool:
        if not self.online:
            return False
        packet_id = self._packet_id() if qos else 0
        self.send(
            codec.publish(
                topic, payload, qos=qos, retain=retain, packet_id=packet_id,
                version=self.target.version,
            )
        )  # fmt: skip
        return True

    def ping_if_idle(self, now: float) -> None:
        """Keep the session alive; drop it when the broker stopped answering."""
        if not self.online or self.transport is None:
            return
        keepalive = self.target.keepalive
        if now - self.last_received > 1.5 * keepalive:
            self._abort()
        elif now - self.last_sent > 0.5 * keepalive:
            self.send(codec.pingreq())

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def _expect(self, packet_id: int) -> asyncio.Future[codec.Incoming]:
        future: asyncio.Future[codec.Incoming] = asyncio.get_running_loop().create_future()
        self._waiters[packet_id] = future
        return future

    def _drop_waiters(self) -> None:
        # Cancelled, not failed: nobody awaits them any more, and a failed future nobody
        # retrieves is logged as an error.
        for future in self._waiters.values():
            future.cancel()
        self._waiters.clear()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._write = transport.write
        self.last_received = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        try:
            packets = self._reader.feed(data)
        except codec.ProtocolError:
            self._abort()
            return
        for packet in packets:
            self._dispatch(packet)

    def _dispatch(self, packet: codec.Incoming) -> None:
        kind = packet.kind
        if kind == codec.PUBLISH:
            if packet.flags & 0x06:
                self.send(codec.puback(packet.packet_id))
            self.events.on_message(packet.topic, packet.payload)
        elif kind == codec.PUBACK:
            self.events.on_puback()
        elif kind == codec.CONNACK:
            self._resolve(0, packet)
        elif kind == codec.SUBACK:
            self._resolve(packet.packet_id, packet)
        elif kind == codec.DISCONNECT:
            self._abort()

    def _resolve(self, packet_id: int, packet: codec.Incoming) -> None:
        future = self._waiters.pop(packet_id, None)
        if future is not None and not future.done():
            future.set_result(packet)

    def connection_lost(self, exc: Exception | None) -> None:
        was_online = self.online
        self.online = False
        self.transport = None
        self._write = _discard
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(ConnectionResetError("connection lost"))
        self._waiters.clear()
        if was_online:
            reason = "closed by the broker" if exc is None else _describe(exc)
            self.events.on_offline("" if self.closing else reason, True)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)


def _discard(data: bytes) -> None:
    pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connect timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
