"""An asyncio face on paho-mqtt: one client, driven by the event loop, that does not give up
on a broker it has once reached.

Why not ``loop_start()`` or aiomqtt: the per-message path is the product. A paho thread costs a
thread hop per message; aiomqtt adds a queue and a task switch per message. Here paho is driven
from the event loop with ``add_reader`` (as paho's own external-loop examples do), and its
socket reads are buffered: paho asks the socket for one byte, then the length, then the body,
so three ``recv`` calls per packet; ``BufferedClient`` reads up to 64 KiB at once and serves
paho from memory, then the bridge drains every complete packet in one callback. Every use of
paho's private API is in ``paho_private``, so a paho upgrade is checked in one place.

This module owns the connection: connect, say why an attempt failed (``_connect_errors``) and
stop if the first one failed in a way no retry can fix, reconnect with backoff and jitter,
re-subscribing every filter after each reconnect (whether or not the broker kept the session),
queueing publishes while disconnected, and futures for PUBACK/SUBACK.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from mqttbridge.config.schema import BrokerConfig
from mqttbridge.mqtt.connect_errors import ClosedBeforeConnack, ConnectFailure, diagnose, refused
from mqttbridge.mqtt.paho_private import (
    BufferedClient,
    keep_ping_pending,
    set_max_inflight,
    ssl_context,
)

__all__ = ["BrokerUnusable", "ConnectionLost", "MqttClient", "OutboundQueueFull", "PublishFailed"]

logger = logging.getLogger(__name__)


# Packets handled per reader callback before yielding to other tasks.
_MAX_PACKETS_PER_WAKEUP = 2000
# How long to wait for CONNACK before trying again (seconds).
_CONNACK_TIMEOUT = 5.0
# How often keepalive and dead-link checks run (seconds).
_MISC_INTERVAL = 0.5


class OutboundQueueFull(RuntimeError):
    """The broker is unreachable and the outbound queue is at its bound."""


class PublishFailed(RuntimeError):
    """The broker refused a publish, or the connection ended before it acknowledged it."""


class ConnectionLost(RuntimeError):
    """The connection to the broker ended before an operation completed."""


class BrokerUnusable(RuntimeError):
    """The first connection failed in a way no retry can fix (a certificate that does not
    verify, a refused password): ``str()`` is one line naming the setting to change."""


class MqttClient:
    """One MQTT connection owned by the event loop. Create, ``await start()``, ``await stop()``."""

    def __init__(
        self,
        config: BrokerConfig,
        on_message: Callable[[paho.MQTTMessage], None],
        *,
        on_connect: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[str], None] | None = None,
        on_unusable: Callable[[BrokerUnusable], None] | None = None,
        client_id: str | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.config = config
        # The embedded broker may listen on a port chosen at start-up, so these can differ.
        self.host = host or config.host
        self.port = port or config.port
        self.client_id = client_id or config.client_id or ""
        self._on_message_cb = on_message
        self._on_connect_cb = on_connect
        self._on_disconnect_cb = on_disconnect
        self._on_unusable_cb = on_unusable
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = self._make_client()
        self._subscriptions: dict[str, int] = {}
        self._outbound: collections.deque[
            tuple[str, bytes, int, bool, Any, asyncio.Future[None] | None]
        ] = collections.deque()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._sock: Any = None
        self._reading_paused = False
        self._last_read = 0.0
        self._flush_scheduled = False
        self._misc_handle: asyncio.TimerHandle | None = None
        self._connector: asyncio.Task[None] | None = None
        self.stats: collections.Counter[str] = collections.Counter()

    # -- construction -----------------------------------------------------------------------

    def _make_client(self) -> BufferedClient:
        cfg = self.config
        v5 = cfg.protocol == "5"
        kwargs: dict[str, Any] = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": self.client_id,
            "protocol": paho.MQTTv5 if v5 else paho.MQTTv311,
            "transport": "websockets" if cfg.scheme in ("ws", "wss") else "tcp",
            "reconnect_on_failure": False,  # reconnects are ours, with backoff and resubscribe
            # Acknowledge only after the application handled the message (docs/guarantees.md).
            "manual_ack": True,
        }
        if not v5:
            kwargs["clean_session"] = cfg.clean_start
        client = BufferedClient(**kwargs)
        if cfg.scheme in ("ws", "wss"):
            client.ws_set_options(path=cfg.path or "/mqtt")
        if cfg.scheme in ("mqtts", "wss"):
            tls = cfg.tls
            client.tls_set(
                ca_certs=tls.ca_file,
                certfile=tls.cert_file,
                keyfile=tls.key_file,
                cert_reqs=ssl.CERT_NONE if tls.insecure else ssl.CERT_REQUIRED,
            )
            if tls.insecure:
                client.tls_insecure_set(True)
                logger.warning("TLS certificate verification is DISABLED (broker.tls.insecure)")
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        client.max_inflight_messages_set(0)  # set from the broker's Receive Maximum on connect
        client.max_queued_messages_set(0)
        client.on_message = self._handle_message
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        client.on_subscribe = self._handle_subscribe
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        return client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker(self) -> str:
        return f"{self.host}:{self.port}"

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin connecting (in the background, retrying forever until ``stop()``)."""
        self._loop = asyncio.get_running_loop()
        self._connector = self._loop.create_task(self._connect_forever(), name="mqtt-connect")

    async def stop(self) -> None:
        """Disconnect cleanly (DISCONNECT sent after queued packets are written)."""
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
        if self._sock is not None:
            self._client.disconnect()
            self._flush()
        self._teardown_socket()
        if self._outbound:
            logger.error(
                "shutting down with %d publishes still queued for %s: they are not sent",
                len(self._outbound),
                self.broker,
            )
            for *_, future in self._outbound:
                if future is not None and not future.done():
                    future.set_exception(ConnectionLost("the bridge shut down before sending it"))
            self._outbound.clear()
        self._fail_pending(ConnectionLost("the bridge is shutting down"))

    async def _connect_forever(self) -> None:
        delay = self.config.reconnect.min_delay
        loop = asyncio.get_running_loop()
        reported: ConnectFailure | None = None
        while not self._closing:
            failure = await self._attempt(loop)
            if failure is None:
                return
            self._teardown_socket()
            if failure.permanent and not self.stats["connects"] and self._on_unusable_cb:
                # Never connected since start: a setting is wrong, so stop with one line that
                # names it rather than retry forever (docs/guarantees.md).
                logger.error("%s (not retrying)", failure.message)
                self._on_unusable_cb(BrokerUnusable(failure.message))
                return
            if not failure.permanent:
                logger.warning("%s", failure.message)
            elif reported is not None and reported.reason == failure.reason:
                logger.error("still cannot connect to broker %s: %s", self.broker, failure.reason)
            else:
                logger.error("%s", failure.message)
            reported = failure if failure.permanent else None
            if failure.permanent:
                # Fixed by a person, not by time: retry, but no faster than max_delay.
                delay = self.config.reconnect.max_delay
            # Full jitter keeps a fleet of bridges from reconnecting in lockstep.
            sleep = random.uniform(delay / 2, delay)
            logger.info("reconnecting to %s in %.1f s", self.broker, sleep)
            await asyncio.sleep(sleep)
            delay = min(delay * 2, self.config.reconnect.max_delay)

    async def _attempt(self, loop: asyncio.AbstractEventLoop) -> ConnectFailure | None:
        """One connection attempt up to CONNACK: None once connected, else why it failed."""
        cfg = self.config
        self._connack = connack = loop.create_future()
        try:
            await loop.run_in_executor(None, self._connect_blocking)
            # A broker that accepts TCP but never answers (paused, overloaded) must not hold
            # the reconnect for a whole keepalive.
            reason = await asyncio.wait_for(
                asyncio.shield(connack), min(cfg.keepalive, _CONNACK_TIMEOUT)
            )
        except TimeoutError:
            return ConnectFailure(
                f"no answer from broker {self.broker} (connect or CONNACK timed out)",
                "no answer",
                permanent=False,
            )
        except OSError as exc:  # refused, reset, TLS errors, ClosedBeforeConnack
            tls_context = ssl_context(self._client) if cfg.uses_tls else None
            return await loop.run_in_executor(
                None, diagnose, exc, cfg, self.host, self.port, tls_context
            )
        finally:
            connack.cancel()  # a late close of this attempt must not report into the next one
        if reason.is_failure:
            return refused(reason, cfg, self.broker, self.client_id)
        return None

    def _connect_blocking(self) -> None:
        cfg = self.config
        self._client.reset_buffer()
        props = None
        if cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = cfg.session_expiry
            props.ReceiveMaximum = 65535
            self._client.connect(
                self.host,
                self.port,
                cfg.keepalive,
                clean_start=cfg.clean_start,
                properties=props,
            )
        else:
            self._client.connect(self.host, self.port, cfg.keepalive)

    # -- socket plumbing ----------------------------------------------------------------------

    def _call_in_loop(self, fn: Callable[[], None]) -> None:
        # paho calls on_socket_open from connect(), which runs in an executor thread.
        assert self._loop is not None
        if _in_loop(self._loop):
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    def _socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(OSError, AttributeError):
            # Small packets (PUBACKs, replies) must not wait for Nagle: a consumer's reply to a
            # device took 1.2 ms at p50 with it, 0.4 ms without.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def register() -> None:
            assert self._loop is not None
            self._sock = sock
            self._last_read = time.monotonic()
            self._reading_paused = False
            self._loop.add_reader(sock, self._on_readable)
            self._schedule_misc()
            self._flush()

        self._call_in_loop(register)

    def _socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._call_in_loop(self._teardown_socket)

    def _teardown_socket(self) -> None:
        if self._sock is not None and self._loop is not None:
            try:
                self._loop.remove_reader(self._sock)
                self._loop.remove_writer(self._sock)
            except (ValueError, OSError):
                pass  # the socket was already closed
        self._sock = None
        if self._misc_handle is not None:
            self._misc_handle.cancel()
            self._misc_handle = None

    def _register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # Batch writes: everything queued during this loop iteration goes out in one pass.
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            if _in_loop(self._loop):
                self._loop.call_soon(self._flush)
            else:  # CONNECT is queued from the executor thread that runs connect()
                self._loop.call_soon_threadsafe(self._flush)

    def _unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_writer(self._sock)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._sock is None:
            return
        self._client.loop_write()
        if self._client.want_write() and self._sock is not None and self._loop is not None:
            self._loop.add_writer(self._sock, self._flush)

    def _on_readable(self) -> None:
        client = self._client
        self._last_read = time.monotonic()
        client.loop_read()
        count = 1
        while self._sock is not None and client.buffered():
            if self._reading_paused or count >= _MAX_PACKETS_PER_WAKEUP:
                # Packets are already in memory; come back for them on a later iteration.
                if not self._reading_paused and self._loop is not None:
                    self._loop.call_soon(self._on_readable)
                return
            client.loop_read()
            count += 1

    def _schedule_misc(self) -> None:
        assert self._loop is not None
        self._misc_handle = self._loop.call_later(_MISC_INTERVAL, self._misc)

    def _misc(self) -> None:
        # Keepalive: paho sends PINGREQ once the link has been quiet for a keepalive.
        self._misc_handle = None
        if self._sock is None:
            return
        now = time.monotonic()
        keepalive = self.config.keepalive
        if self._reading_paused:
            # Not reading (backpressure), so PINGRESPs wait unread in the socket: keep pinging so
            # the broker sees us alive, and don't let paho take the missing PINGRESP for a dead
            # link (it closes once a PINGREQ is unanswered for a keepalive).
            keep_ping_pending(self._client)
            self._last_read = now
        elif keepalive and now - self._last_read > 1.5 * keepalive:
            # paho alone notices a dead link (broker paused, cable pulled) only after up to two
            # keepalives: a keepalive before it pings, another before it gives up on the answer.
            logger.warning(
                "nothing from %s for %.1f s (1.5 x keepalive %d s); dropping the dead connection",
                self.broker,
                now - self._last_read,
                keepalive,
            )
            self.stats["dead_links"] += 1
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # the reader sees EOF: paho's normal path
            return
        self._client.loop_misc()
        if self._sock is not None:
            self._schedule_misc()

    def pause_reading(self) -> None:
        """Stop reading from the broker: backpressure for a slow application (TCP fills up)."""
        if not self._reading_paused and self._sock is not None and self._loop is not None:
            self._reading_paused = True
            self._loop.remove_reader(self._sock)
            self.stats["reading_paused"] += 1
            logger.warning(
                "an application instance is falling behind; pausing reads from the broker"
            )

    def stop_reading(self) -> None:
        """Stop intake for good (shutdown): unread messages stay with the broker."""
        if self._sock is not None and self._loop is not None:
            self._reading_paused = True
            self._loop.remove_reader(self._sock)

    def resume_reading(self) -> None:
        if self._reading_paused and self._sock is not None and self._loop is not None:
            self._reading_paused = False
            self._loop.add_reader(self._sock, self._on_readable)
            if self._client.buffered():
                self._loop.call_soon(self._on_readable)

    # -- paho callbacks (run on the event loop thread) ----------------------------------------

    def _handle_message(
        self, client: paho.Client, userdata: Any, message: paho.MQTTMessage
    ) -> None:
        self._on_message_cb(message)

    def _handle_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)
        if reason.is_failure:
            return
        # Honour the broker's Receive Maximum (MQTT 5 3.2.2.3.3): exceeding it is a protocol
        # error. Otherwise 0 = unlimited; paho rescans every in-flight message on each PUBACK
        # when a limit is set, which made a 10,000-message backlog take seconds to drain.
        # paho's setter refuses a connected client, and the value is only known now (CONNACK).
        receive_maximum = getattr(props, "ReceiveMaximum", 0) if props is not None else 0
        set_max_inflight(self._client, receive_maximum if 0 < receive_maximum < 65535 else 0)
        session_present = bool(getattr(flags, "session_present", False))
        logger.info(
            "connected to %s as %r (session present: %s)",
            self.broker,
            self.client_id,
            session_present,
        )
        self._connected.set()
        self.stats["connects"] += 1
        # Re-subscribe everything, whether or not the broker kept our session: a broker that
        # lost its state (restart without persistence) would otherwise silently stop sending.
        if self._subscriptions:
            self._client.subscribe(list(self._subscriptions.items()))
        if self._outbound and self._loop is not None:
            # After paho re-sends the publishes that were in flight when the link dropped
            # (it does so right after this callback), so the broker gets them in order.
            self._loop.call_soon(self._drain_outbound)
        if self._on_connect_cb is not None:
            self._on_connect_cb(session_present)

    def _drain_outbound(self) -> None:
        if not self._outbound:
            return  # already drained by publish() (see there); nothing to log twice
        while self._outbound and self.connected and self._sock is not None:
            topic, payload, qos, retain, props_, future = self._outbound.popleft()
            self._publish_now(topic, payload, qos, retain, props_, future)
        if self._outbound:
            logger.info("%d publishes still queued for %s", len(self._outbound), self.broker)
        else:
            logger.info("outbound queue drained to %s", self.broker)

    def _handle_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._teardown_socket()
        if self._connack is not None and not self._connack.done():
            # Closed before CONNACK: report it now, with the read error that says why (a TLS
            # alert), instead of as a CONNACK timeout seconds later.
            self._connack.set_exception(ClosedBeforeConnack(self._client.read_error))
        # SUBACKs will not come (every filter is re-subscribed on reconnect). PUBACK futures stay:
        # paho re-sends unacknowledged QoS 1/2 publishes after reconnecting, with DUP set.
        self._fail_subacks(ConnectionLost(f"connection to {self.broker} lost: {reason}"))
        if self._closing:
            return
        if was_connected:
            logger.warning("disconnected from %s: %s", self.broker, reason)
            if self._on_disconnect_cb is not None:
                self._on_disconnect_cb(str(reason))
        if self._loop is None:
            return
        if self._connector is None or self._connector.done():
            self._connector = self._loop.create_task(self._connect_forever(), name="mqtt-reconnect")
        else:
            # The connector has not finished yet: it may be returning from the attempt that
            # just succeeded, before this loss. Seen under load, it then ended and nothing
            # reconnected. Once it ends, reconnect unless it left us connected.
            self._connector.add_done_callback(self._reconnect_if_lost)

    def _reconnect_if_lost(self, connector: asyncio.Future[None]) -> None:
        if self._closing or self.connected or connector is not self._connector:
            return
        assert self._loop is not None
        self._connector = self._loop.create_task(self._connect_forever(), name="mqtt-reconnect")

    def _handle_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        future = self._acks.pop(mid, None)
        if future is None or future.done():
            return
        if reason.is_failure:
            future.set_exception(PublishFailed(f"broker refused the publish: {reason}"))
        else:
            future.set_result(None)

    def _handle_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        for reason in reasons:
            if reason.is_failure:
                logger.error("broker %s refused a subscription: %s", self.broker, reason)
        future = self._subacks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(reasons)

    def _fail_pending(self, exc: Exception) -> None:
        for future in self._acks.values():
            if not future.done():
                future.set_exception(exc)
        self._acks.clear()
        self._fail_subacks(exc)

    def _fail_subacks(self, exc: Exception) -> None:
        for sfuture in self._subacks.values():
            if not sfuture.done():
                sfuture.set_exception(exc)
        self._subacks.clear()

    # -- operations ---------------------------------------------------------------------------

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received QoS 1/2 message (after the application handled it)."""
        if self._sock is not None:
            self._client.ack(mid, qos)

    def subscribe(self, topic_filter: str, qos: int) -> asyncio.Future[list[ReasonCode]] | None:
        """Subscribe now if connected, and after every reconnect. Returns a SUBACK future."""
        self._subscriptions[topic_filter] = qos
        if not self.connected:
            return None
        rc, mid = self._client.subscribe(topic_filter, qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return None
        assert self._loop is not None
        future: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subacks[mid] = future
        return future

    def unsubscribe(self, topic_filter: str) -> None:
        if self._subscriptions.pop(topic_filter, None) is not None and self.connected:
            self._client.unsubscribe(topic_filter)

    @property
    def subscriptions(self) -> dict[str, int]:
        return dict(self._subscriptions)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
        *,
        confirm: bool = False,
    ) -> asyncio.Future[None] | None:
        """Publish (or queue while disconnected). With ``confirm`` returns a future for PUBACK.

        Raises :class:`OutboundQueueFull` when disconnected and the queue is at its bound:
        a QoS >= 1 publish is never dropped silently.
        """
        future: asyncio.Future[None] | None = None
        if confirm:
            assert self._loop is not None
            future = self._loop.create_future()
        if self.connected and self._sock is not None:
            if self._outbound:
                # Connected, but the drain scheduled by the CONNACK callback has not run yet: a
                # publish made in between (any task ready in that loop iteration) would overtake
                # the queued ones. Send those first; MQTT orders messages per topic (4.6).
                self._drain_outbound()
            self._publish_now(topic, payload, qos, retain, properties, future)
            return future
        if len(self._outbound) >= self.config.outbound_queue:
            self.stats["outbound_rejected"] += 1
            logger.error(
                "broker %s unreachable and %d publishes already queued; refusing publish to %r",
                self.broker,
                len(self._outbound),
                topic,
            )
            raise OutboundQueueFull(
                f"broker {self.broker} is unreachable and the outbound queue is full "
                f"({self.config.outbound_queue} messages, broker.outbound_queue)"
            )
        self._outbound.append((topic, payload, qos, retain, properties, future))
        self.stats["outbound_queued"] += 1
        return future

    def _publish_now(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties | None,
        future: asyncio.Future[None] | None,
    ) -> None:
        info = self._client.publish(topic, payload, qos, retain, properties)
        self.stats["published"] += 1
        if future is not None:
            if (
                info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS
                and info.rc != MQTTErrorCode.MQTT_ERR_NO_CONN
            ):
                future.set_exception(PublishFailed(paho.error_string(info.rc)))
            elif qos == 0:
                future.set_result(None)
            else:
                self._acks[info.mid] = future


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
