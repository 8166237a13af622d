"""The "mqtt" ASGI scope and its events, as asgiref.typing does for HTTP and WebSocket.

The shapes are compatible with mqttasgi's, so its applications run unchanged, and richer
(``retain``, ``dup``, MQTT 5 ``properties``, ``topic_route``). See docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "ASGI_SPEC_VERSION",
    "MqttConnectEvent",
    "MqttDeadLetterEvent",
    "MqttDisconnectEvent",
    "MqttMessage",
    "MqttMessageEvent",
    "MqttPublish",
    "MqttPublishEvent",
    "MqttScope",
    "MqttSubscribeEvent",
    "MqttUnsubscribeEvent",
    "Receive",
    "Send",
    "TopicRoute",
]

# Version of the "mqtt" scope described in docs/protocol.md.
ASGI_SPEC_VERSION = "1.0"


class TopicRoute(TypedDict):
    pattern: str
    filter: str
    kwargs: dict[str, str]


class MqttScope(TypedDict):
    type: Literal["mqtt"]
    asgi: dict[str, str]
    client_id: str
    broker: str
    # Routed instances only: which route and parameter values this instance serves.
    topic_route: NotRequired[TopicRoute]
    # mqttasgi compatibility: "master" (app_id 0) or "worker", and its version keys.
    app_id: NotRequired[Any]
    instance_type: NotRequired[str]
    version: str
    spec_version: str


class MqttMessage(TypedDict):
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    properties: dict[str, Any]


class MqttConnectEvent(TypedDict):
    type: Literal["mqtt.connect"]
    mqtt: dict[str, Any]


class MqttMessageEvent(TypedDict):
    type: Literal["mqtt.msg"]
    mqtt: MqttMessage


class MqttDisconnectEvent(TypedDict):
    type: Literal["mqtt.disconnect"]
    mqtt: dict[str, Any]


class MqttPublish(TypedDict):
    topic: str
    payload: bytes | str
    qos: NotRequired[int]
    retain: NotRequired[bool]
    properties: NotRequired[dict[str, Any]]


class MqttPublishEvent(TypedDict):
    type: Literal["mqtt.pub"]
    mqtt: MqttPublish


class _SubscribeBody(TypedDict):
    topic: str
    qos: NotRequired[int]


class MqttSubscribeEvent(TypedDict):
    type: Literal["mqtt.sub"]
    mqtt: _SubscribeBody


class _UnsubscribeBody(TypedDict):
    topic: str


class MqttUnsubscribeEvent(TypedDict):
    type: Literal["mqtt.usub"]
    mqtt: _UnsubscribeBody


class _DeadLetterBody(TypedDict):
    error: str


class MqttDeadLetterEvent(TypedDict):
    """Sent while handling an ``mqtt.msg``: record that message as refused, keep the instance."""

    type: Literal["mqtt.dead_letter"]
    mqtt: _DeadLetterBody


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
