"""MQTT 5 properties between paho's objects and the plain dicts applications see."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqttbridge.protocol.properties import from_paho, to_paho


def test_no_properties_is_an_empty_dict_and_back_none() -> None:
    assert from_paho(None) == {}
    assert to_paho(None) is None
    assert to_paho({}) is None


def test_received_properties_get_snake_case_keys() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.MessageExpiryInterval = 60
    props.UserProperty = ("k", "v")
    props.UserProperty = ("k", "w")
    assert from_paho(props) == {
        "content_type": "application/json",
        "message_expiry_interval": 60,
        "user_properties": [("k", "v"), ("k", "w")],
    }


def test_publish_properties_survive_the_round_trip_through_the_wire_format() -> None:
    sent = {
        "payload_format_indicator": 1,
        "message_expiry_interval": 30,
        "content_type": "text/plain",
        "response_topic": "replies/t1",
        "correlation_data": b"\x00\x01",
        "user_properties": [("a", "1"), ("a", "2")],
    }
    packed = to_paho(sent)
    assert packed is not None
    received = Properties(PacketTypes.PUBLISH)
    received.unpack(packed.pack())
    assert from_paho(received) == sent


def test_user_properties_may_be_a_dict_and_are_sent_as_strings() -> None:
    props = to_paho({"user_properties": {"n": 1, "device": "t1"}})
    assert props is not None
    assert props.UserProperty == [("n", "1"), ("device", "t1")]


@pytest.mark.parametrize("key", ["subscription_identifier", "session_expiry_interval", "colour"])
def test_a_property_publish_may_not_carry_is_refused_naming_the_allowed_ones(key: str) -> None:
    with pytest.raises(ValueError) as refused:
        to_paho({key: 1})
    message = str(refused.value)
    assert message.startswith(f"unknown or disallowed MQTT 5 publish property {key!r}; allowed: ")
    assert "content_type" in message and "user_properties" in message


def test_a_value_of_the_wrong_type_is_refused_when_built_not_inside_paho() -> None:
    with pytest.raises(ValueError, match="bad MQTT 5 property value"):
        to_paho({"message_expiry_interval": "soon"})
