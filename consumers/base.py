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
  event). The MQTT stream is read in a plain loop; the consumer's channel on the layer is read
  by a second loop, started once the channel's name has been handed out (``groups``,
  ``self.channel_name`` or ``listen_on_channel()``), and a lock keeps handling one event at a
  time, as Channels promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.consumer import AsyncConsumer, SyncConsumer, get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

from mqttbridge.protocol.events import LayerEventFailed

__all__ = ["InvalidPayload", "JsonMqttConsumer", "MqttConsumer", "SyncMqttConsumer"]

logger = logging.getLogger(__name__)

# Back-off between attempts to reach a channel layer that failed (seconds).
_LAYER_RETRY_MIN = 0.1
_LAYER_RETRY_MAX = 2.0


class InvalidPayload(ValueError):
    """A message's payload is bad input: not JSON for a ``JsonMqttConsumer``, or whatever a
    ``decode_json`` override, ``receive`` or ``receive_json`` refuses by raising it.

    Raised while handling an MQTT message, it does not end the instance: the consumer sends
    ``mqtt.dead_letter`` with the exception's text, the bridge records the message on the
    dead-letter topic and acknowledges it, and the next message reaches the same consumer.
    """


class _MqttRunner:
    """The event loop of an "mqtt" consumer, shared by the async and sync classes."""

    #: Channel-layer groups to join; ``{name}`` fields are filled from the route's parameters,
    #: so ``groups = ["device.{device_id}"]`` lets Django code ``group_send`` to one device.
    groups: list[str] = []
    channel_layer_alias: str
    channel_layer: Any
    base_send: Any
    scope: dict[str, Any]
    _channel_name: str | None = None
    _layer_task: asyncio.Future[None] | None = None
    _main_task: asyncio.Task[Any] | None = None
    _lock: asyncio.Lock
    _loop: asyncio.AbstractEventLoop
    _context: contextvars.Context
    _rejoin = False
    _busy = False
    _layer_starting = False
    _layer_failed: asyncio.Future[None] | None = None

    @property
    def topic_kwargs(self) -> dict[str, str]:
        """The route's named parameters for this instance, e.g. ``{"device_id": "t1"}``."""
        route = self.scope.get("topic_route")
        return dict(route["kwargs"]) if route else {}

    def group_names(self) -> list[str]:
        kwargs = self.topic_kwargs
        return [group.format(**kwargs) for group in self.groups]

    @property
    def channel_name(self) -> str:
        """This instance's channel on the layer. Handing it out starts listening on it: reading
        it calls ``listen_on_channel()``, as Channels code passes ``self.channel_name`` on."""
        return self.listen_on_channel()

    @channel_name.setter
    def channel_name(self, value: str) -> None:
        self._channel_name = value

    def listen_on_channel(self) -> str:
        """Start receiving this instance's channel-layer messages (once); return the channel.

        A channel nobody knows the name of gets no messages, so an instance only pays for a
        layer receive loop (a task and a queue: memory, times 10,000 devices) once its name
        has been handed out: by ``groups``, or by code reading ``self.channel_name``.
        """
        if self._channel_name is None:
            raise AttributeError("no channel layer is configured (CHANNEL_LAYERS)")
        if self._layer_task is None and not self._layer_starting:
            self._layer_starting = True
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                self._start_layer_pump()
            else:  # SyncMqttConsumer code runs in a worker thread
                self._loop.call_soon_threadsafe(self._start_layer_pump)
        return self._channel_name

    def _start_layer_pump(self) -> None:
        # In the instance's own context: started from a SyncMqttConsumer's worker thread, the
        # current context would make asgiref believe every later sync handler is nested in
        # that thread ("Single thread executor already being used, would deadlock").
        self._layer_task = self._loop.create_task(self._pump_layer(), context=self._context)
        self._layer_task.add_done_callback(self._layer_pump_ended)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.base_send = send
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()
        self._main_task = asyncio.current_task()
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        groups: list[str] = []
        try:
            try:
                if self.channel_layer is not None:
                    self._channel_name = await self.channel_layer.new_channel()
                    groups = self.group_names()
                    if groups:
                        try:
                            await self._join_groups(groups)
                        except Exception as exc:
                            # Redis may be down: handle MQTT now, join once the layer is back.
                            logger.warning("cannot join groups %s yet (%s)", groups, exc)
                            self._rejoin = True
                        self.listen_on_channel()
                await self._pump_mqtt(receive)
            except asyncio.CancelledError:
                if self._layer_failed is not None:
                    self._raise_layer_failure()
                raise
        except StopConsumer:
            pass
        finally:
            await self._stop_layer(groups)

    async def _pump_mqtt(self, receive: Any) -> None:
        dispatch = self.dispatch  # type: ignore[attr-defined]
        lock = self._lock  # uncontended unless a layer message is being handled
        while True:
            message = await receive()
            self._busy = True
            try:
                async with lock:
                    await dispatch(message)
            finally:
                self._busy = False
            if self._layer_failed is not None:
                self._raise_layer_failure()

    def _layer_pump_ended(self, task: asyncio.Future[None]) -> None:
        # StopConsumer or an exception from a layer handler ends the instance, as in Channels;
        # an MQTT message being handled meanwhile is let finish first (see _pump_mqtt).
        if task.cancelled():
            return
        self._layer_failed = task
        if not self._busy and self._main_task is not None:
            self._main_task.cancel()  # waiting in receive(): nothing is lost by interrupting

    def _raise_layer_failure(self) -> None:
        assert self._layer_failed is not None
        exc = self._layer_failed.exception()
        assert exc is not None
        if isinstance(exc, StopConsumer):
            raise exc
        # Tells the bridge the failure was a layer event's, not the current MQTT message's.
        raise LayerEventFailed(exc) from exc

    async def _join_groups(self, groups: list[str]) -> None:
        for group in groups:
            await self.channel_layer.group_add(group, self._channel_name)

    async def _pump_layer(self) -> None:
        dispatch = self.dispatch  # type: ignore[attr-defined]
        receive_layer = self.channel_layer.receive
        name = self._channel_name
        lock = self._lock
        delay = _LAYER_RETRY_MIN
        while True:
            try:
                if self._rejoin:
                    # A layer that went away (Redis restarted) forgot our memberships.
                    await self._join_groups(self.group_names())
                    self._rejoin = False
                    logger.info("rejoined groups %s", self.group_names())
                message = await receive_layer(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The layer failing must not end the instance: MQTT keeps flowing meanwhile.
                logger.warning(
                    "channel layer unavailable (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self._rejoin = bool(self.groups)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LAYER_RETRY_MAX)
                continue
            delay = _LAYER_RETRY_MIN
            async with lock:
                await dispatch(message)

    async def _stop_layer(self, groups: list[str]) -> None:
        task = self._layer_task
        if task is not None:
            task.remove_done_callback(self._layer_pump_ended)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for group in groups:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(group, self._channel_name)


def publish_event(
    topic: str, payload: bytes | str, qos: int, retain: bool, properties: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``mqtt.pub`` event both consumer classes send."""
    body: dict[str, Any] = {"topic": topic, "payload": payload, "qos": qos, "retain": retain}
    if properties:
        body["properties"] = properties
    return {"type": "mqtt.pub", "mqtt": body}


def dead_letter_event(refusal: InvalidPayload) -> dict[str, Any]:
    """The ``mqtt.dead_letter`` event: "record the message I am handling as refused"."""
    # The bridge wants a reason; a bare InvalidPayload() is still bad input, not a crash.
    return {"type": "mqtt.dead_letter", "mqtt": {"error": str(refusal) or "invalid payload"}}


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
        try:
            await handler(message)
        except InvalidPayload as exc:
            # Bad input, not a crash: the bridge records the message and this instance,
            # with its state, takes the next one. A layer event has no message to record.
            if message["type"] != "mqtt.msg":
                raise
            await self.send(dead_letter_event(exc))

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
        await self.send(publish_event(topic, payload, qos, retain, properties))

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
            raise InvalidPayload(f"invalid JSON: {exc}") from None

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
        try:
            handler(message)
        except InvalidPayload as exc:
            if message["type"] != "mqtt.msg":  # as in MqttConsumer.dispatch
                raise
            self.send(dead_letter_event(exc))

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
        self.send(publish_event(topic, payload, qos, retain, properties))

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.send({"type": "mqtt.sub", "mqtt": {"topic": topic, "qos": qos}})

    def unsubscribe(self, topic: str) -> None:
        self.send({"type": "mqtt.usub", "mqtt": {"topic": topic}})
