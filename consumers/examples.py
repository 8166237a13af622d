"""Example consumers, wired up by the repository's config.yaml.

* ``TemperatureConsumer`` — one instance per device on ``sensors/{device_id}/temperature``:
  decodes JSON readings, switches the device's fan through ``devices/{device_id}/commands``, and
  forwards every reading to the ``telemetry`` group, which any consumer of yours (a WebSocket
  consumer feeding a dashboard, say) can join to see readings live.
  Django code can command a device with
  ``group_send("device.<id>", {"type": "device.command", "command": {...}})``.
* ``StatusConsumer`` — logs devices going online and offline (``devices/{device_id}/status``).
"""

from __future__ import annotations

import logging
from typing import Any

from .base import InvalidPayload, JsonMqttConsumer, MqttConsumer

__all__ = ["StatusConsumer", "TemperatureConsumer"]

logger = logging.getLogger(__name__)


class TemperatureConsumer(JsonMqttConsumer):
    groups = ["device.{device_id}"]
    fan_on_above = 25.0
    fan_off_below = 23.0

    async def connect(self) -> None:
        self.device_id = self.topic_kwargs["device_id"]
        self.fan_on = False
        logger.info("device %s: first reading, instance started", self.device_id)

    async def receive_json(self, content: Any, message: dict[str, Any]) -> None:
        celsius = _celsius(content)
        logger.info("device %s: %.1f °C", self.device_id, celsius)
        if celsius > self.fan_on_above and not self.fan_on:
            self.fan_on = True
            await self.command({"fan": "on", "reason": f"{celsius:.1f} °C"})
        elif celsius < self.fan_off_below and self.fan_on:
            self.fan_on = False
            await self.command({"fan": "off", "reason": f"{celsius:.1f} °C"})
        if self.channel_layer is not None:
            await self.channel_layer.group_send(
                "telemetry",
                {"type": "telemetry.reading", "device_id": self.device_id, "celsius": celsius},
            )

    async def command(self, command: dict[str, Any]) -> None:
        logger.info("device %s: sending command %s", self.device_id, command)
        await self.publish_json(f"devices/{self.device_id}/commands", command, qos=1)

    async def device_command(self, event: dict[str, Any]) -> None:
        """A command from Django code through the channel layer."""
        await self.command(event["command"])

    async def disconnect(self) -> None:
        logger.info("device %s: instance closed", self.device_id)


def _celsius(content: Any) -> float:
    """The reading's temperature. Anything else is bad input: dead-lettered, and the instance
    keeps its fan state (a KeyError would crash it and a fresh one would start with the fan
    "off")."""
    if not isinstance(content, dict):
        raise InvalidPayload(f"a reading must be a JSON object, got {type(content).__name__}")
    if "celsius" not in content:
        raise InvalidPayload(f"a reading needs a number 'celsius', got keys {sorted(content)[:10]}")
    value = content["celsius"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPayload(f"a reading's 'celsius' must be a number, got {type(value).__name__}")
    return float(value)


class StatusConsumer(MqttConsumer):
    async def receive(self, message: dict[str, Any]) -> None:
        device_id = self.topic_kwargs["device_id"]
        status = message["payload"].decode("utf-8", "replace")
        logger.info("device %s is %s", device_id, status)
