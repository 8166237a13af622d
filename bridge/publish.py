"""Publish to MQTT from anywhere that shares the channel layer: views, tasks, scripts.

    import mqttbridge as bridge
    bridge.publish("devices/t1/cmd", b"on")                  # sync (Django views, tasks)
    await bridge.apublish("devices/t1/cmd", "on", confirm=True)  # waits for the broker's PUBACK
    bridge.publish_json("devices/t1/cmd", {"fan": "on"})     # JSON, as JsonMqttConsumer sends it

The request travels over the channel layer to the channel ``mqtt.publish`` (configurable), which
every bridge reads. A normal (non-``!``) channel delivers each message to one reader, so with the
Redis layer and several bridges each request is published once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from asgiref.sync import async_to_sync

from mqttbridge.layers.redis_timeouts import fit_blocking_reads
from mqttbridge.protocol.events import InvalidEvent, validate_publish

__all__ = ["PublishError", "apublish", "apublish_json", "configure", "publish", "publish_json"]

logger = logging.getLogger(__name__)

DEFAULT_CHANNEL = "mqtt.publish"
_state: dict[str, Any] = {"channel": DEFAULT_CHANNEL, "max_payload": 256 * 1024}


class PublishError(RuntimeError):
    """A publish request was refused, or (``confirm=True``) not confirmed in time."""


def configure(config_path: str | os.PathLike[str] = "config.yaml") -> Any:
    """Set up the channel layer from a bridge config file (outside a Django project).

    In a Django project (settings configured, or ``DJANGO_SETTINGS_MODULE`` set) Django is set
    up with the project's settings and their channel layer; a ``channel_layer.url`` in the file
    is then ignored, with a warning.
    """
    from mqttbridge.config.schema import load_config, resolve_consumers
    from mqttbridge.django_setup import channel_layer_in_use, ensure_django

    # Django first: the routes' consumer modules may import models.
    config = load_config(config_path, import_consumers=False)
    ensure_django({"default": config.channel_layer.channels_settings()})
    config = resolve_consumers(config)
    _, warning = channel_layer_in_use(config.channel_layer)
    if warning is not None:
        logger.warning("%s", warning)
    use_config(config)
    return config


def use_config(config: Any) -> None:
    """Send publish requests as the bridges of ``config`` expect them: on its
    ``channel_layer.publish_channel``, within its ``limits.max_payload_bytes``."""
    _state["channel"] = config.channel_layer.publish_channel
    _state["max_payload"] = config.limits.max_payload_bytes


async def apublish(
    topic: str,
    payload: bytes | str,
    qos: int = 1,
    retain: bool = False,
    *,
    properties: dict[str, Any] | None = None,
    confirm: bool = False,
    timeout: float = 10.0,
    channel: str | None = None,
) -> None:
    """Ask a bridge to publish. With ``confirm`` return once the broker acknowledged it."""
    from channels.layers import get_channel_layer

    body: dict[str, Any] = {"topic": topic, "payload": payload, "qos": qos, "retain": retain}
    if properties:
        body["properties"] = properties
    try:
        validate_publish(body, _state["max_payload"])  # fail here, not in the bridge's log
    except InvalidEvent as exc:
        raise PublishError(str(exc)) from None
    layer = get_channel_layer()
    if layer is None:
        raise PublishError(
            "no channel layer: set CHANNEL_LAYERS in Django settings, or call "
            "mqttbridge.configure('config.yaml') first"
        )
    # A Django process's stock channels_redis layer: without this a confirm wait longer than
    # 5 s ends in redis-py's TimeoutError (bridge/layers/redis_timeouts.py).
    fit_blocking_reads(layer)
    message: dict[str, Any] = {"type": "mqtt.publish", **body}
    if isinstance(payload, bytearray | memoryview):
        message["payload"] = bytes(payload)
    target = channel or _state["channel"]
    if not confirm:
        await layer.send(target, message)
        return
    reply = await layer.new_channel()
    message["reply_channel"] = reply
    await layer.send(target, message)
    try:
        result = await asyncio.wait_for(layer.receive(reply), timeout)
    except TimeoutError:
        raise PublishError(
            f"publish to {topic!r} not confirmed within {timeout} s: is a bridge running and "
            f"reading channel {target!r} on this channel layer?"
        ) from None
    if not result.get("ok"):
        raise PublishError(f"publish to {topic!r} failed: {result.get('error')}")


def publish(
    topic: str,
    payload: bytes | str,
    qos: int = 1,
    retain: bool = False,
    *,
    properties: dict[str, Any] | None = None,
    confirm: bool = False,
    timeout: float = 10.0,
    channel: str | None = None,
) -> None:
    """Synchronous :func:`apublish`, for Django views and tasks."""
    async_to_sync(apublish)(
        topic,
        payload,
        qos,
        retain,
        properties=properties,
        confirm=confirm,
        timeout=timeout,
        channel=channel,
    )


async def apublish_json(topic: str, content: Any, qos: int = 1, **kwargs: Any) -> None:
    """:func:`apublish` ``content`` encoded as JSON, the way ``JsonMqttConsumer`` encodes it."""
    await apublish(topic, json.dumps(content, ensure_ascii=False), qos, **kwargs)


def publish_json(topic: str, content: Any, qos: int = 1, **kwargs: Any) -> None:
    """Synchronous :func:`apublish_json`, for Django views and tasks."""
    async_to_sync(apublish_json)(topic, content, qos, **kwargs)
