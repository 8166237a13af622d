"""The one place that builds "mqtt" scopes and the events the bridge sends to applications.

The server and ``mqttbridge.testing.MqttCommunicator`` both build them here, so what a consumer
sees under test is what it sees in production (keys in docs/protocol.md, types in ``typing``).
"""

from __future__ import annotations

from typing import Any

from mqttbridge.protocol.topics import TopicPattern
from mqttbridge.protocol.typing import ASGI_SPEC_VERSION

__all__ = [
    "base_scope",
    "connect_event",
    "disconnect_event",
    "message_event",
    "mqttasgi_scope",
    "routed_scope",
    "topic_route",
]


def base_scope(client_id: str, broker: str) -> dict[str, Any]:
    """The keys every instance's scope has."""
    return {
        "type": "mqtt",
        "asgi": {"version": "3.0", "spec_version": ASGI_SPEC_VERSION},
        "client_id": client_id,
        "broker": broker,
        # mqttasgi's scope keys, for its applications.
        "version": "2.4",
        "spec_version": ASGI_SPEC_VERSION,
    }


def routed_scope(
    client_id: str, broker: str, pattern: TopicPattern, kwargs: dict[str, str]
) -> dict[str, Any]:
    """The scope of the instance serving one route's parameter values (one device)."""
    scope = base_scope(client_id, broker)
    scope["topic_route"] = topic_route(pattern, kwargs)
    return scope


def topic_route(pattern: TopicPattern, kwargs: dict[str, str]) -> dict[str, Any]:
    """``scope["topic_route"]``: the route an instance serves and its parameter values."""
    return {"pattern": pattern.pattern, "filter": pattern.filter, "kwargs": kwargs}


def mqttasgi_scope(
    client_id: str, broker: str, app_id: Any, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """mqttasgi's master (``app_id`` 0) or a worker's scope; ``params`` are the worker's
    ``consumer_params``, which lose to the bridge's own keys (as in mqttasgi)."""
    return {
        **(params or {}),
        **base_scope(client_id, broker),
        "app_id": app_id,
        "instance_type": "master" if app_id == 0 else "worker",
    }


def connect_event() -> dict[str, Any]:
    return {"type": "mqtt.connect", "mqtt": {}}


def message_event(
    topic: str, payload: bytes, qos: int, retain: bool, dup: bool, properties: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "mqtt.msg",
        "mqtt": {
            "topic": topic,
            "payload": payload,
            "qos": qos,
            "retain": retain,
            "dup": dup,
            "properties": properties,
        },
    }


def disconnect_event(reason: str) -> dict[str, Any]:
    return {"type": "mqtt.disconnect", "mqtt": {"reason": reason}}
