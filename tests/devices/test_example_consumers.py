"""The example consumers config.yaml wires to the simulator's profiles, with no broker."""

from __future__ import annotations

import json

from channels.layers import get_channel_layer

from mqttbridge.consumers.examples_devices import (
    PRESENCE,
    FanConsumer,
    PresenceConsumer,
    TelemetryConsumer,
    ThermostatConsumer,
)
from mqttbridge.testing import MqttCommunicator


async def test_thermostat_sets_the_heater_at_once_then_on_crossings() -> None:
    route, where = "tele/{device_id}/SENSOR", "tele/plug/SENSOR"
    communicator = MqttCommunicator(ThermostatConsumer.as_asgi(), route, topic=where)
    await communicator.connect()

    async def reading(celsius: float) -> None:
        body = {"Time": "2026-11-27T02:00:00", "DS18B20": {"Temperature": celsius}}
        await communicator.send_message(where, json.dumps(body).encode())

    await reading(20.0)
    published = await communicator.receive_publish()
    assert (published["topic"], published["payload"]) == ("cmnd/plug/POWER", "ON")
    await reading(21.0)
    assert await communicator.receive_nothing()
    await reading(22.0)
    assert (await communicator.receive_publish())["payload"] == "OFF"
    await communicator.disconnect()


async def test_fan_consumer_echoes_the_ref_the_simulator_times() -> None:
    route, where = "sensors/{device_id}/temperature", "sensors/s1/temperature"
    communicator = MqttCommunicator(FanConsumer.as_asgi(), route, topic=where)
    await communicator.connect()
    await communicator.send_message(where, b'{"celsius": 21, "ref": "12345"}')
    published = await communicator.receive_publish()
    assert published["topic"] == "devices/s1/commands"
    assert json.loads(published["payload"]) == {"fan": "off", "ref": "12345"}
    await communicator.send_message(where, b'{"celsius": 21}')
    assert await communicator.receive_nothing()
    await communicator.disconnect()


async def test_presence_from_each_firmwares_birth_and_will() -> None:
    cases = [
        ("tele/{device_id}/LWT", "tele/t1/LWT", b"Online", "t1", True),
        ("shellies/{device_id}/online", "shellies/s1/online", b"false", "s1", False),
        ("{device_id}/status", "node1/status", b"offline", "node1", False),
        (
            "zigbee2mqtt/bridge/state",
            "zigbee2mqtt/bridge/state",
            b'{"state":"online"}',
            "zigbee2mqtt",
            True,
        ),
    ]
    for route, where, payload, device, online in cases:
        communicator = MqttCommunicator(PresenceConsumer.as_asgi(), route, topic=where)
        await communicator.connect()
        await communicator.send_message(where, payload)
        await communicator.receive_nothing()
        assert PRESENCE[device] is online, where
        await communicator.disconnect()


async def test_telemetry_keeps_rolling_stats_and_tells_the_devices_group() -> None:
    layer = get_channel_layer()
    await layer.group_add("telemetry.bulb_1", "dashboard")
    route, where = "zigbee2mqtt/{device_id}", "zigbee2mqtt/bulb_1"
    communicator = MqttCommunicator(TelemetryConsumer.as_asgi(), route, topic=where)
    await communicator.connect()
    for quality in (100, 120):
        body = {"state": "ON", "brightness": 10, "linkquality": quality}
        await communicator.send_message(where, json.dumps(body).encode())
    await communicator.receive_nothing()
    first = await layer.receive("dashboard")
    second = await layer.receive("dashboard")
    assert first["readings"] == {"brightness": 10.0, "linkquality": 100.0}
    assert second["stats"]["linkquality"] == {"count": 2, "mean": 110.0, "min": 100.0, "max": 120.0}
    await communicator.disconnect()
