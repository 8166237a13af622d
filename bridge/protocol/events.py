"""Validation of what applications send, before anything reaches the broker.

Like daphne's outbound checks: an invalid event makes ``send()`` raise with a message that says
what is wrong, so the bug surfaces in the application that made it, not as a broker disconnect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paho.mqtt.properties import Properties

from mqttbridge.protocol import properties as props_
from mqttbridge.protocol.topics import TopicError, validate_filter, validate_publish_topic

__all__ = [
    "InvalidEvent",
    "LayerEventFailed",
    "Publish",
    "is_qos",
    "validate_dead_letter",
    "validate_event",
    "validate_publish",
    "validate_qos",
    "validate_subscribe",
]


class InvalidEvent(ValueError):
    """An application sent an event the bridge cannot carry out; the message says why."""


class LayerEventFailed(Exception):
    """A consumer's channel-layer handler raised ``error`` (its ``__cause__``): the instance
    ends, but no MQTT message is to blame, so none is dead-lettered (docs/guarantees.md)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None


def is_qos(value: Any) -> bool:
    """Whether ``value`` is an MQTT QoS level: the int 0, 1 or 2 (not ``True``, not ``1.0``).

    The one test of a QoS, for events, Python routes and the config file alike; each words
    its own message around it."""
    return type(value) is int and value in (0, 1, 2)


def validate_qos(qos: Any, what: str = "qos") -> int:
    if not is_qos(qos):
        raise InvalidEvent(f"{what} must be 0, 1 or 2, got {qos!r}")
    return int(qos)


def validate_publish(body: Any, max_payload_bytes: int) -> Publish:
    """Check an ``mqtt.pub`` body (or a publish request) and return what to send."""
    if not isinstance(body, dict):
        raise InvalidEvent(f"publish event needs an 'mqtt' dict, got {type(body).__name__}")
    topic = body.get("topic")
    try:
        validate_publish_topic(topic)  # type: ignore[arg-type]
    except TopicError as exc:
        raise InvalidEvent(f"cannot publish: {exc}") from None
    assert isinstance(topic, str)
    if topic.startswith("$"):
        raise InvalidEvent(
            f"cannot publish to {topic!r}: topics starting with '$' are reserved for the broker"
        )
    payload = body.get("payload", b"")
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    elif isinstance(payload, bytearray | memoryview):
        payload = bytes(payload)
    elif payload is None:
        payload = b""
    elif not isinstance(payload, bytes):
        raise InvalidEvent(
            f"cannot publish to {topic!r}: payload must be bytes or str, "
            f"got {type(payload).__name__} (encode it first, or use publish_json)"
        )
    if len(payload) > max_payload_bytes:
        raise InvalidEvent(
            f"cannot publish to {topic!r}: payload is {len(payload)} bytes, over the "
            f"limit of {max_payload_bytes} (limits.max_payload_bytes)"
        )
    qos = validate_qos(body.get("qos", 1))
    retain = body.get("retain", False)
    if not isinstance(retain, bool):
        raise InvalidEvent(f"retain must be True or False, got {retain!r}")
    try:
        properties = props_.to_paho(body.get("properties"))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidEvent(f"cannot publish to {topic!r}: {exc}") from None
    except Exception as exc:  # paho raises MQTTException for values of the wrong type
        raise InvalidEvent(f"cannot publish to {topic!r}: bad property value: {exc}") from None
    return Publish(topic, payload, qos, retain, properties)


def validate_subscribe(body: Any, *, need_qos: bool) -> tuple[str, int]:
    if not isinstance(body, dict):
        raise InvalidEvent(f"subscribe event needs an 'mqtt' dict, got {type(body).__name__}")
    topic = body.get("topic")
    try:
        validate_filter(topic)  # type: ignore[arg-type]
    except TopicError as exc:
        raise InvalidEvent(f"cannot subscribe: {exc}") from None
    assert isinstance(topic, str)
    qos = validate_qos(body.get("qos", 1)) if need_qos else 0
    return topic, qos


def validate_dead_letter(body: Any, handling: dict[str, Any] | None) -> str:
    """Check an ``mqtt.dead_letter`` body sent while ``handling`` was the application's latest
    event (None once it asked for the next); return the error to record."""
    if handling is None or handling.get("type") != "mqtt.msg":
        raise InvalidEvent(
            "mqtt.dead_letter is allowed only while handling an 'mqtt.msg' event (before "
            "receive() is called again): it records that message"
        )
    if not isinstance(body, dict):
        raise InvalidEvent(f"dead-letter event needs an 'mqtt' dict, got {type(body).__name__}")
    error = body.get("error")
    if not isinstance(error, str) or not error:
        raise InvalidEvent(f"mqtt.dead_letter's 'error' must be a non-empty str, got {error!r}")
    return error


def validate_event(
    event: Any, handling: dict[str, Any] | None, max_payload_bytes: int
) -> tuple[str, Any]:
    """Check any event an application sends, as the bridge and ``MqttCommunicator`` both do;
    return its type and what to carry out: a ``Publish`` (``mqtt.pub``), ``(filter, qos)``
    (``mqtt.sub``, ``mqtt.usub``), the error to record (``mqtt.dead_letter``) or mqttasgi's
    ``command`` dict (``mqttasgi.worker.spawn``/``kill``). ``handling`` is the event the
    application is handling (None once it asked for the next)."""
    kind = event.get("type") if isinstance(event, dict) else None
    if kind == "mqtt.pub":
        return kind, validate_publish(event.get("mqtt"), max_payload_bytes)
    if kind == "mqtt.sub" or kind == "mqtt.usub":
        return kind, validate_subscribe(event.get("mqtt"), need_qos=kind == "mqtt.sub")
    if kind == "mqtt.dead_letter":
        return kind, validate_dead_letter(event.get("mqtt"), handling)
    if kind == "mqttasgi.worker.spawn" or kind == "mqttasgi.worker.kill":
        return kind, event.get("command") or {}
    raise InvalidEvent(
        f"unknown event type {kind!r}: an mqtt application may send 'mqtt.pub', "
        "'mqtt.sub', 'mqtt.usub' or 'mqtt.dead_letter'"
    )
