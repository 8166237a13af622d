"""The browsers' side: one WebSocket per open page, relaying JSON ``{"type": "readings" |
"status" | "ack" | "command", ...}``.

The socket joins ``dashboard`` (every device's readings, in batches, and presence changes) and
the group of each device it knows, ``device.<id>`` (commands sent and acknowledgements: what
concerns one device).
"""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import events
from .models import Device


@database_sync_to_async
def _device_ids() -> list[str]:
    return list(Device.objects.values_list("device_id", flat=True))


class DashboardSocket(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.following: set[str] = set()
        # Joined before accepting: once the page sees the socket open, nothing is missed.
        await self.channel_layer.group_add(events.DASHBOARD, self.channel_name)
        for device_id in await _device_ids():
            await self.follow(device_id)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(events.DASHBOARD, self.channel_name)
        for device_id in self.following:
            await self.channel_layer.group_discard(
                events.device_group(device_id), self.channel_name
            )

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels 4.2+ runs close_old_connections() in the ORM thread before every event; that
        # thread is also the batch writer's, so each event the page gets would queue behind an
        # INSERT of readings (the profile in docs/benchmarks.md). This socket uses the database
        # only through database_sync_to_async, which closes stale connections around each call.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}")
        await handler(message)

    async def follow(self, device_id: str) -> None:
        if device_id not in self.following and events.has_group(device_id):
            await self.channel_layer.group_add(events.device_group(device_id), self.channel_name)
            self.following.add(device_id)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass  # commands go through POST /api/devices/<id>/command/

    async def device_status(self, event: dict[str, Any]) -> None:
        await self.follow(event["device_id"])  # a new device: its commands and acks from now on
        await self.send_json(events.for_browser(event))

    async def device_ack(self, event: dict[str, Any]) -> None:
        await self.send_json(events.for_browser(event))

    # A batch of readings (live.py), one WebSocket frame.
    device_readings = device_command = device_ack
