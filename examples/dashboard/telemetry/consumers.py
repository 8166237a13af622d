"""The devices' side: MQTT consumers, one instance per device and route.

* ``TelemetryConsumer`` (sensors/<id>/temperature) hands each reading to the pages' live feed
  (live.py: batched, to the ``dashboard`` group), then stores it through the batch writer. It
  is also the device's ear on the channel layer: a ``device.command`` sent to ``device.<id>`` by
  a view is published to devices/<id>/commands.
* ``PresenceConsumer`` (devices/<id>/status) keeps ``Device.online`` from birth and last will.
* ``AckConsumer`` (devices/<id>/ack) passes the device's acknowledgements to its group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from mqttbridge.consumers import InvalidPayload, JsonMqttConsumer, MqttConsumer

from . import events
from .live import feed
from .models import Device, Reading
from .store import readings

logger = logging.getLogger(__name__)

# Device.last_seen follows readings at most this often: one UPDATE per device per interval,
# not one per message (the page updates its "last seen" from the live readings anyway).
LAST_SEEN_EVERY = timedelta(seconds=30)
RETRY_MIN, RETRY_MAX = 0.1, 5.0

T = TypeVar("T")


async def riding_out_outages(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``await call()``, retried with back-off while the database is unreachable, as the batch
    writer does for readings: the message being handled stays unacknowledged meanwhile, rather
    than dead-lettered. (database_sync_to_async drops broken connections between tries.)"""
    delay = RETRY_MIN
    while True:
        try:
            return await call()
        except (OperationalError, InterfaceError) as exc:
            if delay == RETRY_MIN:
                reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                logger.warning("%s: database unavailable (%s); retrying", what, reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


@database_sync_to_async
def _device(device_id: str) -> tuple[Device, bool]:
    return Device.objects.get_or_create(device_id=device_id)


@database_sync_to_async
def _touch(device: Device, moment: datetime) -> None:
    Device.objects.filter(pk=device.pk).update(last_seen=moment)


@database_sync_to_async
def _set_presence(device_id: str, online: bool, moment: datetime | None) -> Device:
    device, _ = Device.objects.get_or_create(device_id=device_id)
    device.online = online
    fields = ["online"]
    if moment is not None:
        device.last_seen = moment
        fields.append("last_seen")
    device.save(update_fields=fields)
    return device


class TelemetryConsumer(JsonMqttConsumer):
    groups = ["device.{device_id}"]

    async def connect(self) -> None:
        self.device_id = self.topic_kwargs["device_id"]
        self.device, created = await riding_out_outages(
            f"device {self.device_id}", lambda: _device(self.device_id)
        )
        self.touched = self.device.last_seen
        if created:  # every open page adds its row
            event = events.status_event(self.device_id, self.device.online, None)
            await self.channel_layer.group_send(events.DASHBOARD, event)

    async def receive_json(self, content: Any, message: dict[str, Any]) -> None:
        celsius = _number(content.get("celsius")) if isinstance(content, dict) else None
        if celsius is None:
            raise InvalidPayload("expected a JSON object with a numeric celsius")
        received = timezone.now()
        reading = Reading(
            device=self.device,
            received_at=received,
            celsius=celsius,
            humidity=_number(content.get("humidity")),
            battery=_number(content.get("battery")),
            payload=content,
        )
        # The page is a view: it gets the reading now, not after the commit (the batch's wait
        # would be most of its latency). The storage guarantee is about the MQTT ack:
        # save() returns once the batch holding this row is committed; only then does the
        # bridge acknowledge the message (QoS 1), so an acknowledged reading is a stored one.
        feed.add(events.reading(self.device_id, content, received))
        await readings.save(reading)
        if self.touched is None or received - self.touched >= LAST_SEEN_EVERY:
            self.touched = received
            try:
                await _touch(self.device, received)
            except DatabaseError as exc:  # a nicety: never worth losing the reading's ack
                logger.warning("device %s: last_seen not updated (%s)", self.device_id, exc)

    async def device_command(self, event: dict[str, Any]) -> None:
        """From a view (or any code in this process): publish the command to the device."""
        command = {"fan": event["fan"], "ref": event["ref"]}
        await self.publish_json(f"devices/{self.device_id}/commands", command, qos=1)
        logger.info("device %s: sent command %s", self.device_id, command)

    # The device's group carries the pages' per-device events too (readings do not come here:
    # they go to the pages only, batched); acknowledgements are not for the device.
    async def device_ack(self, event: dict[str, Any]) -> None:
        pass


class PresenceConsumer(MqttConsumer):
    async def receive(self, message: dict[str, Any]) -> None:
        device_id = self.topic_kwargs["device_id"]
        state = message["payload"].decode("utf-8", "replace").strip().lower()
        if state not in ("online", "offline"):
            raise InvalidPayload(f"expected online or offline, got {state[:40]!r}")
        # A retained status is replayed when the bridge (re)subscribes: it tells whether the
        # device is online, not when it was last seen.
        moment = None if message.get("retain") else timezone.now()
        device = await riding_out_outages(
            f"device {device_id}", lambda: _set_presence(device_id, state == "online", moment)
        )
        logger.info("device %s is %s", device_id, state)
        event = events.status_event(device_id, device.online, device.last_seen)
        await self.channel_layer.group_send(events.DASHBOARD, event)


class AckConsumer(JsonMqttConsumer):
    async def receive_json(self, content: Any, message: dict[str, Any]) -> None:
        if not isinstance(content, dict):
            raise InvalidPayload("expected a JSON object with fan and ref")
        device_id = self.topic_kwargs["device_id"]
        event = events.ack_event(device_id, content.get("fan"), content.get("ref"))
        if events.has_group(device_id):
            await self.channel_layer.group_send(events.device_group(device_id), event)
