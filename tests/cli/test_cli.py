"""The mqttbridge command, run as users run it: in-process for the quick commands, as a real
subprocess for the run loop, signals and exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mqttbridge.broker.passwords import PasswordHash
from mqttbridge.config.schema import load_config
from tests.cli_helpers import ROOT, BridgeProcess, run_cli
from tests.services import PahoClient, TlsListener, free_port

ROUTE_YAML = (
    "routes:\n  - topic: sensors/{device_id}/data\n    consumer: tests.apps:RecordingConsumer\n"
)


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_check_accepts_the_repository_config():
    status, out, err = run_cli("check", "--config", str(ROOT / "config.yaml"))
    assert status == 0, err
    assert "config.yaml: OK" in out and "2 routes" in out


def test_routes_prints_the_routing_table():
    status, out, _ = run_cli("routes", "--config", str(ROOT / "config.yaml"))
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["PATTERN", "SUBSCRIBES", "TO", "QOS", "CONSUMER"]
    assert lines[1].split() == [
        "sensors/{device_id}/temperature",
        "sensors/+/temperature",
        "1",
        "mqttbridge.consumers.examples_devices:FanConsumer",
    ]


def test_config_error_names_file_line_and_key_without_traceback(tmp_path):
    path = write_config(
        tmp_path,
        "routes:\n  - topic: a/{x}\n"
        "    consumer: mqttbridge.consumers.examples:TemperatureConsume\n",
    )
    status, _, err = run_cli("check", "--config", path)
    assert status == 2
    assert err.strip() == (
        f"error: {path}:3: routes[0].consumer: module 'mqttbridge.consumers.examples' has no "
        "attribute 'TemperatureConsume'"
    )


def test_config_error_from_the_real_command_exits_2_without_traceback(tmp_path):
    path = write_config(tmp_path, "broker:\n  urll: mqtt://x\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mqttbridge", "run", "--config", path],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{path}:2: broker.urll: unknown key; did you mean 'url'?" in proc.stderr


def test_run_without_routes_or_application_says_so(tmp_path):
    path = write_config(tmp_path, "broker:\n  url: mqtt://127.0.0.1:1\n")
    status, _, err = run_cli("run", "--config", path)
    assert status == 2
    assert "has no routes and no --asgi application" in err


def test_bad_asgi_path_is_reported(tmp_path):
    path = write_config(tmp_path, "broker:\n  url: mqtt://127.0.0.1:1\n")
    status, _, err = run_cli("run", "--config", path, "--asgi", "tests.apps:Nope")
    assert status == 2
    assert "--asgi tests.apps:Nope" in err and "has no attribute 'Nope'" in err


def test_embedded_broker_port_taken_is_a_clear_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = write_config(
            tmp_path,
            f"broker:\n  url: embedded\n  listen: 127.0.0.1:{port}\n  protocol: 3.1.1\n"
            "routes:\n  - topic: a/{x}\n    consumer: tests.apps:RecordingConsumer\n",
        )
        status, _, err = run_cli("run", "--config", path)
    assert status == 1
    assert f"127.0.0.1:{port} is already in use" in err
    assert "broker.listen" in err


OPEN_BROKER = "broker:\n  url: embedded\n  listen: 0.0.0.0:18830\n" + ROUTE_YAML


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_refuses_what_run_refuses_an_embedded_broker_open_to_anyone(tmp_path, command):
    path = write_config(tmp_path, OPEN_BROKER)
    status, out, err = run_cli(command, "--config", path)
    assert (status, out) == (2, "")
    assert err == (
        f"error: {path}:3: broker.listen: 0.0.0.0:18830 is not a loopback address, and without "
        "broker.users the embedded broker would accept anonymous clients from the network; add "
        "broker.users (`mqttbridge passwd <username>` makes an entry), listen on "
        "127.0.0.1:18830, or set broker.allow_anonymous: true if that is intended\n"
    )


def test_check_accepts_an_embedded_broker_open_to_its_users(tmp_path):
    _, entry, _ = run_cli("passwd", "t1", "--iterations", "1", stdin="s3cret\n")
    text = OPEN_BROKER.replace("\nroutes:", f"\n  users:\n    {entry.strip()}\nroutes:")
    status, out, err = run_cli("check", "--config", write_config(tmp_path, text))
    assert status == 0, err
    assert "OK" in out


def test_passwd_prints_an_entry_for_broker_users(tmp_path):
    status, out, err = run_cli("passwd", "007", stdin="s3cret\n")
    assert (status, err) == (0, "")
    assert out.startswith("'007': $7$10000$") and out.count("\n") == 1  # quoted: not an int
    assert "s3cret" not in out
    config = load_config(write_config(tmp_path, f"broker:\n  users:\n    {out}"))
    assert PasswordHash.parse(config.broker.users["007"]).verify(b"s3cret")


def test_passwd_refuses_an_empty_password():
    assert run_cli("passwd", "t1", stdin="\n") == (2, "", "error: the password is empty\n")


@pytest.mark.integration  # the embedded amqtt broker
def test_embedded_broker_lets_devices_with_passwords_in_and_the_bridge_too(
    tmp_path, bridge_process
):
    port = free_port()
    _, entry, _ = run_cli("passwd", "t1", "--iterations", "1", stdin="s3cret\n")
    path = write_config(
        tmp_path,
        f"broker:\n  url: embedded\n  listen: 127.0.0.1:{port}\n  allow_anonymous: false\n"
        f"  users:\n    {entry.strip()}\n" + ROUTE_YAML,
    )
    bridge = bridge_process("--config", path)
    bridge.wait_for("bridge ready")  # the bridge's own client got in without a password of ours
    device = PahoClient("127.0.0.1", port)
    device.client.username_pw_set("t1", "s3cret")
    with device:
        device.subscribe("reply/#", qos=1)
        device.publish("sensors/t1/data", b"echo", qos=1)
        assert device.next_message().payload == b"echo"
    stranger = PahoClient("127.0.0.1", port)
    stranger.client.reconnect_delay_set(60, 60)
    with pytest.raises(TimeoutError, match="no CONNACK"):
        stranger.connect(wait=1.0)
    stranger.close()
    bridge.proc.send_signal(signal.SIGTERM)
    assert bridge.proc.wait(15) == 0
    assert "refused MQTT client 127.0.0.1:" in "".join(bridge.lines)


@pytest.fixture
def bridge_process():
    started: list[BridgeProcess] = []

    def start(*args: str) -> BridgeProcess:
        process = BridgeProcess(*args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_inflight_handler_finish_then_exits_0(mosquitto, tmp_path, bridge_process, sig):
    path = write_config(
        tmp_path,
        f"broker:\n  url: {mosquitto.url}\n" + ROUTE_YAML,
    )
    bridge = bridge_process("--config", path)
    bridge.wait_for("bridge ready")
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/#", qos=1)
        device.publish("sensors/s1/data", b"sleep:1.0", qos=1)
        assert device.next_message().payload == b"started"
        bridge.proc.send_signal(sig)
        assert device.next_message().payload == b"finished"
        assert bridge.proc.wait(15) == 0
    log = "".join(bridge.lines)
    assert "shutting down" in log and "bridge stopped" in log
    assert "Traceback" not in log


def test_shutdown_timeout_cancels_a_stuck_handler(mosquitto, tmp_path, bridge_process):
    path = write_config(
        tmp_path,
        f"broker:\n  url: {mosquitto.url}\nlimits:\n  shutdown_timeout: 0.5\n" + ROUTE_YAML,
    )
    bridge = bridge_process("--config", path)
    bridge.wait_for("bridge ready")
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/#", qos=1)
        device.publish("sensors/s1/data", b"sleep:60", qos=1)
        assert device.next_message().payload == b"started"
        started = time.monotonic()
        bridge.proc.send_signal(signal.SIGTERM)
        assert bridge.proc.wait(15) == 0
        assert time.monotonic() - started < 10
    assert "cancelling 1 instances still running" in "".join(bridge.lines)


@pytest.mark.integration  # the embedded amqtt broker
def test_run_with_embedded_broker_routes_messages(tmp_path, bridge_process):
    port = free_port()
    path = write_config(
        tmp_path,
        f"broker:\n  url: embedded\n  listen: 127.0.0.1:{port}\n  protocol: 3.1.1\n" + ROUTE_YAML,
    )
    bridge = bridge_process("--config", path, "--log-format", "json")
    bridge.wait_for("bridge ready")
    with PahoClient("127.0.0.1", port) as device:
        device.subscribe("reply/#", qos=1)
        device.publish("sensors/e1/data", b"echo", qos=1)
        reply = device.next_message()
    assert (reply.topic, reply.payload) == ("reply/e1", b"echo")
    bridge.proc.send_signal(signal.SIGTERM)
    assert bridge.proc.wait(15) == 0
    records = [json.loads(line) for line in bridge.lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["message"].startswith("bridge ready") for r in records)


def test_json_log_lines_about_a_message_carry_its_topic_route_and_consumer(
    mosquitto, tmp_path, bridge_process
):
    path = write_config(
        tmp_path,
        f"broker:\n  url: {mosquitto.url}\nlimits:\n  max_payload_bytes: 100\n"
        "  max_instances: 2\n"
        + ROUTE_YAML
        + "  - topic: count/{device_id}\n    consumer: tests.apps:CountingJson\n",
    )
    bridge = bridge_process("--config", path, "--log-format", "json")
    bridge.wait_for("bridge ready")
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("mqttbridge/dead-letter", qos=1)
        device.publish("sensors/big/data", b"x" * 200, qos=1)  # rejected: too large
        device.publish("sensors/p1/data", b"boom", qos=1)  # the handler raises
        device.publish("count/c1", b"{oops", qos=1)  # not JSON
        for _ in range(3):
            device.next_message()  # its dead-letter record
        # Two more devices: the third instance evicts count/c1 (max_instances: 2).
        device.publish("sensors/e1/data", b"x", qos=1)
        device.publish("sensors/e2/data", b"x", qos=1)
        bridge.wait_for("instance limit 2 reached")
    bridge.proc.send_signal(signal.SIGTERM)
    assert bridge.proc.wait(15) == 0
    records = [json.loads(line) for line in bridge.lines]  # every line is one JSON object
    about = {
        r["topic"] if "topic" in r else r["route_kwargs"]["device_id"]: r
        for r in records
        if "consumer" in r
    }
    recording = {"route": "sensors/{device_id}/data", "consumer": "tests.apps:RecordingConsumer"}
    counting = {"route": "count/{device_id}", "consumer": "tests.apps:CountingJson"}
    assert about["sensors/big/data"] == about["sensors/big/data"] | recording | {
        "level": "WARNING",
        "route_kwargs": {"device_id": "big"},
    }
    assert about["sensors/p1/data"] == about["sensors/p1/data"] | recording | {
        "level": "ERROR",
        "route_kwargs": {"device_id": "p1"},
    }
    assert "RuntimeError: boom requested" in about["sensors/p1/data"]["exception"]
    assert about["count/c1"] == about["count/c1"] | counting | {
        "level": "WARNING",
        "route_kwargs": {"device_id": "c1"},
    }
    assert "exception" not in about["count/c1"]
    assert about["c1"] == about["c1"] | counting | {"level": "WARNING"}  # evicted
    assert about["c1"]["message"].startswith("instance limit 2 reached")


@pytest.mark.integration  # the embedded amqtt broker
def test_demo_shows_data_flowing(tmp_path, bridge_process):
    """The README's front door: config.yaml with --demo logs presence, readings and commands
    obeyed by the simulated fleet."""
    port = free_port()
    env_config = (ROOT / "config.yaml").read_text().replace("127.0.0.1:18830", f"127.0.0.1:{port}")
    path = write_config(tmp_path, env_config)
    bridge = bridge_process("--config", path, "--demo")
    bridge.wait_for("bridge ready")
    bridge.wait_for("is online")
    bridge.wait_for("°C")
    bridge.wait_for("obeyed cmnd/tasmota_000001/POWER")
    bridge.proc.send_signal(signal.SIGINT)
    assert bridge.proc.wait(15) == 0


@pytest.mark.integration  # the embedded amqtt broker
def test_embedded_broker_lets_the_bridge_dead_letter_oversized_payloads(tmp_path, bridge_process):
    port = free_port()
    path = write_config(
        tmp_path,
        f"broker:\n  url: embedded\n  listen: 127.0.0.1:{port}\nlimits:\n  max_payload_bytes: 100\n"
        + ROUTE_YAML,
    )
    bridge = bridge_process("--config", path)
    bridge.wait_for("bridge ready")
    with PahoClient("127.0.0.1", port) as device:
        device.subscribe("mqttbridge/dead-letter", qos=1)
        device.publish("sensors/big/data", b"x" * 500, qos=1)
        record = json.loads(device.next_message().payload)
    assert record["payload_size"] == 500 and record["topic"] == "sensors/big/data"
    bridge.proc.send_signal(signal.SIGTERM)
    assert bridge.proc.wait(15) == 0


def test_broker_and_client_id_flags_override_the_config(mosquitto, bridge_process):
    bridge = bridge_process(
        "--config", str(ROOT / "config.yaml"), "--broker", mosquitto.url, "--client-id", "gw-7"
    )
    bridge.wait_for("bridge ready")
    log = "".join(bridge.lines)
    assert f"connected to 127.0.0.1:{mosquitto.port} as 'gw-7'" in log
    assert "embedded MQTT broker" not in log  # (the checkout's path may say "embedded")
    bridge.proc.send_signal(signal.SIGTERM)
    assert bridge.proc.wait(15) == 0


def test_broker_flag_embedded_over_a_remote_broker_s_file_speaks_3_1_1(tmp_path, bridge_process):
    # Replacing broker.url alone kept the protocol read for the remote broker ("5"), which the
    # embedded broker refuses; the flag now gets the default the file's url would get.
    path = write_config(
        tmp_path,
        f"broker:\n  url: mqtt://127.0.0.1:9\n  listen: 127.0.0.1:{free_port()}\n" + ROUTE_YAML,
    )
    bridge = bridge_process("--config", path, "--broker", "embedded")
    bridge.wait_for("bridge ready")
    bridge.proc.send_signal(signal.SIGTERM)
    assert bridge.proc.wait(15) == 0


def test_second_signal_cancels_instances_at_once(mosquitto, tmp_path, bridge_process):
    path = write_config(
        tmp_path,
        f"broker:\n  url: {mosquitto.url}\nlimits:\n  shutdown_timeout: 60\n" + ROUTE_YAML,
    )
    bridge = bridge_process("--config", path)
    bridge.wait_for("bridge ready")
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/#", qos=1)
        device.publish("sensors/s1/data", b"sleep:60", qos=1)
        assert device.next_message().payload == b"started"
        started = time.monotonic()
        bridge.proc.send_signal(signal.SIGTERM)
        bridge.wait_for("waiting up to 60.0s")
        bridge.proc.send_signal(signal.SIGTERM)
        assert bridge.proc.wait(15) == 0
        assert time.monotonic() - started < 10
    assert "second stop request" in "".join(bridge.lines)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt//user:PASS@host", "'mqtt//user:***@host'"),
        ("mqtt:/user:PASS@host", "'mqtt:***@host'"),
        ("mqtt://user:PA/SS@host", "'mqtt://user:***@host'"),
    ],
)
def test_a_malformed_broker_flag_is_echoed_without_its_password(tmp_path, url, shown):
    path = write_config(tmp_path, ROUTE_YAML)
    status, out, err = run_cli("run", "--config", path, "--broker", url)
    assert status == 2
    assert err.startswith("error: command line: --broker: ") and shown in err
    assert "PA" not in out + err


def test_check_and_run_read_the_flags_as_the_file_s_keys(tmp_path):
    # --broker embedded over a file that opens `listen` to the network: the file's rule holds
    # for the flag too, reported by check and by run alike, before anything starts.
    path = write_config(
        tmp_path, "broker:\n  url: mqtt://127.0.0.1:9\n  listen: 0.0.0.0:18830\n" + ROUTE_YAML
    )
    expected = f"error: {path}:3: broker.listen: 0.0.0.0:18830 is not a loopback address"
    for command in ("check", "run"):
        status, out, err = run_cli(command, "--config", path, "--broker", "embedded")
        assert (status, out) == (2, ""), command
        assert err.startswith(expected), command


def test_a_bad_client_id_flag_is_refused_naming_the_flag(tmp_path):
    path = write_config(tmp_path, ROUTE_YAML)
    status, _, err = run_cli("check", "--config", path, "--client-id", "")
    assert status == 2
    assert err == (
        "error: command line: --client-id: must not be empty; leave it out to have one generated\n"
    )


def test_check_reports_the_broker_a_flag_names(tmp_path):
    path = write_config(tmp_path, "broker:\n  url: mqtt://127.0.0.1:9\n")
    status, out, err = run_cli("check", "--config", path, "--broker", "embedded")
    assert (status, err) == (0, "")
    assert out == f"{path}: OK — broker embedded, 0 routes, channel layer memory://\n"


def test_run_exits_1_with_one_line_when_the_broker_wants_a_client_certificate(
    mosquitto_factory, pki, tmp_path, bridge_process
):
    listener = TlsListener(pki.ca.cert, pki.server.cert, pki.server.key, require_certificate=True)
    broker = mosquitto_factory(tls=listener)
    path = write_config(
        tmp_path,
        f"broker:\n  url: {broker.tls_url}\n  tls:\n    ca_file: {pki.ca.cert}\n" + ROUTE_YAML,
    )
    bridge = bridge_process("--config", path)
    assert bridge.proc.wait(30) == 1
    bridge._reader.join(5)
    errors = [line for line in bridge.lines if " ERROR " in line]
    assert len(errors) == 1, "".join(bridge.lines)
    expected = (
        f"mqttbridge.mqtt.client: broker 127.0.0.1:{broker.tls_port} requires a client certificate "
        "(tlsv13 alert certificate required): set broker.tls.cert_file and broker.tls.key_file "
        "(not retrying)"
    )
    assert errors[0].rstrip().endswith(expected)
    assert "Traceback" not in "".join(bridge.lines)


def test_check_does_not_print_the_redis_password(tmp_path):
    path = write_config(tmp_path, "channel_layer:\n  url: redis://:s3cret@127.0.0.1:6379/0\n")
    status, out, err = run_cli("check", "--config", path)
    assert status == 0, err
    assert "s3cret" not in out and "redis://" in out


def test_check_prints_every_error_on_its_own_line(tmp_path):
    path = write_config(
        tmp_path, "broker:\n  keepalive: abc\nroutes:\n  - topic: /a/{id}\n    consumer: x.y:Z\n"
    )
    status, out, err = run_cli("check", "--config", path)
    assert status == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"error: {path}:") for line in lines)
    assert "broker.keepalive" in lines[0]
    assert "routes[0].topic" in lines[1] and "did you mean 'a/{id}'?" in lines[1]


def test_check_prints_every_consumer_that_cannot_be_imported(tmp_path):
    # Consumers are imported once Django is set up, after the file was read without error.
    routes = "".join(
        f"  - topic: t{i}/{{id}}\n    consumer: tests.apps:Missing{i}\n" for i in range(2)
    )
    path = write_config(tmp_path, "routes:\n" + routes)
    status, _, err = run_cli("check", "--config", path)
    assert status == 2
    assert err.splitlines() == [
        f"error: {path}:3: routes[0].consumer: module 'tests.apps' has no attribute 'Missing0'",
        f"error: {path}:5: routes[1].consumer: module 'tests.apps' has no attribute 'Missing1'",
    ]


def test_check_says_1_route_not_1_routes(tmp_path):
    status, out, err = run_cli("check", "--config", write_config(tmp_path, ROUTE_YAML))
    assert status == 0, err
    assert ", 1 route, " in out


def test_version_names_ours_and_the_libraries_a_bug_report_needs():
    result = subprocess.run(
        [sys.executable, "-m", "mqttbridge", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "40"},
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert "\n" not in line  # one line, whatever the terminal width
    assert line.startswith("mqttbridge 0.1.0 (paho-mqtt 2.")
    for name in ("channels ", "channels-redis ", "redis ", "amqtt ", "Django ", "CPython 3."):
        assert name in line, line
