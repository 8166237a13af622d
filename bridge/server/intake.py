"""Publish requests from the channel layer: what ``mqttbridge.publish`` sends, the bridge publishes.

One loop reads the publish channel (``mqtt.publish`` by default; batches where the layer offers
``receive_many``, see bridge/layers/redis.py), validates each request as it would an ``mqtt.pub``
and hands it to the MQTT client. A request with a ``reply_channel`` (``confirm=True``) gets
``{"type": "mqtt.publish.result", "ok": ...}`` once the broker acknowledged it, or why not.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from mqttbridge.mqtt.client import MqttClient, OutboundQueueFull, PublishFailed
from mqttbridge.protocol.events import InvalidEvent, validate_publish

__all__ = ["PublishIntake"]

logger = logging.getLogger(__name__)

_RETRY_MIN = 0.1
_RETRY_MAX = 5.0


class PublishIntake:
    def __init__(
        self,
        client: Callable[[], MqttClient | None],
        channel: str,
        max_payload_bytes: int,
        stats: collections.Counter[str],
    ) -> None:
        self._client = client
        self.channel = channel
        self._max_payload = max_payload_bytes
        self._stats = stats
        # Replies still owed to callers: answered even during shutdown (see wait_replies).
        self._replies: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Read and publish requests until cancelled; a failing layer is retried, not fatal."""
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            logger.info("no channel layer configured; publish-from-anywhere is off")
            return
        logger.info(
            "accepting publish requests on channel %r (%s)", self.channel, type(layer).__name__
        )
        receive_many = getattr(layer, "receive_many", None)
        delay = _RETRY_MIN
        while True:
            try:
                if receive_many is not None:
                    messages = await receive_many(self.channel)
                else:
                    messages = [await layer.receive(self.channel)]
                delay = _RETRY_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Redis gone: the bridge keeps bridging MQTT and keeps trying the layer.
                self._stats["layer_receive_failures"] += 1
                logger.warning(
                    "channel layer receive failed (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
            for message in messages:
                self._handle(layer, message)

    def _handle(self, layer: Any, message: dict[str, Any]) -> None:
        client = self._client()
        assert client is not None
        reply = message.get("reply_channel")
        try:
            pub = validate_publish(message, self._max_payload)
            future = client.publish(
                pub.topic, pub.payload, pub.qos, pub.retain, pub.properties, confirm=bool(reply)
            )
        except (InvalidEvent, OutboundQueueFull) as exc:
            logger.error("publish request from the channel layer refused: %s", exc)
            if reply:
                self._reply(layer.send(reply, _result(False, str(exc))))
            return
        self._stats["layer_publishes"] += 1
        if reply and future is not None:
            self._reply(self._confirm(layer, reply, future))

    def _reply(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    async def _confirm(self, layer: Any, reply: str, future: asyncio.Future[None]) -> None:
        result = _result(True)
        try:
            await future
        except (PublishFailed, ConnectionError, RuntimeError) as exc:
            result = _result(False, str(exc))
        with contextlib.suppress(Exception):
            await layer.send(reply, result)

    async def wait_replies(self, timeout: float) -> None:
        """At shutdown, after the client failed what it could not send: answer the callers."""
        if self._replies:
            await asyncio.wait(self._replies, timeout=timeout)


def _result(ok: bool, error: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"type": "mqtt.publish.result", "ok": ok}
    if error is not None:
        result["error"] = error
    return result
