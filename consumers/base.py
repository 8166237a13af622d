"""Channels consumers for the "mqtt" scope.

Shaped like Channels' generic WebSocket consumers: protocol handlers (``mqtt_connect``,
``mqtt_msg``, ``mqtt_disconnect``) wrap user hooks (``connect``, ``receive``, ``disconnect``);
the async and sync classes match method for method; ``JsonMqttConsumer`` only changes encoding.

Two things differ from stock ``AsyncConsumer``, both for the per-message cost:

* ``dispatch`` does not call ``aclose_old_connections()`` per message. In Channels 4.2+ that is a
  ``sync_to_async`` thread hop for every event, which caps a consumer near 5k msg/s. Database
  access belongs in ``database_sync_to_async`` (which closes stale connections around each ORM
  call) or in ``SyncMqttConsumer``, whose handlers run in the ORM thread as Channels' do.
* ``__call__`` does not use ``await_many_dispatch`` (an ``asyncio.wait`` and task churn per
  event). The MQTT stream is read in a plain loop; when a channel layer is configured, a second
  loop reads the consumer's channel and a lock keeps handling one event at a time, as Channels
  promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from typing import Any

from asgiref.sync import async_to_sync
from channels.consumer import AsyncConsumer, SyncConsumer, get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

__all__ = ["InvalidPayload", "JsonMqttConsumer", "MqttConsumer", "SyncMqttConsumer"]


class InvalidPayload(ValueError):
    """A message payload could not be decoded (e.g. not JSON for a JsonMqttConsumer)."""


class _MqttRunner:
    """The event loop of an "mqtt" consumer, shared by the async and sync classes."""

    #: Channel-layer groups to join; ``{name}`` fields are filled from the route's parameters,
    #: so ``groups = ["device.{device_id}"]`` lets Django code ``group_send`` to one device.
    groups: list[str] = []
    channel_layer_alias: str
    channel_layer: Any
    channel_name: str
    channel_receive: Any
    base_send: Any
    scope: dict[str, Any]

    @property
    def topic_kwargs(self) -> dict[str, str]:
        """The route's named parameters for this instance, e.g. ``{"device_id": "t1"}``."""
        route = self.scope.get("topic_route")
        return dict(route["kwargs"]) if route else {}

    def group_names(self) -> list[str]:
        kwargs = self.topic_kwargs
        return [group.format(**kwargs) for group in self.groups]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        try:
            if self.channel_layer is None:
                await self._pump(receive, None)
                return
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            for group in self.group_names():
                await self.channel_layer.group_add(group, self.channel_name)
            try:
                await self._pump_both(receive)
            finally:
                for group in self.group_names():
                    with contextlib.suppress(Exception):
                        await self.channel_layer.group_discard(group, self.channel_name)
        except StopConsumer:
            pass

    async def _pump(self, source: Any, lock: asyncio.Lock | None) -> None:
        dispatch = self.dispatch  # type: ignore[attr-defined]
        if lock is None:
            while True:
                await dispatch(await source())
        else:
            while True:
                message = await source()
                async with lock:
                    await dispatch(message)

    async def _pump_both(self, receive: Any) -> None:
        lock = asyncio.Lock()
        tasks = {
            asyncio.ensure_future(self._pump(receive, lock)),
            asyncio.ensure_future(self._pump(self.channel_receive, lock)),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # re-raises StopConsumer or the handler's exception


_HANDLER_NAMES: dict[str, str] = {}


def _handler_name(message: dict[str, Any]) -> str:
    kind = message["type"]
    name = _HANDLER_NAMES.get(kind)
    if name is None:
        name = _HANDLER_NAMES[kind] = get_handler_name(message)
    return name


class MqttConsumer(_MqttRunner, AsyncConsumer):
    """An async consumer for MQTT messages. Override ``connect``, ``receive``, ``disconnect``."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, _handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}")
        await handler(message)

    # Protocol handlers.

    async def mqtt_connect(self, event: dict[str, Any]) -> None:
        await self.connect()

    async def mqtt_msg(self, event: dict[str, Any]) -> None:
        await self.receive(event["mqtt"])

    async def mqtt_disconnect(self, event: dict[str, Any]) -> None:
        await self.disconnect()
        raise StopConsumer()

    # User hooks.

    async def connect(self) -> None:
        """Called once, before the first message of this instance (device)."""

    async def receive(self, message: dict[str, Any]) -> None:
        """Called with the event's ``mqtt`` dict: topic, payload (bytes), qos, retain, dup,
        properties."""

    async def disconnect(self) -> None:
        """Called when the instance closes: idle timeout, instance limit, or shutdown."""

    # Actions.

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        retain: bool = False,
        properties: dict[str, Any] | None = None,
    ) -> None:
        body: dict[str, Any] = {"topic": topic, "payload": payload, "qos": qos, "retain": retain}
        if properties:
            body["properties"] = properties
        await self.send({"type": "mqtt.pub", "mqtt": body})

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        await self.send({"type": "mqtt.sub", "mqtt": {"topic": topic, "qos": qos}})

    async def unsubscribe(self, topic: str) -> None:
        await self.send({"type": "mqtt.usub", "mqtt": {"topic": topic}})


class JsonMqttConsumer(MqttConsumer):
    """Decodes payloads as JSON: override ``receive_json(content, message)``."""

    async def receive(self, message: dict[str, Any]) -> None:
        await self.receive_json(await self.decode_json(message["payload"]), message)

    async def receive_json(self, content: Any, message: dict[str, Any]) -> None:
        pass

    async def publish_json(
        self, topic: str, content: Any, qos: int = 1, retain: bool = False, **kwargs: Any
    ) -> None:
        await self.publish(topic, await self.encode_json(content), qos, retain, **kwargs)

    @classmethod
    async def decode_json(cls, payload: bytes) -> Any:
        try:
            return json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidPayload(f"payload is not valid JSON: {exc}") from exc

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, ensure_ascii=False)


class SyncMqttConsumer(_MqttRunner, SyncConsumer):
    """A synchronous consumer: every handler runs in Django's ORM thread, like Channels'
    ``SyncConsumer`` (one thread hop per message: use it for ORM-heavy code)."""

    @database_sync_to_async
    def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, _handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}")
        handler(message)

    def mqtt_connect(self, event: dict[str, Any]) -> None:
        self.connect()

    def mqtt_msg(self, event: dict[str, Any]) -> None:
        self.receive(event["mqtt"])

    def mqtt_disconnect(self, event: dict[str, Any]) -> None:
        self.disconnect()
        raise StopConsumer()

    def connect(self) -> None:
        pass

    def receive(self, message: dict[str, Any]) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def send(self, message: dict[str, Any]) -> None:  # type: ignore[override]
        async_to_sync(self.base_send)(message)

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        retain: bool = False,
        properties: dict[str, Any] | None = None,
    ) -> None:
        body: dict[str, Any] = {"topic": topic, "payload": payload, "qos": qos, "retain": retain}
        if properties:
            body["properties"] = properties
        self.send({"type": "mqtt.pub", "mqtt": body})

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.send({"type": "mqtt.sub", "mqtt": {"topic": topic, "qos": qos}})

    def unsubscribe(self, topic: str) -> None:
        self.send({"type": "mqtt.usub", "mqtt": {"topic": topic}})
