"""MQTT over WebSocket (``ws://``, ``wss://``) for a ``Connection``: the client side of RFC 6455.

Only what MQTT needs: the HTTP upgrade with the ``mqtt`` subprotocol, masked binary frames out,
unmasked frames in (binary, continuation, ping answered, close ends the connection).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

__all__ = ["WebSocketFraming"]

_BINARY, _CLOSE, _PING, _PONG = 0x2, 0x8, 0x9, 0xA


class WebSocketFraming:
    """Installs itself between a connection and its transport: ``connection.send`` frames,
    ``connection.data_received`` gets the payloads of incoming frames."""

    def __init__(self, connection: Any, host: str, port: int, path: str) -> None:
        self.connection = connection
        self.transport: Any = connection.transport
        self.request = (
            f"GET {path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
        ).encode()
        self._buffer = bytearray()
        self._upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deliver = connection.data_received

    async def handshake(self) -> None:
        self.connection.data_received = self._receive
        self.transport.write(self.request)
        await self._upgraded
        self.connection._write = self.write

    def write(self, data: bytes) -> None:
        mask = os.urandom(4)
        size = len(data)
        if size < 126:
            header = struct.pack("!BB", 0x80 | _BINARY, 0x80 | size)
        elif size < 65536:
            header = struct.pack("!BBH", 0x80 | _BINARY, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | _BINARY, 0x80 | 127, size)
        self.transport.write(header + mask + _mask(data, mask))

    def _receive(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded.done():
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._buffer[:end]).split(b"\r\n", 1)[0]
            del self._buffer[: end + 4]
            if b" 101 " not in status + b" ":
                self._upgraded.set_exception(
                    ConnectionRefusedError(f"websocket upgrade refused: {status.decode()!r}")
                )
                return
            self._upgraded.set_result(None)
        self._frames()

    def _frames(self) -> None:
        while len(self._buffer) >= 2:
            opcode = self._buffer[0] & 0x0F
            size = self._buffer[1] & 0x7F
            at = 2
            if size == 126:
                if len(self._buffer) < 4:
                    return
                (size,) = struct.unpack_from("!H", self._buffer, 2)
                at = 4
            elif size == 127:
                if len(self._buffer) < 10:
                    return
                (size,) = struct.unpack_from("!Q", self._buffer, 2)
                at = 10
            if len(self._buffer) < at + size:
                return
            payload = bytes(self._buffer[at : at + size])
            del self._buffer[: at + size]
            if opcode == _CLOSE:
                self.transport.close()
                return
            if opcode == _PING:
                self._control(_PONG, payload)
            elif opcode != _PONG:
                self._deliver(payload)

    def _control(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        self.transport.write(
            bytes((0x80 | opcode, 0x80 | len(payload))) + mask + _mask(payload, mask)
        )


def _mask(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
