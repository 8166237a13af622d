"""The consumers under test: each does the least a real one would, so the server is measured.

``COUNTER`` is shared by every instance in the process (one per device), and the runner that
imported this module reads it.
"""

from __future__ import annotations

from typing import Any

from mqttasgi.consumers import MqttConsumer as MqttasgiConsumer

from bench.common import Counter
from mqttbridge.consumers import MqttConsumer

__all__ = ["COUNTER", "CountingConsumer", "MqttasgiCountingConsumer", "PongConsumer"]

COUNTER = Counter()


class CountingConsumer(MqttConsumer):
    """Routed by the bridge (one instance per device id); counts what it handles."""

    async def receive(self, message: dict[str, Any]) -> None:
        COUNTER.hit()


class PongConsumer(MqttConsumer):
    """Answers ``rt/{device_id}/ping`` on ``rt/{device_id}/pong`` with the same payload."""

    qos = 0  # of the answer; the runner sets it from --qos

    async def connect(self) -> None:
        self.pong_topic = f"rt/{self.topic_kwargs['device_id']}/pong"

    async def receive(self, message: dict[str, Any]) -> None:
        await self.publish(self.pong_topic, message["payload"], qos=self.qos)
        COUNTER.hit()


class MqttasgiCountingConsumer(MqttasgiConsumer):  # type: ignore[misc]
    """An mqttasgi application as its users write them: one instance, subscribing in connect().

    Run as is by mqttasgi's server and, unchanged, by the bridge in application mode.
    """

    topic = "bench/+/data"
    qos = 0  # the runners set it from --qos

    async def connect(self) -> None:
        await self.subscribe(self.topic, self.qos)

    async def receive(self, mqtt_message: dict[str, Any]) -> None:
        COUNTER.hit()
