"""protocol.build: the scopes and events the server and MqttCommunicator both use."""

from mqttbridge.protocol import build
from mqttbridge.protocol.topics import compile_pattern
from mqttbridge.protocol.typing import ASGI_SPEC_VERSION
from mqttbridge.testing import MqttCommunicator
from tests import apps


def test_a_routed_scope_carries_the_route_and_its_parameters():
    pattern = compile_pattern("sensors/{device_id}/data")
    scope = build.routed_scope("bridge-1", "mqtt://b:1883", pattern, {"device_id": "t1"})
    assert scope == {
        "type": "mqtt",
        "asgi": {"version": "3.0", "spec_version": ASGI_SPEC_VERSION},
        "client_id": "bridge-1",
        "broker": "mqtt://b:1883",
        "version": "2.4",
        "spec_version": ASGI_SPEC_VERSION,
        "topic_route": {
            "pattern": "sensors/{device_id}/data",
            "filter": "sensors/+/data",
            "kwargs": {"device_id": "t1"},
        },
    }


def test_a_workers_params_lose_to_the_bridges_keys():
    scope = build.mqttasgi_scope("c", "b", "w1", {"type": "http", "room": 1})
    assert scope["type"] == "mqtt" and scope["room"] == 1
    assert (scope["app_id"], scope["instance_type"]) == ("w1", "worker")
    assert build.mqttasgi_scope("c", "b", 0)["instance_type"] == "master"


def test_events_have_the_documented_shape():
    assert build.connect_event() == {"type": "mqtt.connect", "mqtt": {}}
    assert build.disconnect_event("shutdown") == {
        "type": "mqtt.disconnect",
        "mqtt": {"reason": "shutdown"},
    }
    assert build.message_event("a/b", b"p", 1, False, True, {}) == {
        "type": "mqtt.msg",
        "mqtt": {
            "topic": "a/b",
            "payload": b"p",
            "qos": 1,
            "retain": False,
            "dup": True,
            "properties": {},
        },
    }


def test_the_communicator_builds_the_scope_the_bridge_builds():
    communicator = MqttCommunicator(
        apps.RecordingConsumer.as_asgi(), "sensors/{device_id}/data", topic="sensors/t1/data"
    )
    pattern = compile_pattern("sensors/{device_id}/data")
    expected = build.routed_scope("mqttbridge-test", "mqtt://testing", pattern, {"device_id": "t1"})
    assert communicator.scope == expected
