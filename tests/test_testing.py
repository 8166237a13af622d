"""mqttbridge.testing.MqttCommunicator: consumers tested with no broker."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mqttbridge.consumers import InvalidPayload
from mqttbridge.consumers.examples import TemperatureConsumer
from mqttbridge.protocol.events import InvalidEvent
from mqttbridge.testing import MqttCommunicator
from tests import apps
from tests.django_project import clean_env


async def test_example_consumer_switches_the_fan():
    communicator = MqttCommunicator(
        TemperatureConsumer.as_asgi(),
        "sensors/{device_id}/temperature",
        topic="sensors/t1/temperature",
    )
    await communicator.connect()
    await communicator.send_message("sensors/t1/temperature", b'{"celsius": 30}')
    published = await communicator.receive_publish()
    assert published["topic"] == "devices/t1/commands"
    assert published["payload"] == '{"fan": "on", "reason": "30.0 °C"}'
    await communicator.send_message("sensors/t1/temperature", b'{"celsius": 29}')
    assert await communicator.receive_nothing()
    await communicator.disconnect()


async def test_invalid_publish_fails_the_test_with_the_bridges_message():
    apps.reset()
    communicator = MqttCommunicator(
        apps.RecordingConsumer.as_asgi(), "sensors/{device_id}/data", topic="sensors/x/data"
    )
    await communicator.connect()
    await communicator.send_message("sensors/x/data", b"bad-publish")
    assert await communicator.receive_nothing()
    assert apps.ERRORS == [
        "cannot publish: topic 'reply/+/wild' contains a wildcard ('+' or '#'); wildcards are "
        "only allowed in subscriptions, not in publishes"
    ]
    await communicator.disconnect()


async def test_receive_publish_says_what_came_instead():
    communicator = MqttCommunicator(apps.MqttasgiEcho.as_asgi(), app_id=0)
    await communicator.connect()
    with pytest.raises(AssertionError, match=r"expected an mqtt\.pub event, got .*mqtt\.sub"):
        await communicator.receive_publish()


def test_topic_must_match_the_route():
    with pytest.raises(ValueError, match="does not match route"):
        MqttCommunicator(apps.RecordingConsumer.as_asgi(), "a/{x}", topic="b/c")


async def test_payload_over_the_limit_is_refused():
    consumer = apps.SyncRecorder.as_asgi()
    communicator = MqttCommunicator(consumer, "sync/{x}", topic="sync/a", max_payload_bytes=4)
    await communicator.connect()
    await communicator.send_message("sync/a", b"12345")
    with pytest.raises(InvalidEvent, match="payload is 5 bytes, over the limit of 4"):
        await communicator.wait(1)


async def test_invalid_payload_is_a_dead_letter_event_and_the_consumer_lives_on():
    apps.reset()
    communicator = MqttCommunicator(
        apps.CountingJson.as_asgi(), "count/{device_id}", topic="count/c1"
    )
    await communicator.connect()
    await communicator.send_message("count/c1", b"{}")
    await communicator.send_message("count/c1", b"{oops")
    dead_letter = await communicator.receive_dead_letter()
    assert dead_letter == {
        "error": "invalid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)"
    }
    await communicator.send_message("count/c1", b"{}")
    assert await communicator.receive_nothing()
    counts = [(ident, payload) for ident, kind, _, payload in apps.EVENTS if kind == "count"]
    assert counts == [(apps.EVENTS[0][0], b"1"), (apps.EVENTS[0][0], b"2")]
    await communicator.disconnect()


class _DeadLetterAtConnect(apps.CountingJson):
    async def connect(self) -> None:
        await self.send({"type": "mqtt.dead_letter", "mqtt": {"error": "too early"}})


class _DeadLetterWithoutError(apps.CountingJson):
    async def receive_json(self, content, message):
        await self.send({"type": "mqtt.dead_letter", "mqtt": {"error": ""}})


@pytest.mark.parametrize(
    ("consumer", "error"),
    [
        (_DeadLetterAtConnect, "only while handling an 'mqtt.msg' event"),
        (_DeadLetterWithoutError, "'error' must be a non-empty str, got ''"),
    ],
)
async def test_dead_letter_events_are_checked_like_the_bridge_checks_them(consumer, error):
    communicator = MqttCommunicator(consumer.as_asgi(), "count/{device_id}", topic="count/c1")
    await communicator.send_input({"type": "mqtt.connect", "mqtt": {}})
    await communicator.send_message("count/c1", b"{}")
    with pytest.raises(InvalidEvent, match=error):
        await communicator.wait(1)


async def test_example_consumer_refuses_a_reading_without_celsius_and_keeps_its_fan_state():
    communicator = MqttCommunicator(
        TemperatureConsumer.as_asgi(),
        "sensors/{device_id}/temperature",
        topic="sensors/t1/temperature",
    )
    await communicator.connect()
    await communicator.send_message("sensors/t1/temperature", b'{"celsius": 30}')
    assert (await communicator.receive_publish())["payload"].startswith('{"fan": "on"')
    await communicator.send_message("sensors/t1/temperature", b'{"kelvin": 300}')
    dead_letter = await communicator.receive_dead_letter()
    assert dead_letter == {"error": "a reading needs a number 'celsius', got keys ['kelvin']"}
    # Still the instance that switched the fan on: no second "on" command.
    await communicator.send_message("sensors/t1/temperature", b'{"celsius": 28}')
    assert await communicator.receive_nothing()
    await communicator.disconnect()


class _BareInvalidPayload(apps.CountingJson):
    async def receive_json(self, content, message):
        raise InvalidPayload()


async def test_invalid_payload_without_a_message_is_still_dead_lettered_not_a_crash():
    communicator = MqttCommunicator(
        _BareInvalidPayload.as_asgi(), "count/{device_id}", topic="count/c1"
    )
    await communicator.connect()
    await communicator.send_message("count/c1", b"{}")
    assert await communicator.receive_dead_letter() == {"error": "invalid payload"}
    await communicator.disconnect()


def test_the_documented_test_passes_in_a_plain_user_project(tmp_path):
    """docs/protocol.md's pytest.ini and example test, in a directory of their own, run by
    ``python -m pytest`` with no settings module and none of this repository's configuration."""
    docs = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    section = docs.split("## Testing consumers", 1)[1].split("\n## ", 1)[0]
    (ini,) = re.findall(r"```ini\n(.*?)```", section, re.DOTALL)
    test = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[0]  # the whole example
    (tmp_path / "pytest.ini").write_text(ini)
    (tmp_path / "test_consumer.py").write_text(test)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


class _SendsUnknown(apps.CountingJson):
    async def receive_json(self, content, message):
        await self.send({"type": "mqtt.publish", "mqtt": {"topic": "a"}})


async def test_an_event_the_bridge_does_not_know_fails_the_test_as_it_fails_in_the_bridge():
    communicator = MqttCommunicator(_SendsUnknown.as_asgi(), "count/{device_id}", topic="count/c1")
    await communicator.connect()
    await communicator.send_message("count/c1", b"{}")
    with pytest.raises(InvalidEvent, match=r"unknown event type 'mqtt\.publish'"):
        await communicator.wait(1)
