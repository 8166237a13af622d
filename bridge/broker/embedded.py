"""An MQTT broker inside the bridge's own event loop, for setups without Mosquitto.

The broker is amqtt (MQTT 3.1.1). amqtt is driven through an *external* listener: this module
owns the listening sockets and hands each accepted connection to
``amqtt.broker.Broker.external_connected``. Owning the sockets is what lets us

* report a taken port with a message that says what to do, instead of amqtt's generic failure,
* bind port 0 once and report the port actually bound (no probe-then-rebind race),
* frame packets before amqtt reads them, to enforce what amqtt 0.12 does not: a payload limit
  (checked before the payload is buffered), the keep-alive timeout and a CONNECT timeout,
* read each CONNECT first: answer other MQTT versions with the return code MQTT 3.1.1 asks for,
  and check the password (``broker.users``) before amqtt, which mishandles refused clients.

``_Broker`` fixes amqtt's retained-message delivery; it is the one subclass of amqtt's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import hmac
import logging
import secrets
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import BrokerConfig, ListenerConfig, ListenerType
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from mqttbridge.broker.passwords import PasswordHash, hash_password
from mqttbridge.config.values import _embedded_access_problem, _embedded_allows_anonymous

# The version range pyproject.toml pins amqtt to: _Broker below overrides private methods.
AMQTT_VERSIONS = ">=0.12.1,<0.13"

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError"]

logger = logging.getLogger(__name__)

_LISTENER = "default"  # amqtt requires a listener with this name
# amqtt logs every client connect at INFO (and `transitions`, which it uses for its state machines,
# logs every state change at INFO): at the bridge's usual INFO level that drowns our own logs.
_CHATTY_LOGGERS = ("amqtt", "transitions")
_CONNECT_TIMEOUT = 10.0  # seconds a new connection gets to send CONNECT (MQTT-3.1.4, "SHOULD")
_SHUTDOWN_GRACE = 0.5  # then we end the streams of amqtt reader loops that missed their cancel
_SHUTDOWN_TIMEOUT = 10.0  # amqtt's own shutdown waits up to 5 s for its broadcast loop
_CHUNK = 65536
# Variable header (10 bytes) and five length-prefixed strings at most: client id, will topic,
# will message, username, password.
_MAX_CONNECT = 10 + 5 * (2 + 65535)
_NOT_AUTHORIZED = b"\x20\x02\x00\x05"  # CONNACK, return code 5
_UNACCEPTABLE_PROTOCOL = b"\x20\x02\x00\x01"  # CONNACK, return code 1 (MQTT-3.1.2-2)
# Protocol name and level of each MQTT version, as CONNECT carries them (MQTT 5, 3.1.2.1-2).
_VERSIONS = {(b"MQTT", 4): "3.1.1", (b"MQTT", 5): "5", (b"MQIsdp", 3): "3.1"}

# MQTT 3.1.1 control packet types (high nibble of the first byte).
_CONNECT, _PUBLISH, _PUBREL = 1, 3, 6
_PUBACK, _PUBREC, _PUBCOMP = b"\x40\x02", b"\x50\x02", b"\x70\x02"


# Verified against when a username is unknown, so that costs what a known one costs.
_UNKNOWN_USER = PasswordHash.parse(hash_password(secrets.token_urlsafe(16)))


class EmbeddedBrokerError(Exception):
    """The embedded broker cannot start; the message says why and what to change."""


class _AdmitPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Admits every client amqtt sees: EmbeddedBroker._admits() already checked the CONNECT.

    amqtt needs an auth plugin that says yes. Its AnonymousAuthPlugin also marks every session
    anonymous, and amqtt neither keeps offline messages for anonymous sessions nor keeps them
    after a disconnect, which would break clean_session=False.
    """

    async def authenticate(self, *, session: Session) -> bool:
        return True


# True while amqtt handles a SUBSCRIBE in the current task (see _Broker).
_subscribing = contextvars.ContextVar("_subscribing", default=False)


