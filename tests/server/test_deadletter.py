"""The dead-letter record and its publisher."""

from __future__ import annotations

import json
import logging

from mqttbridge.mqtt.client import OutboundQueueFull
from mqttbridge.server.deadletter import DeadLetters, dead_letter_record
from mqttbridge.server.link import BrokerLink
from tests.server.parts import RecordingClient


def _record(payload: bytes | None, max_bytes: int = 1000, **kwargs: object) -> dict:
    data = dead_letter_record(
        "t/1", payload, "bad", consumer="app.C", payload_size=None, max_bytes=max_bytes, **kwargs
    )  # type: ignore[arg-type]
    return json.loads(data)  # type: ignore[no-any-return]


def test_a_text_payload_is_kept_as_text():
    record = _record(b'{"celsius": 1}')
    assert record["payload"] == '{"celsius": 1}' and "payload_base64" not in record
    assert (record["topic"], record["error"], record["consumer"]) == ("t/1", "bad", "app.C")


def test_a_binary_payload_is_kept_as_base64():
    assert _record(b"\xff\x00")["payload_base64"] == "/wA="


def test_a_payload_that_would_break_the_limit_is_left_out_and_said_so():
    record = _record(b"x" * 500, max_bytes=200)
    assert "payload" not in record and record["payload_size"] == 500
    assert record["payload_omitted"] is True


def test_records_are_published_at_qos_1_to_the_topic():
    client = RecordingClient()
    link = BrokerLink("id", "mqtt://x", client)  # type: ignore[arg-type]
    DeadLetters(link, "dl/topic", 1000).publish("t/1", b"p", "bad", consumer="app.C")
    ((topic, data, qos, retain),) = client.published
    assert (topic, qos, retain) == ("dl/topic", 1, False)
    assert json.loads(data)["payload"] == "p"


def test_a_record_that_cannot_be_queued_is_logged_in_full(caplog):
    class FullClient(RecordingClient):
        def publish(self, *args: object, **kwargs: object) -> None:
            raise OutboundQueueFull("full")

    link = BrokerLink("id", "mqtt://x", FullClient())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        DeadLetters(link, "dl", 1000).publish("t/1", b"p", "bad")
    assert "dead-letter record lost, outbound queue full" in caplog.text
    assert '"payload": "p"' in caplog.text
