"""The channel-layer groups and events that tie devices, views and browsers together.

``device.<device_id>``: the device's MQTT telemetry instance (it publishes ``device.command``
events to the device) and every open page that knows the device (commands sent,
acknowledgements): what concerns one device.
``dashboard``: every open page: presence changes, devices seen for the first time, and the
readings of every device, batched (``device.readings``, see live.py: one message per process
every 20 ms at most, rather than one per reading per page).

Events are named ``device.<what>``; a browser gets the same fields as ``{"type": "<what>"}``,
and a batch as ``{"type": "readings", "readings": [{"device_id", "celsius", ...}, ...]}``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

DASHBOARD = "dashboard"

# Channels' rule for group names; a device id outside it cannot have a group.
_GROUP_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,90}$")


def device_group(device_id: str) -> str:
    return f"device.{device_id}"


def has_group(device_id: str) -> bool:
    return _GROUP_SAFE.match(device_id) is not None


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def reading(device_id: str, content: dict[str, Any], received: datetime) -> dict[str, Any]:
    """One reading as the pages see it (an item of a ``device.readings`` batch)."""
    return {
        "device_id": device_id,
        "celsius": content.get("celsius"),
        "humidity": content.get("humidity"),
        "battery": content.get("battery"),
        "fan": content.get("fan"),
        "ts": content.get("ts"),  # the device's clock, ms
        "received": millis(received),  # ours, ms
    }


def readings_event(readings: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "device.readings", "readings": readings}


def status_event(device_id: str, online: bool, last_seen: datetime | None) -> dict[str, Any]:
    return {
        "type": "device.status",
        "device_id": device_id,
        "online": online,
        "last_seen": last_seen.isoformat() if last_seen else None,
    }


def command_event(device_id: str, fan: str, ref: str) -> dict[str, Any]:
    return {"type": "device.command", "device_id": device_id, "fan": fan, "ref": ref}


def ack_event(device_id: str, fan: Any, ref: Any) -> dict[str, Any]:
    return {"type": "device.ack", "device_id": device_id, "fan": fan, "ref": ref}


def for_browser(event: dict[str, Any]) -> dict[str, Any]:
    """``{"type": "device.ack", ...}`` -> ``{"type": "ack", ...}``."""
    return {**event, "type": event["type"].removeprefix("device.")}
