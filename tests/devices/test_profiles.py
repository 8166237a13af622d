"""Profile files: the shipped ones load, mistakes are named by file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqttbridge.cli import CommandLineInterface
from mqttbridge.config.schema import load_config
from mqttbridge.devices.simulator.profiles import (
    ProfileError,
    load_profile,
    parse_profile,
    shipped_profiles,
)
from mqttbridge.devices.simulator.routes import unrouted_topics

ROOT = Path(__file__).resolve().parents[2]

_BAD = """\
name: broken
state:
  power: "OFF"
telemetry:
  - topic: tele/{id}/SENSOR
    every: -1
    qos: 3
    payload:
      t: {$random_wlak: {min: 1, max: 2}}
      p: "{state.pwer}"
commands:
  - topic: cmnd/{id}/POWER
    set: {powr: "{payload}"}
    replies: []
"""


@pytest.mark.parametrize("name", sorted(shipped_profiles()))
def test_every_shipped_profile_loads(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name and profile.telemetry and profile.commands and profile.will


def test_each_mistake_names_file_line_and_field() -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(_BAD, "fleet/broken.yaml")
    lines = str(caught.value).splitlines()
    assert lines == [
        "fleet/broken.yaml:6: telemetry[0].every: expected a number of seconds greater than 0, "
        "got -1",
        "fleet/broken.yaml:7: telemetry[0].qos: must be 0, 1 or 2, got 3",
        "fleet/broken.yaml:9: telemetry[0].payload.t.$random_wlak: unknown generator "
        "$random_wlak; did you mean $random_walk? generators: $random_walk, $sine, $counter, "
        "$choice, $battery, $timestamp, $uptime, $device_id, $round_trip",
        "fleet/broken.yaml:10: telemetry[0].payload.p: no state variable 'pwer' (declared "
        "under state: power); did you mean '{state.power}'?",
        "fleet/broken.yaml:13: commands[0].set.powr: no state variable 'powr' (declared under "
        "state: power); did you mean 'power'?",
        "fleet/broken.yaml:14: commands[0].replies: unknown key; did you mean 'reply'?",
    ]


def test_a_generator_parameter_error_names_the_parameter() -> None:
    text = "telemetry:\n  - topic: t\n    payload: {$sine: {min: 1, max: 2, period: 0}}\n"
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, "p.yaml")
    assert str(caught.value) == (
        "p.yaml:3: telemetry[0].payload.$sine.period: must be greater than 0, got 0"
    )


def test_an_unknown_placeholder_lists_those_that_exist() -> None:
    text = "telemetry:\n  - topic: t/{device}\n"
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, "p.yaml")
    assert str(caught.value) == (
        "p.yaml:2: telemetry[0].topic: unknown placeholder {device}; "
        "expected one of {id}, {index}, {profile}"
    )


def test_the_cli_refuses_a_bad_profile_in_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("telemetry:\n  - topic: t\n    payload: {$nope: }\n")
    status = CommandLineInterface().run(
        ["simulate", "--profile", str(path), "--broker", "mqtt://127.0.0.1:9"]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"error: {path}:3: telemetry[0].payload.$nope: unknown generator $nope;")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_unrouted_topics_are_listed_against_the_repository_config() -> None:
    config = load_config(ROOT / "config.yaml", import_consumers=False)
    profiles = [load_profile(name) for name in sorted(shipped_profiles())]
    # Only the command acknowledgements: the example consumers do not read them.
    assert unrouted_topics(config, profiles) == [
        ("devices/sensor-0/ack", "generic"),
        ("stat/tasmota_000000/RESULT", "tasmota"),
        ("stat/tasmota_000000/POWER", "tasmota"),
    ]
    bare = load_config(ROOT / "tests" / "devices" / "one_route.yaml", import_consumers=False)
    missing = {topic for topic, _ in unrouted_topics(bare, [load_profile("generic")])}
    assert missing == {"devices/sensor-0/status", "devices/sensor-0/ack"}


_RANDOM = """\
telemetry:
  - topic: t/{id}
    payload:
      walk: {$random_walk: {min: 0, max: 100}}
      pick: {$choice: {values: [a, b, c, d]}}
"""


def _payloads(seed: int, index: int) -> list[bytes]:
    import asyncio

    from mqttbridge.devices.simulator.connection import BrokerTarget
    from mqttbridge.devices.simulator.device import Device
    from mqttbridge.devices.simulator.stats import Stats

    profile = parse_profile(_RANDOM, "random.yaml")
    device = Device(
        profile, index, seed, BrokerTarget("127.0.0.1", 9), asyncio.Semaphore(1), Stats(1)
    )
    stream = device.streams[0]
    return [stream.encode(device._env(stream)) for _ in range(20)]


def test_the_same_seed_gives_the_same_values_and_devices_differ() -> None:
    assert _payloads(seed=7, index=0) == _payloads(seed=7, index=0)
    assert _payloads(seed=7, index=0) != _payloads(seed=8, index=0)
    assert _payloads(seed=7, index=0) != _payloads(seed=7, index=1)
