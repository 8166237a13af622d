"""The browsers' side: one WebSocket per open page, in the ``dashboard`` group and in every
device's group, relaying their events as JSON ``{"type": "reading" | "status" | "ack" |
"command", ...}``."""

from __future__ import annotations

from typing import Any

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

    async def follow(self, device_id: str) -> None:
        if device_id not in self.following and events.has_group(device_id):
            await self.channel_layer.group_add(events.device_group(device_id), self.channel_name)
            self.following.add(device_id)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass  # commands go through POST /api/devices/<id>/command/

    async def device_status(self, event: dict[str, Any]) -> None:
        await self.follow(event["device_id"])  # a new device: its readings from now on
        await self.send_json(events.for_browser(event))

    async def device_reading(self, event: dict[str, Any]) -> None:
        await self.send_json(events.for_browser(event))

    device_ack = device_command = device_reading
