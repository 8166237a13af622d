"""MQTT 5 properties as plain dicts with snake_case keys, both ways.

paho keeps properties as attributes named after the spec ("User Property" -> ``UserProperty``);
applications see ``{"user_properties": [("k", "v")], "content_type": ..., ...}`` instead, which
serialises through any channel layer.
"""

from __future__ import annotations

import re
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["from_paho", "to_paho"]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_NAMES = [name.replace(" ", "") for name in Properties(PacketTypes.PUBLISH).names]
# "UserProperty" holds a list of pairs, so its dict key is plural.
_TO_SNAKE = {name: _snake(name) for name in _NAMES} | {"UserProperty": "user_properties"}
_FROM_SNAKE = {snake: name for name, snake in _TO_SNAKE.items()}
_PUBLISH_ALLOWED = {
    "payload_format_indicator",
    "message_expiry_interval",
    "content_type",
    "response_topic",
    "correlation_data",
    "user_properties",
    "topic_alias",
}


def from_paho(props: Properties | None) -> dict[str, Any]:
    """Convert the properties of a received PUBLISH; empty for MQTT 3.1.1."""
    if props is None:
        return {}
    converted: dict[str, Any] = {}
    for key, value in vars(props).items():
        snake = _TO_SNAKE.get(key)
        if snake is not None:
            converted[snake] = value
    return converted


def to_paho(properties: dict[str, Any] | None) -> Properties | None:
    """Build PUBLISH properties from a dict, raising ValueError naming an unknown key."""
    if not properties:
        return None
    props = Properties(PacketTypes.PUBLISH)
    for key, value in properties.items():
        if key not in _PUBLISH_ALLOWED:
            raise ValueError(
                f"unknown or disallowed MQTT 5 publish property {key!r}; "
                f"allowed: {', '.join(sorted(_PUBLISH_ALLOWED))}"
            )
        name = _FROM_SNAKE[key]
        if key == "user_properties":
            pairs = list(value.items()) if isinstance(value, dict) else value
            for pair in pairs:
                k, v = pair
                props.UserProperty = (str(k), str(v))
        else:
            setattr(props, name, value)
    # Pack once now: a value of the wrong type fails here, with the caller, not inside paho.
    try:
        props.pack()
    except Exception as exc:
        raise ValueError(f"bad MQTT 5 property value: {exc}") from None
    return props
