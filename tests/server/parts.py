"""The server's parts wired as ``Server`` wires them, without a broker: unit tests drive
``dispatch.on_message`` with paho messages and see what reached the client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from mqttbridge.server.server import Server
from tests.bridge_fixtures import bridge_config


class RecordingClient:
    """Stands in for ``MqttClient`` where a test is about the server's parts, not the client
    (tests/mqtt and the integration tests use the real one against Mosquitto)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, int, bool]] = []
        self.acked: list[int] = []
        self.subscriptions: dict[str, int] = {}
        self.reading = True
        self.pauses = 0

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        properties: Any = None,
        *,
        confirm: bool = False,
    ) -> asyncio.Future[None] | None:
        self.published.append((topic, payload, qos, retain))
        if not confirm:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    def subscribe(self, topic_filter: str, qos: int) -> None:
        self.subscriptions[topic_filter] = qos

    def unsubscribe(self, topic_filter: str) -> None:
        self.subscriptions.pop(topic_filter, None)

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def dead_letters(self) -> list[bytes]:
        return [payload for topic, payload, _, _ in self.published if topic.endswith("dead-letter")]


def server_with(limits: str = "", **kwargs: Any) -> tuple[Server, RecordingClient]:
    """A ``Server`` that is not started, its client replaced by a ``RecordingClient``."""
    extra = f"limits:\n{limits}" if limits else ""
    server = Server(
        bridge_config("mqtt://127.0.0.1:1", extra), install_signal_handlers=False, **kwargs
    )
    client = RecordingClient()
    server.link.client = client  # type: ignore[assignment]
    return server, client


def message(topic: bytes | str, payload: bytes = b"x", *, mid: int = 1, qos: int = 1) -> Any:
    raw = topic.encode() if isinstance(topic, str) else topic
    msg = paho.MQTTMessage(mid=mid, topic=raw)
    msg.payload = payload
    msg.qos = qos
    return msg


async def settle(condition: Callable[[], Any] = lambda: False, rounds: int = 50) -> None:
    """Let instance tasks run: until ``condition`` holds, or ``rounds`` loop iterations."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
