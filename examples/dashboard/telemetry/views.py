"""The page, the JSON views, and the command view that reaches a device through the channel
layer: the view -> ``device.<id>`` group -> the device's MQTT instance -> devices/<id>/commands.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from channels.layers import get_channel_layer
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import events
from .models import Device, Reading

MAX_LIMIT = 1000
CHART_POINTS = 60
FAN_STATES = ("on", "off")


def _devices() -> QuerySet[Device]:
    latest = Reading.objects.filter(device=OuterRef("pk")).order_by("-received_at")
    return Device.objects.annotate(celsius=Subquery(latest.values("celsius")[:1]))


def _device_json(device: Any) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "online": device.online,
        "last_seen": device.last_seen.isoformat() if device.last_seen else None,
        "celsius": device.celsius,
    }


def _reading_json(reading: Reading, device_id: str) -> dict[str, Any]:
    payload = reading.payload if isinstance(reading.payload, dict) else {}
    return {
        "device_id": device_id,
        "celsius": reading.celsius,
        "humidity": reading.humidity,
        "battery": reading.battery,
        "fan": payload.get("fan"),
        "ts": payload.get("ts"),
        "received": events.millis(reading.received_at),
        "received_at": reading.received_at.isoformat(),
    }


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    devices = list(_devices())
    return render(
        request,
        "telemetry/index.html",
        {
            "devices": devices,
            "online": sum(device.online for device in devices),
            "chart_points": CHART_POINTS,
        },
    )


@require_GET
def device_list(request: HttpRequest) -> JsonResponse:
    return JsonResponse([_device_json(device) for device in _devices()], safe=False)


@require_GET
def reading_list(request: HttpRequest, device_id: str) -> JsonResponse:
    """The last ``limit`` readings (default 50, at most 1000), oldest first."""
    try:
        limit = int(request.GET.get("limit", 50))
    except ValueError:
        return JsonResponse({"error": "limit: expected a whole number"}, status=400)
    if not 1 <= limit <= MAX_LIMIT:
        return JsonResponse({"error": f"limit: expected 1 to {MAX_LIMIT}"}, status=400)
    device = Device.objects.filter(device_id=device_id).first()
    if device is None:
        return JsonResponse({"error": f"no device {device_id!r}"}, status=404)
    last = device.readings.order_by("-received_at")[:limit]
    return JsonResponse([_reading_json(r, device_id) for r in reversed(last)], safe=False)


# No session or cookie is involved in a command: this JSON API is for the page and for
# scripts on a trusted network (put it behind a login before exposing it). Requiring
# application/json keeps other sites' pages out: a browser sends that type cross-site only
# after a CORS preflight, which this view does not grant.
@csrf_exempt
@require_POST
async def command(request: HttpRequest, device_id: str) -> JsonResponse:
    """``{"fan": "on"|"off"}`` -> ``{"ref": ...}`` (202): published to the device; its
    acknowledgement, carrying the same ref, reaches open pages through the socket."""
    if request.content_type != "application/json":
        return JsonResponse({"error": "expected Content-Type: application/json"}, status=415)
    try:
        body = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "expected a JSON object"}, status=400)
    fan = body.get("fan") if isinstance(body, dict) else None
    if fan not in FAN_STATES:
        return JsonResponse({"error": 'fan: expected "on" or "off"'}, status=400)
    if not await Device.objects.filter(device_id=device_id).aexists():
        return JsonResponse({"error": f"no device {device_id!r}"}, status=404)
    if not events.has_group(device_id):
        return JsonResponse(
            {"error": f"device id {device_id!r} cannot be a group name"}, status=409
        )
    ref = secrets.token_hex(6)
    event = events.command_event(device_id, fan, ref)
    # Reaches the device's MQTT instance (it publishes) and every open page (it shows "sent").
    await get_channel_layer().group_send(events.device_group(device_id), event)
    return JsonResponse({"ref": ref, "device_id": device_id, "fan": fan}, status=202)
