"""What applications send is checked before it reaches the broker, with errors that say why."""

from __future__ import annotations

from typing import Any

import pytest

from mqttbridge.protocol.events import (
    InvalidEvent,
    LayerEventFailed,
    Publish,
    validate_dead_letter,
    validate_publish,
    validate_qos,
    validate_subscribe,
)

LIMIT = 1024
MSG = {"type": "mqtt.msg"}


def refusal(check: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidEvent) as refused:
        check(*args, **kwargs)
    return str(refused.value)


# --- publish ---------------------------------------------------------------------------------


def test_a_minimal_publish_is_qos_1_not_retained_without_properties() -> None:
    assert validate_publish({"topic": "devices/t1/cmd"}, LIMIT) == Publish(
        "devices/t1/cmd", b"", 1, False, None
    )


@pytest.mark.parametrize(
    ("payload", "sent"),
    [("°C", "°C".encode()), (bytearray(b"ab"), b"ab"), (memoryview(b"cd"), b"cd"), (None, b"")],
)
def test_payloads_become_bytes(payload: Any, sent: bytes) -> None:
    publish = validate_publish({"topic": "t", "payload": payload, "qos": 0}, LIMIT)
    assert publish.payload == sent and type(publish.payload) is bytes


def test_properties_are_built_for_paho() -> None:
    publish = validate_publish({"topic": "t", "properties": {"content_type": "a/b"}}, LIMIT)
    assert publish.properties is not None and publish.properties.ContentType == "a/b"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("devices/t1", "publish event needs an 'mqtt' dict, got str"),
        ({"topic": "a/+/b"}, "cannot publish: topic 'a/+/b' contains a wildcard"),
        ({"topic": "$SYS/x"}, "cannot publish to '$SYS/x': topics starting with '$' are reserved"),
        (
            {"topic": "t", "payload": 3},
            "cannot publish to 't': payload must be bytes or str, got int",
        ),
        ({"topic": "t", "payload": b"x" * (LIMIT + 1)}, f"payload is {LIMIT + 1} bytes, over the"),
        ({"topic": "t", "qos": 3}, "qos must be 0, 1 or 2, got 3"),
        ({"topic": "t", "retain": 1}, "retain must be True or False, got 1"),
        (
            {"topic": "t", "properties": {"colour": 1}},
            "cannot publish to 't': unknown or disallowed",
        ),
        (
            {"topic": "t", "properties": {"payload_format_indicator": 7}},
            "cannot publish to 't': bad property value: PayloadFormatIndicator property value",
        ),
    ],
)
def test_an_invalid_publish_is_refused_saying_what_is_wrong(body: Any, message: str) -> None:
    assert message in refusal(validate_publish, body, LIMIT)


def test_the_payload_limit_names_its_setting() -> None:
    message = refusal(validate_publish, {"topic": "t", "payload": b"x" * 2000}, LIMIT)
    assert message.endswith("over the limit of 1024 (limits.max_payload_bytes)")


@pytest.mark.parametrize("qos", [True, 1.0, "1", -1, None])
def test_qos_is_an_int_0_1_or_2(qos: Any) -> None:
    assert refusal(validate_qos, qos, "mqtt.qos") == f"mqtt.qos must be 0, 1 or 2, got {qos!r}"


# --- subscribe -------------------------------------------------------------------------------


def test_subscribe_returns_the_filter_and_its_qos() -> None:
    assert validate_subscribe({"topic": "a/+/b", "qos": 2}, need_qos=True) == ("a/+/b", 2)
    assert validate_subscribe({"topic": "a/#"}, need_qos=True) == ("a/#", 1)
    # An unsubscribe needs no QoS, and a wrong one is not checked.
    assert validate_subscribe({"topic": "a/#", "qos": 9}, need_qos=False) == ("a/#", 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "subscribe event needs an 'mqtt' dict, got NoneType"),
        ({"topic": "a/#/b"}, "cannot subscribe: "),
        ({"topic": ""}, "cannot subscribe: "),
    ],
)
def test_an_invalid_subscribe_is_refused(body: Any, message: str) -> None:
    assert refusal(validate_subscribe, body, need_qos=True).startswith(message)


# --- dead letter -----------------------------------------------------------------------------


def test_dead_letter_while_handling_a_message_returns_its_error() -> None:
    assert validate_dead_letter({"error": "bad reading"}, MSG) == "bad reading"


@pytest.mark.parametrize("handling", [None, {"type": "mqtt.connect"}])
def test_dead_letter_is_only_for_the_message_being_handled(handling: Any) -> None:
    message = refusal(validate_dead_letter, {"error": "x"}, handling)
    assert message.startswith("mqtt.dead_letter is allowed only while handling an 'mqtt.msg'")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "dead-letter event needs an 'mqtt' dict, got list"),
        ({}, "mqtt.dead_letter's 'error' must be a non-empty str, got None"),
        ({"error": ""}, "mqtt.dead_letter's 'error' must be a non-empty str, got ''"),
    ],
)
def test_an_invalid_dead_letter_is_refused(body: Any, message: str) -> None:
    assert refusal(validate_dead_letter, body, MSG) == message


def test_a_layer_event_failure_says_what_the_handler_raised():
    failure = LayerEventFailed(ValueError("no such device"))
    assert str(failure) == "ValueError: no such device"
    assert isinstance(failure.error, ValueError)
