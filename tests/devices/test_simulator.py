"""The device simulator against a private Mosquitto, counted by an independent paho client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mqttbridge.devices.simulator.connection import BrokerTarget
from mqttbridge.devices.simulator.fleet import Fleet, FleetOptions
from mqttbridge.devices.simulator.profiles import load_profile
from tests.services import MosquittoProcess
from tests.services.mqtt_client import PahoClient

ROOT = Path(__file__).resolve().parents[2]


def _drain(client: PahoClient) -> list[Any]:
    messages = []
    while not client.messages.empty():
        messages.append(client.messages.get())
    return messages


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _simulate(broker: MosquittoProcess, *args: str) -> list[str]:
    """The command line of a simulator process, as a user runs it."""
    return [sys.executable, "-m", "mqttbridge.devices", "--broker", broker.url, *args]


def _target(broker: MosquittoProcess, **options: Any) -> BrokerTarget:
    return BrokerTarget(broker.host, broker.port, reconnect_min=0.2, reconnect_max=1.0, **options)


@pytest.mark.parametrize("version", [4, 5])
async def test_n_devices_at_rate_r_publish_n_r_duration_messages(
    mosquitto: MosquittoProcess, version: int
) -> None:
    devices, rate, duration = 40, 5.0, 4.0
    with PahoClient(mosquitto.host, mosquitto.port) as counter:
        counter.subscribe("sensors/+/temperature", qos=0)
        fleet = Fleet(
            [load_profile("generic")],
            _target(mosquitto, version=version),
            FleetOptions(devices=devices, rate=rate, duration=duration),
        )
        await fleet.run()
        await asyncio.sleep(0.5)  # the last messages on their way to the counter
        received = _drain(counter)
    expected = devices * rate * duration
    assert abs(len(received) - expected) <= 0.02 * expected, (len(received), expected)
    per_device: dict[str, int] = {}
    for message in received:
        per_device[message.topic] = per_device.get(message.topic, 0) + 1
    assert len(per_device) == devices


async def test_commands_are_obeyed_acknowledged_and_shown_in_later_telemetry(
    mosquitto: MosquittoProcess,
) -> None:
    profiles = [load_profile(name) for name in ("generic", "tasmota", "shelly", "esphome")]
    fleet = Fleet(profiles, _target(mosquitto), FleetOptions(devices=4, rate=10))
    with PahoClient(mosquitto.host, mosquitto.port) as client:
        for topic in (
            "devices/+/ack",
            "sensors/+/temperature",
            "stat/#",
            "shellies/#",
            "+/switch/#",
        ):
            client.subscribe(topic, qos=1)
        task = asyncio.get_running_loop().create_task(fleet.run())
        await _until(lambda: fleet.stats.connected == 4, 10, "4 devices online")
        client.publish("devices/sensor-0/commands", json.dumps({"fan": "on"}), qos=1)
        client.publish("cmnd/tasmota_000001/POWER", "ON", qos=1)
        client.publish("shellies/shelly1pm-000002/relay/0/command", "on", qos=1)
        client.publish("esphome-node-3/switch/relay/command", "ON", qos=1)
        await _until(lambda: fleet.stats.commands == 4, 10, "4 commands handled")
        await asyncio.sleep(0.5)  # telemetry after the commands
        fleet.stop()
        await task
        seen: dict[str, list[bytes]] = {}
        for message in _drain(client):
            seen.setdefault(message.topic, []).append(message.payload)
    assert json.loads(seen["devices/sensor-0/ack"][0]) == {"fan": "on"}
    assert json.loads(seen["sensors/sensor-0/temperature"][-1])["fan"] == "on"
    assert seen["stat/tasmota_000001/POWER"] == [b"ON"]
    assert json.loads(seen["stat/tasmota_000001/RESULT"][0]) == {"POWER": "ON"}
    assert seen["shellies/shelly1pm-000002/relay/0"][-1] == b"on"
    assert seen["esphome-node-3/switch/relay/state"][-1] == b"ON"


async def test_a_command_outside_the_accepted_values_changes_nothing(
    mosquitto: MosquittoProcess,
) -> None:
    fleet = Fleet([load_profile("tasmota")], _target(mosquitto), FleetOptions(devices=1))
    with PahoClient(mosquitto.host, mosquitto.port) as client:
        client.subscribe("stat/#", qos=1)
        task = asyncio.get_running_loop().create_task(fleet.run())
        await _until(lambda: fleet.stats.connected == 1, 10, "the device online")
        client.publish("cmnd/tasmota_000000/POWER", "BLINK", qos=1)
        await _until(lambda: fleet.stats.commands_rejected == 1, 10, "the command refused")
        assert client.next_message().payload in (b"OFF", b'{"POWER":"OFF"}')
        fleet.stop()
        await task
    assert fleet.devices[0].state["power"] == "OFF"


async def test_every_device_reconnects_and_resumes_after_the_broker_restarts(
    mosquitto: MosquittoProcess,
) -> None:
    devices = 20
    fleet = Fleet(
        [load_profile("generic"), load_profile("tasmota")],
        _target(mosquitto, keepalive=5),
        FleetOptions(devices=devices, rate=4),
    )
    task = asyncio.get_running_loop().create_task(fleet.run())
    await _until(lambda: fleet.stats.connected == devices, 10, "every device online")
    mosquitto.kill()
    await _until(lambda: fleet.stats.connected == 0, 10, "every device offline")
    mosquitto.start()
    with PahoClient(mosquitto.host, mosquitto.port) as client:
        client.subscribe("sensors/+/temperature", qos=0)
        client.subscribe("tele/+/SENSOR", qos=0)
        await _until(lambda: fleet.stats.reconnects == devices, 20, "every device reconnected")
        await asyncio.sleep(1.5)
        publishers = {message.topic for message in _drain(client)}
    fleet.stop()
    await task
    assert len(publishers) == devices, sorted(publishers)


def test_a_killed_simulator_leaves_each_devices_last_will(mosquitto: MosquittoProcess) -> None:
    profiles = ["tasmota", "shelly", "esphome", "generic"]
    wills = {
        "tele/tasmota_000000/LWT": b"Offline",
        "shellies/shelly1pm-000001/online": b"false",
        "esphome-node-2/status": b"offline",
        "devices/sensor-3/status": b"offline",
    }
    with PahoClient(mosquitto.host, mosquitto.port) as client:
        for topic in wills:
            client.subscribe(topic, qos=1)
        command = _simulate(mosquitto, "--devices", "4", "--plain", "--keepalive", "5")
        for profile in profiles:
            command += ["--profile", profile]
        process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)
        try:
            births = {client.next_message(10).topic for _ in wills}
            assert births == set(wills)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            received = {}
            for _ in wills:
                message = client.next_message(10)
                received[message.topic] = message.payload
        finally:
            process.kill()
            process.wait()
    assert received == wills


def test_ctrl_c_ends_with_the_summary_and_goes_offline_cleanly(mosquitto: MosquittoProcess) -> None:
    with PahoClient(mosquitto.host, mosquitto.port) as client:
        client.subscribe("devices/+/status", qos=1)
        command = _simulate(mosquitto, "--devices", "2", "--json", "-")
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert {client.next_message(10).payload for _ in range(2)} == {b"online"}
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        offline = {client.next_message(10).payload for _ in range(2)}
    assert process.returncode == 0, err
    assert b"Traceback" not in err
    summary = json.loads(out)
    assert summary["devices"] == 2 and summary["connects"] == 2
    assert offline == {b"offline"}
