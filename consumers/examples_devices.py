"""Example consumers for the simulator's shipped profiles, wired up by the repository's config.yaml.

* ``TelemetryConsumer`` — readings of any profile (Tasmota ``STATE``, Shelly relay and meter
  topics, ESPHome sensors, Zigbee2MQTT device JSON): checks them, keeps rolling statistics per
  device and field, and ``group_send``s each reading to ``telemetry.<device id>``, the group a
  dashboard's WebSocket consumer joins to follow one device.
* ``ThermostatConsumer`` — a heater on a Tasmota plug: reads ``tele/<id>/SENSOR``'s temperature
  and switches ``cmnd/<id>/POWER`` ON below ``heat_below`` and OFF above ``heat_until``
  (20.5 and 21.5 °C: close, so that the demo shows it switching).
* ``FanConsumer`` — the generic sensor's fan (``TemperatureConsumer``), and echoes a reading's
  ``ref`` in its reply, which is what ``mqttbridge simulate --round-trip`` times.
* ``PresenceConsumer`` — who is online, from birth messages and last wills: Tasmota ``LWT``
  (Online/Offline), Shelly ``online`` (true/false), ESPHome and the generic sensor's ``status``
  (online/offline), Zigbee2MQTT's ``bridge/state`` ({"state": "online"}).
"""

from __future__ import annotations

import collections
import json
import logging
import math
from typing import Any

from .base import InvalidPayload, JsonMqttConsumer, MqttConsumer
from .examples import TemperatureConsumer

__all__ = [
    "PRESENCE",
    "FanConsumer",
    "PresenceConsumer",
    "RollingStats",
    "TelemetryConsumer",
    "ThermostatConsumer",
]

logger = logging.getLogger(__name__)

#: Who is online, by device id: filled by ``PresenceConsumer``, read by anything in-process.
PRESENCE: dict[str, bool] = {}

_ONLINE = {"online": True, "true": True, "offline": False, "false": False}


class RollingStats:
    """Count, mean, minimum and maximum of the last ``size`` values."""

    def __init__(self, size: int = 60) -> None:
        self.values: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, value: float) -> None:
        self.values.append(value)

    def summary(self) -> dict[str, float | int]:
        values = self.values
        return {
            "count": len(values),
            "mean": round(sum(values) / len(values), 3),
            "min": min(values),
            "max": max(values),
        }


def _readings(payload: bytes, name: str) -> dict[str, float]:
    """The numbers in a reading: a plain number, or a JSON object's numbers (nested keys joined
    with dots). ON/OFF and other words are state, not readings."""
    text = payload.decode("utf-8", "replace").strip()
    try:
        content = json.loads(text)
    except ValueError:
        return {}  # "on", "ON": a state
    if isinstance(content, bool):
        return {}
    if isinstance(content, int | float):
        return {name: float(content)} if math.isfinite(content) else {}
    if not isinstance(content, dict):
        raise InvalidPayload(
            f"a reading must be a number or a JSON object, got {type(content).__name__}"
        )
    found: dict[str, float] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}.{key}" if prefix else str(key))
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            found[prefix] = float(value)

    walk(content, "")
    return found


class TelemetryConsumer(MqttConsumer):
    groups = ["telemetry.{device_id}"]

    async def connect(self) -> None:
        self.device_id = self.topic_kwargs["device_id"]
        self.stats: dict[str, RollingStats] = {}

    async def receive(self, message: dict[str, Any]) -> None:
        name = self.topic_kwargs.get("reading") or message["topic"].rsplit("/", 1)[-1]
        readings = _readings(message["payload"], name)
        for field, value in readings.items():
            self.stats.setdefault(field, RollingStats()).add(value)
        if readings and self.channel_layer is not None:
            await self.channel_layer.group_send(
                f"telemetry.{self.device_id}",
                {
                    "type": "telemetry.reading",
                    "device_id": self.device_id,
                    "readings": readings,
                    "stats": {field: self.stats[field].summary() for field in readings},
                },
            )

    async def telemetry_reading(self, event: dict[str, Any]) -> None:
        """Our own group_send comes back to us as a member of the group: nothing to do."""


class ThermostatConsumer(JsonMqttConsumer):
    heat_below = 20.5
    heat_until = 21.5

    async def connect(self) -> None:
        self.device_id = self.topic_kwargs["device_id"]
        self.heating: bool | None = None

    async def receive_json(self, content: Any, message: dict[str, Any]) -> None:
        celsius = _tasmota_temperature(content)
        if self.heating is None:  # the first reading: the plug's state is unknown, set it
            await self.switch(celsius < (self.heat_below + self.heat_until) / 2, celsius)
        elif celsius < self.heat_below and not self.heating:
            await self.switch(True, celsius)
        elif celsius > self.heat_until and self.heating:
            await self.switch(False, celsius)

    async def switch(self, on: bool, celsius: float) -> None:
        self.heating = on
        state = "ON" if on else "OFF"
        logger.info("heater %s: %.1f °C, switching %s", self.device_id, celsius, state)
        await self.publish(f"cmnd/{self.device_id}/POWER", state, qos=1)


def _tasmota_temperature(content: Any) -> float:
    """The first sensor's Temperature in a Tasmota SENSOR message ({"DS18B20": {...}})."""
    if isinstance(content, dict):
        for value in content.values():
            if isinstance(value, dict) and "Temperature" in value:
                temperature = value["Temperature"]
                if isinstance(temperature, int | float) and not isinstance(temperature, bool):
                    return float(temperature)
    raise InvalidPayload("a Tasmota SENSOR message needs a sensor object with a Temperature")


class FanConsumer(TemperatureConsumer):
    """``TemperatureConsumer``, answering every reading that carries a ``ref``: the simulator
    adds one under ``--round-trip`` and times the answer."""

    async def receive_json(self, content: Any, message: dict[str, Any]) -> None:
        await super().receive_json(content, message)
        ref = content.get("ref") if isinstance(content, dict) else None
        if ref is not None:
            fan = "on" if self.fan_on else "off"
            await self.publish_json(
                f"devices/{self.device_id}/commands", {"fan": fan, "ref": ref}, qos=0
            )

    async def command(self, command: dict[str, Any]) -> None:
        logger.info("device %s: sending command %s", self.device_id, command)
        await self.publish_json(f"devices/{self.device_id}/commands", command, qos=1)


class PresenceConsumer(MqttConsumer):
    async def receive(self, message: dict[str, Any]) -> None:
        device_id = self.topic_kwargs.get("device_id", "zigbee2mqtt")
        text = message["payload"].decode("utf-8", "replace").strip()
        if text.startswith("{"):
            try:
                text = str(json.loads(text).get("state", ""))
            except (ValueError, AttributeError):
                raise InvalidPayload(
                    f"a presence message must be JSON with 'state', got {text[:40]!r}"
                ) from None
        online = _ONLINE.get(text.lower())
        if online is None:
            raise InvalidPayload(
                f"a presence message is online/offline or true/false, got {text[:40]!r}"
            )
        if PRESENCE.get(device_id) != online:
            PRESENCE[device_id] = online
            logger.info(
                "device %s is %s (%d online)",
                device_id,
                "online" if online else "offline",
                sum(PRESENCE.values()),
            )
