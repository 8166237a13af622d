"""MQTT 5 properties as snake_case dicts, both ways."""

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqttbridge.protocol.properties import from_paho, to_paho


def test_received_properties_become_a_snake_case_dict():
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.UserProperty = ("fw", "1.2")
    props.MessageExpiryInterval = 30
    assert from_paho(props) == {
        "content_type": "application/json",
        "user_properties": [("fw", "1.2")],
        "message_expiry_interval": 30,
    }
    assert from_paho(None) == {}


def test_a_dict_round_trips_through_paho():
    sent = {"content_type": "text/plain", "user_properties": {"a": "1"}, "correlation_data": b"c"}
    assert from_paho(to_paho(sent)) == {
        "content_type": "text/plain",
        "user_properties": [("a", "1")],
        "correlation_data": b"c",
    }
    assert to_paho({}) is None


def test_an_unknown_key_is_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match="disallowed MQTT 5 publish property 'session_expiry'"):
        to_paho({"session_expiry": 1})


def test_a_value_of_the_wrong_type_fails_with_the_caller():
    with pytest.raises(ValueError, match="bad MQTT 5 property value"):
        to_paho({"message_expiry_interval": -1})