class _Broker(Broker):  # type: ignore[misc]
    """amqtt's Broker, sending retained messages as MQTT 3.1.1 says.

    The one place this module reaches into amqtt's private methods; pinned by AMQTT_VERSIONS and
    checked by
    tests/broker/test_embedded.py::test_amqtt_private_methods_we_override_are_still_there.

    amqtt 0.12 calls ``_publish_retained_messages_for_subscription`` after a SUBACK (right,
    MQTT-3.3.1-6) and also on every CONNECT for every filter *any* client ever subscribed to:
    each connecting client got other devices' retained messages, and then its own a second time
    when it subscribed. Here only the SUBACK path sends them. Messages queued for an offline
    session go out without the RETAIN flag.
    """

    async def _handle_subscription(self, *args: Any, **kwargs: Any) -> None:
        token = _subscribing.set(True)
        try:
            await super()._handle_subscription(*args, **kwargs)
        finally:
            _subscribing.reset(token)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        if _subscribing.get():
            await super()._publish_retained_messages_for_subscription(subscription, session)

    async def _publish_session_retained_messages(self, session: Session) -> None:
        # amqtt sends what it queued for an offline persistent session with RETAIN set; these are
        # deliveries for an established subscription, which MQTT-3.3.1-9 sends with RETAIN 0.
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = []
        while not session.retained_messages.empty():
            queued = session.retained_messages.get_nowait()
            sends.append(handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False))
        # As amqtt: a send that fails (the client left again) must not fail the connection.
        await asyncio.gather(*sends, return_exceptions=True)


def _credentials(connect: bytes) -> tuple[str | None, bytes | None]:
    """Username and password of a CONNECT body (MQTT 3.1.1 section 3.1); ValueError if cut short."""

    def field(at: int) -> tuple[bytes, int]:
        end = at + 2 + int.from_bytes(connect[at : at + 2], "big")
        if end > len(connect):
            raise ValueError("CONNECT shorter than its fields")
        return connect[at + 2 : end], end

    _, at = field(0)  # protocol name
    if at + 4 > len(connect):
        raise ValueError("CONNECT shorter than its variable header")
    flags = connect[at + 1]
    _, at = field(at + 4)  # client identifier
    if flags & 0x04:  # will flag: will topic and will message
        _, at = field(at)
        _, at = field(at)
    username = password = None
    if flags & 0x80:
        raw, at = field(at)
        username = raw.decode(errors="replace")
    if flags & 0x40:
        password, at = field(at)
    return username, password


def _protocol_refusal(connect: bytes) -> tuple[bytes | None, str] | None:
    """Why a CONNECT's protocol is refused, with the CONNACK to answer (None: just close).

    None if it is MQTT 3.1.1. Read before the rest of the CONNECT, whose layout differs between
    versions: MQTT 5 puts properties after the keep-alive.
    """
    size = int.from_bytes(connect[:2], "big")
    name, level = connect[2 : 2 + size], connect[2 + size : 3 + size]
    if not level:
        return None, "malformed CONNECT"
    version = _VERSIONS.get((name, level[0]))
    if version == "3.1.1":
        return None
    if version is not None:
        advice = "configure the device for MQTT 3.1.1"
        if version == "5":
            advice += ", or run an MQTT 5 broker such as Mosquitto and point broker.url at it"
        return _UNACCEPTABLE_PROTOCOL, (
            f"it speaks MQTT {version} and the embedded broker speaks MQTT 3.1.1 only; {advice}"
        )
    if name in (b"MQTT", b"MQIsdp"):
        return _UNACCEPTABLE_PROTOCOL, f"unknown MQTT protocol level {level[0]}"
    # MQTT-3.1.2-1: not MQTT at all, so no CONNACK either.
    return None, f"not MQTT: protocol name {name.decode(errors='replace')!r}"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _quiet_chatty_loggers() -> None:
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    for name in _CHATTY_LOGGERS:
        chatty = logging.getLogger(name)
        if chatty.level == logging.NOTSET:  # an explicit level set by the user wins
            chatty.setLevel(logging.WARNING)


