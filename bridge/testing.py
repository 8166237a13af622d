"""Test a consumer without a broker, as ``channels.testing.WebsocketCommunicator`` does for
WebSockets::

    communicator = MqttCommunicator(
        TemperatureConsumer.as_asgi(),
        "sensors/{device_id}/temperature",
        topic="sensors/t1/temperature",
    )
    await communicator.connect()
    await communicator.send_message("sensors/t1/temperature", b'{"celsius": 31}')
    published = await communicator.receive_publish()
    assert published["topic"] == "devices/t1/commands"
    await communicator.disconnect()

What the consumer sends is checked exactly as the bridge checks it, so an invalid publish fails
the test with the bridge's error message instead of passing here and failing in production. A
message the consumer refuses as bad input (``InvalidPayload``) comes out as an
``mqtt.dead_letter`` event: ``await communicator.receive_dead_letter()`` returns its body.
No settings module is needed: if nothing configured Django, the communicator configures it as
``mqttbridge`` does, with the in-memory channel layer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.testing import ApplicationCommunicator

from mqttbridge.django_setup import MEMORY_LAYERS, ensure_django
from mqttbridge.protocol import build
from mqttbridge.protocol.events import validate_event
from mqttbridge.protocol.topics import compile_pattern

__all__ = ["MqttCommunicator"]


class _CheckedApp:
    """Wraps the application so its ``send`` validates events like the bridge does."""

    def __init__(self, application: Any, max_payload_bytes: int) -> None:
        self.application = application
        self.max_payload_bytes = max_payload_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # The event the application is handling: the latest receive() returned, as the bridge
        # keeps it, for mqtt.dead_letter.
        handling: dict[str, Any] | None = None

        async def tracked_receive() -> dict[str, Any]:
            nonlocal handling
            handling = None
            event: dict[str, Any] = await receive()
            handling = event
            return event

        async def checked_send(event: dict[str, Any]) -> None:
            validate_event(event, handling, self.max_payload_bytes)
            await send(event)

        await self.application(scope, tracked_receive, checked_send)


class MqttCommunicator(ApplicationCommunicator):  # type: ignore[misc]
    """Drives one application instance: connect, send messages, read what it publishes."""

    def __init__(
        self,
        application: Any,
        route: str | None = None,
        *,
        topic: str | None = None,
        client_id: str = "mqttbridge-test",
        app_id: Any = None,
        max_payload_bytes: int = 256 * 1024,
        scope: dict[str, Any] | None = None,
    ) -> None:
        # ApplicationCommunicator.__del__ reads _future even if __init__ raised below.
        self._future = None
        # A plain pytest run has no settings module; consumers still need settings for their
        # channel layer. As `mqttbridge` does: the project's settings if there are any.
        ensure_django(MEMORY_LAYERS)
        # Built by the code the bridge builds them with (protocol.build): no drift.
        broker = "mqtt://testing"
        if app_id is not None:
            full_scope = build.mqttasgi_scope(client_id, broker, app_id)
        else:
            full_scope = build.base_scope(client_id, broker)
        if route is not None:
            pattern = compile_pattern(route)
            kwargs = pattern.match(topic) if topic is not None else {}
            if kwargs is None:
                raise ValueError(f"topic {topic!r} does not match route {route!r}")
            full_scope["topic_route"] = build.topic_route(pattern, kwargs)
        full_scope.update(scope or {})
        super().__init__(_CheckedApp(application, max_payload_bytes), full_scope)

    async def connect(self, timeout: float = 1) -> None:
        await self.send_input(build.connect_event())
        # Let connect() run, and surface its exception if it raised.
        await self._settle(timeout)

    async def send_message(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        dup: bool = False,
        properties: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        await self.send_input(
            build.message_event(topic, payload, qos, retain, dup, properties or {})
        )

    async def receive_event(self, timeout: float = 1) -> dict[str, Any]:
        return await self.receive_output(timeout)  # type: ignore[no-any-return]

    async def receive_publish(self, timeout: float = 1) -> dict[str, Any]:
        """The next ``mqtt.pub`` body the application sent; fails if it sent something else."""
        return await self._receive_body("mqtt.pub", timeout)

    async def receive_subscribe(self, timeout: float = 1) -> dict[str, Any]:
        """The next ``mqtt.sub`` body (``{"topic": ..., "qos": ...}``)."""
        return await self._receive_body("mqtt.sub", timeout)

    async def receive_dead_letter(self, timeout: float = 1) -> dict[str, Any]:
        """The next ``mqtt.dead_letter`` body (``{"error": ...}``): the application refused the
        message it was handling as bad input, and the bridge would record it and carry on."""
        return await self._receive_body("mqtt.dead_letter", timeout)

    async def _receive_body(self, kind: str, timeout: float) -> dict[str, Any]:
        event = await self.receive_output(timeout)
        if event.get("type") != kind:
            raise AssertionError(f"expected an {kind} event, got {event!r}")
        body: dict[str, Any] = event["mqtt"]
        return body

    async def disconnect(self, reason: str = "test", timeout: float = 1) -> None:
        await self.send_input(build.disconnect_event(reason))
        await self.wait(timeout)

    async def _settle(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.future), timeout=0.01)
        except TimeoutError:
            return
        self.future.result()  # the application ended early: raise what it raised
