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


class NumberedPublisher:
    """Publishes 0, 1, 2, ... at QoS 1 from a thread, round-robin over ``topics``, until
    ``stop()``; ``acked`` holds the numbers the broker acknowledged (PUBACK), the ones an
    at-least-once pipeline behind the broker must not lose. At most ``window`` unacknowledged
    at a time, so the pace follows the broker rather than a clock."""

    def __init__(self, client: PahoClient, topics: list[str], window: int = 100) -> None:
        self.client = client
        self.topics = topics
        self.window = window
        self.acked: set[int] = set()
        self._numbers: dict[int, int] = {}  # mid -> number, until its PUBACK
        self._early: set[int] = set()  # mids acknowledged before publish() returned them
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self.sent = 0
        client.client.on_publish = self._on_publish
        self._thread = threading.Thread(target=self._run, name="numbered-publisher", daemon=True)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._lock:
            number = self._numbers.pop(mid, None)
            if number is None:
                self._early.add(mid)
            else:
                self.acked.add(number)
            self._lock.notify_all()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if not self._lock.wait_for(lambda: len(self._numbers) < self.window, 0.1):
                    continue
            # Not under our lock: paho calls on_publish holding its own, which publish() takes.
            number = self.sent
            info = self.client.client.publish(
                self.topics[number % len(self.topics)], str(number), qos=1
            )
            with self._lock:
                if info.mid in self._early:  # the PUBACK came first
                    self._early.discard(info.mid)
                    self.acked.add(number)
                else:
                    self._numbers[info.mid] = number
                self.sent += 1

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop publishing and wait for the PUBACKs of what was sent."""
        self._stopping.set()
        self._thread.join(timeout)
        with self._lock:
            if not self._lock.wait_for(lambda: not self._numbers, timeout):
                raise TimeoutError(
                    f"{len(self._numbers)} publishes unacknowledged after {timeout} s"
                )