class _GuardedReader(ReaderAdapter):  # type: ignore[misc]
    """Reads whole MQTT packets ahead of amqtt and serves its byte-sized reads from a buffer.

    Every await is one ``readexactly`` (atomic) and the parse state lives on the instance, so a
    read cancelled by amqtt's keep-alive ``wait_for`` resumes where it stopped. Also enforces
    the keep-alive, which amqtt ignores.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_payload: int | None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_payload = max_payload
        self._ready = bytearray()  # complete packets not yet read by amqtt
        self._head = bytearray()  # fixed header being received
        self._body = bytearray()  # body being received
        self._discard = 0  # bytes left of a dropped PUBLISH
        self._connect = b""  # body of the CONNECT, once read
        # Packet ids of dropped QoS 2 PUBLISHes: amqtt never saw them, so we answer their PUBREL.
        self._dropped_qos2: set[bytes] = set()
        self._loop = asyncio.get_running_loop()
        self._last_received = self._loop.time()
        self._keepalive = 0.0  # 1.5 x the CONNECT keep-alive; 0 = not enforced
        self._watchdog: asyncio.TimerHandle | None = None

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            data = bytes(self._ready) + await self._reader.read()
            self._ready.clear()
            return data
        while len(self._ready) < n:
            await self._next_packet()
        data = bytes(self._ready[:n])
        del self._ready[:n]
        return data

    def feed_eof(self) -> None:
        self._reader.feed_eof()

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()

    async def read_connect(self) -> bytes | None:
        """Buffer the first packet and return its body if it is a CONNECT."""
        await self._next_packet()
        return self._connect if self._ready[0] >> 4 == _CONNECT else None

    async def _receive(self, n: int) -> bytes:
        data = await self._reader.readexactly(n)
        self._last_received = self._loop.time()
        return data

    async def _next_packet(self) -> None:
        while True:
            while self._discard:
                self._discard -= len(await self._receive(min(self._discard, _CHUNK)))
            head, body = self._head, self._body
            # Fixed header: type byte, then 1-4 remaining-length bytes, high bit = "more follows".
            if not head:
                head += await self._receive(2)
            while head[-1] & 0x80 and len(head) < 5:
                head += await self._receive(1)
            if head[-1] & 0x80:
                self._writer.close()
                raise ConnectionResetError("malformed remaining length")
            remaining = sum((b & 0x7F) << (7 * i) for i, b in enumerate(head[1:]))
            kind, qos = head[0] >> 4, (head[0] >> 1) & 3
            if kind == _CONNECT and remaining > _MAX_CONNECT:
                # Not yet authenticated: do not let it make us buffer up to 256 MiB.
                self._writer.close()
                raise ConnectionResetError("CONNECT larger than its fields allow")
            if kind == _PUBLISH and self._max_payload is not None:
                await self._fill(body, min(2, remaining))
                variable = 2 + int.from_bytes(body[:2], "big") + (2 if qos else 0)
                await self._fill(body, min(variable, remaining))
                if remaining - variable > self._max_payload:
                    topic = bytes(body[2 : variable - (2 if qos else 0)])
                    self._drop(topic, body, qos)
                    self._discard = remaining - len(body)
                    head.clear()
                    body.clear()
                    continue
            await self._fill(body, remaining)
            if kind == _PUBREL and bytes(body) in self._dropped_qos2:
                self._dropped_qos2.remove(bytes(body))
                self._send(_PUBCOMP + bytes(body))
                head.clear()
                body.clear()
                continue
            if kind == _CONNECT:
                self._connect = bytes(body)
                self._start_keepalive(body)
            self._ready += head
            self._ready += body
            head.clear()
            body.clear()
            return

    async def _fill(self, body: bytearray, size: int) -> None:
        while len(body) < size:
            body += await self._receive(min(size - len(body), _CHUNK))

    def _drop(self, topic: bytes, variable_header: bytearray, qos: int) -> None:
        # Like Mosquitto's message_size_limit: drop, but acknowledge so a QoS 1/2 sender does not
        # retransmit it forever (MQTT 3.1.1 has no way to say "too large").
        logger.warning(
            "dropped a PUBLISH to %r from %s: payload larger than max_payload_bytes=%d",
            topic.decode(errors="replace"),
            self.peer,
            self._max_payload,
        )
        packet_id = bytes(variable_header[-2:])
        if qos == 1:
            self._send(_PUBACK + packet_id)
        elif qos == 2:
            self._dropped_qos2.add(packet_id)
            self._send(_PUBREC + packet_id)

    def _send(self, packet: bytes) -> None:
        # One write() of a whole packet cannot interleave with amqtt's, which are whole packets too.
        if not self._writer.is_closing():
            self._writer.write(packet)

    def _start_keepalive(self, body: bytearray) -> None:
        offset = 2 + int.from_bytes(body[:2], "big") + 2  # protocol name, level, flags
        self._keepalive = 1.5 * int.from_bytes(body[offset : offset + 2], "big")
        if self._keepalive:
            self._watchdog = self._loop.call_later(self._keepalive, self._check_alive)

    def _check_alive(self) -> None:
        # amqtt 0.12 ignores keep-alive, so dead peers would linger and their will message never
        # be published; MQTT-3.1.2-24 says disconnect after 1.5 x keep-alive. One timer per
        # connection, re-armed from the last receive, costs less than a timeout per read.
        idle = self._loop.time() - self._last_received
        if idle < self._keepalive:
            self._watchdog = self._loop.call_later(self._keepalive - idle, self._check_alive)
            return
        logger.info("closing MQTT connection from %s: keep-alive expired", self.peer)
        # abort, not close: close() would first flush to a peer that is gone. amqtt then sees
        # end of stream and runs its abnormal-disconnect path (will message).
        self._writer.transport.abort()

    @property
    def peer(self) -> str:
        peer = self._writer.get_extra_info("peername")
        return _hostport(str(peer[0]), int(peer[1])) if peer else "an unknown peer"


class EmbeddedBroker:
    """An amqtt MQTT 3.1.1 broker serving on ``host:port`` inside the running event loop.

    ``users`` maps username to password hash (``$7$...``, see :mod:`bridge.passwords`).
    ``allow_anonymous=None`` admits clients without a username only on a loopback host without
    ``users``; a non-loopback host needs ``users`` or an explicit ``allow_anonymous=True``.
    ``owner_credentials`` log in whatever the settings: they are for the bridge's own client.
    A PUBLISH whose payload exceeds ``max_payload_bytes`` is dropped (and acknowledged) before
    it is buffered.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        allow_anonymous: bool | None = None,
        users: Mapping[str, str] | None = None,
        max_payload_bytes: int | None = None,
    ) -> None:
        host = host.removeprefix("[").removesuffix("]")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port!r}")
        if max_payload_bytes is not None and max_payload_bytes < 1:
            raise ValueError(f"max_payload_bytes must be at least 1, not {max_payload_bytes!r}")
        self._hashes: dict[str, PasswordHash] = {}
        for name, text in (users or {}).items():
            try:
                self._hashes[name] = PasswordHash.parse(text)
            except ValueError as exc:
                raise ValueError(f"users[{name!r}]: {exc}") from None
        problem = _embedded_access_problem(host, port, allow_anonymous, bool(self._hashes))
        if problem is not None:
            key, message = problem
            raise EmbeddedBrokerError(f"refusing to start the embedded broker: {key}: {message}")
        self.host = host
        self.port = port
        self.allow_anonymous = _embedded_allows_anonymous(host, allow_anonymous, bool(self._hashes))
        self.max_payload_bytes = max_payload_bytes
        # Random per broker: the bridge's own client needs no configured password, and nobody
        # who does not share the bridge's process can know this one.
        self.owner_credentials = (f"mqttbridge-{secrets.token_hex(4)}", secrets.token_urlsafe(32))
        self._broker: Any = None  # amqtt.broker.Broker while running
        self._servers: list[asyncio.Server] = []
        # Connection tasks and their streams, to end them on stop().
        self._connections: dict[asyncio.Task[Any], asyncio.StreamReader] = {}
        self._bound_port: int | None = None
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        """Where clients reach the broker: ``mqtt://host:port``, with the bound port once started.

        A wildcard host (``0.0.0.0``, ``::``, ``""``) is reported as the matching loopback
        address, since the URL is for connecting, not for binding.
        """
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"mqtt://{_hostport(host, self._bound_port or self.port)}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        """Bind, start amqtt, and return once the broker accepts TCP connections."""
        async with self._lock:
            if self._broker is not None:
                raise EmbeddedBrokerError(f"the embedded broker is already running at {self.url}")
            _quiet_chatty_loggers()
            sockets = await self._bind()
            broker: Any = None
            try:
                broker = _Broker(self._config())
                await broker.start()
                self._broker = broker  # before serving: _serve hands connections to it
                self._servers = [
                    await asyncio.start_server(self._serve, sock=sock, start_serving=False)
                    for sock in sockets
                ]
                for server in self._servers:
                    await server.start_serving()
            except Exception as exc:
                await self._abort_start(broker, sockets)
                raise EmbeddedBrokerError(f"cannot start the embedded broker: {exc}") from exc
            self._bound_port = sockets[0].getsockname()[1]
            logger.info("embedded MQTT broker listening on %s", self.url)

    async def _abort_start(self, broker: Any, sockets: list[socket.socket]) -> None:
        for server in self._servers:
            server.close()
        for sock in sockets:
            sock.close()
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await broker.shutdown()
        self._broker, self._servers = None, []

    async def stop(self) -> None:
        """Disconnect every client and release the port. Safe to call more than once."""
        async with self._lock:
            broker, servers, self._broker, self._servers = self._broker, self._servers, None, []
            if broker is None:
                return
            for server in servers:
                server.close()  # accept no one during shutdown
            shutdown = asyncio.ensure_future(broker.shutdown())
            try:
                done, _ = await asyncio.wait([shutdown], timeout=_SHUTDOWN_GRACE)
                if not done:
                    # On Python 3.11 asyncio.wait_for loses a cancellation that arrives as its
                    # inner read completes (https://github.com/python/cpython/issues/86296), so
                    # an amqtt reader loop can outlive its cancel and shutdown waits for it
                    # forever. End of stream ends that loop the normal way.
                    logger.debug("amqtt shutdown is slow; ending the client streams")
                    for stream in self._connections.values():
                        stream.feed_eof()
                await asyncio.wait_for(shutdown, _SHUTDOWN_TIMEOUT)
            except Exception:
                logger.exception("the embedded broker did not shut down cleanly")
            # Connections still waiting for their CONNECT were never amqtt's.
            for task in self._connections:
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            for server in servers:
                await server.wait_closed()
            self._bound_port = None
            logger.info("embedded MQTT broker stopped")

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _config(self) -> BrokerConfig:
        return BrokerConfig(
            # amqtt ignores "bind" for an external listener but skips listeners without one.
            listeners={
                _LISTENER: ListenerConfig(
                    type=ListenerType.EXTERNAL, bind=_hostport(self.host, self.port)
                )
            },
            # Replaces amqtt's defaults: its Event/PacketLoggerPlugin schedule an asyncio task per
            # packet even when nothing is logged, and BrokerSysPlugin ($SYS) needs psutil and
            # warns about it. Neither is needed to bridge messages.
            plugins={f"{__name__}.{_AdmitPlugin.__qualname__}": {}},
        )

    async def _bind(self) -> list[socket.socket]:
        """Bind every address of the host to one port (asyncio would pick one port per address)."""
        for _ in range(5):  # with port 0, another process may take our port between two binds
            try:
                return await self._bind_once()
            except EmbeddedBrokerError as exc:
                cause = exc.__cause__
                if not (self.port == 0 and isinstance(cause, OSError)):
                    raise
                if cause.errno != errno.EADDRINUSE:
                    raise
        raise EmbeddedBrokerError("cannot start the embedded broker: no free port found")

    async def _bind_once(self) -> list[socket.socket]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise EmbeddedBrokerError(
                f"cannot start the embedded broker: cannot resolve host {self.host!r} ({exc}). "
                "Set broker.listen to an address of this machine (e.g. 127.0.0.1:1883)."
            ) from exc
        sockets: list[socket.socket] = []
        port = self.port
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                # As amqtt and asyncio do: restarting must not wait out TIME_WAIT. On Linux it
                # still refuses a port another socket listens on, which is what we detect.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind((address[0], port, *address[2:]))
                    sock.listen(100)  # two bound-only SO_REUSEADDR sockets would not conflict
                except OSError as exc:
                    unavailable = exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
                    if unavailable and len(infos) > 1:
                        # "localhost" may resolve to ::1 on a host without IPv6: serve the rest.
                        sockets.pop().close()
                        continue
                    raise EmbeddedBrokerError(self._bind_error(exc, port)) from exc
                port = sock.getsockname()[1]
            if not sockets:
                raise EmbeddedBrokerError(
                    f"cannot start the embedded broker: no address of {self.host!r} can be "
                    "bound. Set broker.listen to an address of this machine (e.g. 127.0.0.1:1883)."
                )
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return sockets

    def _bind_error(self, exc: OSError, port: int) -> str:
        where = _hostport(self.host, port)
        if exc.errno == errno.EADDRINUSE:
            alternative = _hostport(self.host, port + 1 if port < 65535 else 1884)
            return (
                f"cannot start the embedded broker: {where} is already in use (another MQTT "
                "broker such as Mosquitto may be running there). Set broker.listen to a free "
                f"address (e.g. {alternative}) or point broker.url at the running broker "
                f"(mqtt://{where})."
            )
        if exc.errno == errno.EACCES:
            return (
                f"cannot start the embedded broker: permission denied to listen on {where} "
                "(ports below 1024 need privileges). Set broker.listen to a port such as 1883."
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            return (
                f"cannot start the embedded broker: {self.host} is not an address of this "
                "machine. Set broker.listen to one of its addresses (e.g. 127.0.0.1:1883)."
            )
        return f"cannot start the embedded broker: cannot listen on {where}: {exc}"

    async def _admits(self, connect: bytes, guarded: _GuardedReader) -> bool:
        try:
            username, password = _credentials(connect)
        except ValueError:
            logger.info("refused MQTT client %s: malformed CONNECT", guarded.peer)
            return False
        if username is None:
            if not self.allow_anonymous:
                logger.info("refused MQTT client %s: no username", guarded.peer)
            return self.allow_anonymous
        owner, secret = self.owner_credentials
        if username == owner and hmac.compare_digest(password or b"", secret.encode()):
            return True
        # Hash even for an unknown user, so timing says nothing about who exists. In a thread:
        # a hash costs milliseconds, which the loop spends moving messages instead.
        known = self._hashes.get(username)
        matches = await asyncio.to_thread((known or _UNKNOWN_USER).verify, password or b"")
        if matches and known is not None:
            return True
        logger.info("refused MQTT client %s: bad credentials for %r", guarded.peer, username)
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = reader
        guarded = _GuardedReader(reader, writer, self.max_payload_bytes)
        try:
            # Wait for CONNECT here, not in amqtt: it waits forever (MQTT-3.1.4 says a server
            # SHOULD give up) and logs an ERROR for every port probe that sends nothing.
            try:
                async with asyncio.timeout(_CONNECT_TIMEOUT):
                    connect = await guarded.read_connect()
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                connect = None
            broker = self._broker
            if connect is None or broker is None:
                logger.debug("closing a connection that sent no CONNECT")
                return
            refusal = _protocol_refusal(connect)
            if refusal is not None:
                connack, reason = refusal
                logger.info("refused MQTT client %s: %s", guarded.peer, reason)
                if connack is not None:
                    writer.write(connack)
                return
            # Authenticate before amqtt sees the client: amqtt 0.12 keeps a session for every
            # refused CONNECT forever, and lets a refused client take over (disconnect) the
            # connected client whose client id it claims.
            if not await self._admits(connect, guarded):
                writer.write(_NOT_AUTHORIZED)
                return
            await broker.external_connected(guarded, StreamWriterAdapter(writer), _LISTENER)
        except Exception:
            logger.exception("MQTT connection failed inside the embedded broker")
        finally:
            guarded.close()
            del self._connections[task]
            # amqtt leaves the socket open when the first packet is not a valid CONNECT.
            with contextlib.suppress(Exception):
                writer.close()
