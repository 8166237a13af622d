"""A small synchronous MQTT client for tests, on paho-mqtt's network thread."""

from __future__ import annotations

import contextlib
import queue
import threading
from types import TracebackType
from typing import Any, Self


class PahoClient:
    """A paho-mqtt 2.x client run on its own thread, collecting messages for assertions.

    >>> with PahoClient(broker.host, broker.port) as client:
    ...     client.subscribe("a/#", qos=1)
    ...     client.publish("a/b", b"x", qos=1)
    ...     assert client.next_message().payload == b"x"
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str = "",
        clean_session: bool = True,
        keepalive: int = 60,
        **client_kwargs: Any,
    ) -> None:
        import paho.mqtt.client as mqtt  # imported here so unit tests need no paho

        self.host, self.port, self.keepalive = host, port, keepalive
        if client_kwargs.get("protocol") != mqtt.MQTTv5:
            client_kwargs["clean_session"] = clean_session  # MQTT 5 has clean_start instead
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **client_kwargs
        )
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.session_present: bool | None = None
        self._subacked: set[int] = set()
        self._suback_arrived = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)

    def _on_connect(self, _client: Any, _userdata: Any, flags: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            self.session_present = flags.session_present
            self.disconnected.clear()
            self.connected.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _f: Any, _r: Any, _p: Any) -> None:
        self.connected.clear()
        self.disconnected.set()

    def _on_subscribe(self, _client: Any, _userdata: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._suback_arrived:
            self._subacked.add(mid)
            self._suback_arrived.notify_all()

    def connect(self, wait: float | None = 5.0) -> None:
        """Connect and start the network thread; with `wait`, raise unless CONNACK comes in time."""
        self.client.connect(self.host, self.port, self.keepalive)
        self.client.loop_start()
        if wait is not None and not self.connected.wait(wait):
            raise TimeoutError(f"no CONNACK from {self.host}:{self.port} within {wait} s")

    def subscribe(self, topic: str, qos: int = 0, timeout: float = 5.0) -> None:
        """Subscribe and wait for the SUBACK, so a following publish is sure to be routed."""
        # The SUBACK may arrive on the network thread before subscribe() returns its mid,
        # hence a set of acknowledged ids rather than a per-call callback.
        _, mid = self.client.subscribe(topic, qos)
        with self._suback_arrived:
            if not self._suback_arrived.wait_for(lambda: mid in self._subacked, timeout):
                raise TimeoutError(f"no SUBACK for {topic!r} within {timeout} s")

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, timeout: float = 5.0) -> None:
        """Publish and, for QoS > 0, wait until the broker acknowledged it."""
        info = self.client.publish(topic, payload, qos)
        if qos:
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise TimeoutError(f"no acknowledgement for QoS {qos} {topic!r} in {timeout} s")

    def next_message(self, timeout: float = 5.0) -> Any:
        """The next received `MQTTMessage`; raises `AssertionError` if none comes in time."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"expected an MQTT message within {timeout} s, got none") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
