"""What applications send, checked before anything reaches the broker."""

import re

import pytest

from mqttbridge.protocol.events import (
    InvalidEvent,
    LayerEventFailed,
    validate_dead_letter,
    validate_publish,
    validate_subscribe,
)


def test_a_publish_defaults_to_qos_1_and_encodes_text():
    pub = validate_publish({"topic": "a/b", "payload": "°C"}, 100)
    assert (pub.topic, pub.payload, pub.qos, pub.retain, pub.properties) == (
        "a/b",
        "°C".encode(),
        1,
        False,
        None,
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"topic": "a/+"}, "wildcards are only allowed in subscriptions"),
        ({"topic": "$SYS/x"}, "reserved for the broker"),
        ({"topic": "a", "payload": {"x": 1}}, "payload must be bytes or str, got dict"),
        ({"topic": "a", "payload": b"x" * 11}, "payload is 11 bytes, over the limit of 10"),
        ({"topic": "a", "qos": 3}, "qos must be 0, 1 or 2, got 3"),
        ({"topic": "a", "retain": 1}, "retain must be True or False, got 1"),
        ("a", "publish event needs an 'mqtt' dict, got str"),
    ],
)
def test_a_bad_publish_says_what_is_wrong(body, error):
    with pytest.raises(InvalidEvent, match=re.escape(error)):
        validate_publish(body, 10)


def test_a_subscribe_takes_filters_and_an_unsubscribe_no_qos():
    assert validate_subscribe({"topic": "a/#", "qos": 0}, need_qos=True) == ("a/#", 0)
    assert validate_subscribe({"topic": "a/#", "qos": 7}, need_qos=False) == ("a/#", 0)
    with pytest.raises(InvalidEvent, match="cannot subscribe"):
        validate_subscribe({"topic": "a/#/b"}, need_qos=True)


def test_a_dead_letter_is_allowed_only_while_handling_a_message():
    message = {"type": "mqtt.msg", "mqtt": {}}
    assert validate_dead_letter({"error": "bad"}, message) == "bad"
    with pytest.raises(InvalidEvent, match=r"only while handling an 'mqtt\.msg'"):
        validate_dead_letter({"error": "bad"}, {"type": "mqtt.connect"})
    with pytest.raises(InvalidEvent, match="must be a non-empty str"):
        validate_dead_letter({"error": ""}, message)


def test_a_layer_event_failure_says_what_the_handler_raised():
    failure = LayerEventFailed(ValueError("no such device"))
    assert str(failure) == "ValueError: no such device"
    assert isinstance(failure.error, ValueError)
