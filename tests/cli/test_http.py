"""``mqttbridge run --asgi ... --http HOST:PORT``: the project's HTTP, WebSocket and MQTT served
by ONE process, tried with a real HTTP GET, a real WebSocket client (``websockets``) and a real
paho client against the Django project of ``tests.django_project`` and a private Mosquitto."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.django_project import ProjectProcess, make_project, mqttbridge
from tests.services import MosquittoProcess, PahoClient, free_port

ASGI = "myproject.asgi:application"
SHUTDOWN_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("django-http"))


@pytest.fixture
def bridge(
    project: Path, mosquitto: MosquittoProcess
) -> Iterator[Callable[..., tuple[ProjectProcess, int]]]:
    started: list[ProjectProcess] = []

    def start(*, yaml: bool = False) -> tuple[ProjectProcess, int]:
        port = free_port()
        listen = f"127.0.0.1:{port}"
        (project / "config.yaml").write_text(
            f"broker:\n  url: {mosquitto.url}\n"
            f"limits:\n  shutdown_timeout: {SHUTDOWN_TIMEOUT}\n"
            + (f"http:\n  listen: {listen}\n" if yaml else "")
        )
        flag = () if yaml else ("--http", listen)
        process = ProjectProcess(project, "run", "--asgi", ASGI, *flag)
        started.append(process)
        process.wait_for("bridge ready")
        process.wait_for("serving HTTP and WebSocket on")
        return process, port

    yield start
    for process in started:
        process.close()


def receive_json(websocket: ClientConnection) -> Any:
    return json.loads(websocket.recv(timeout=20))


@pytest.mark.parametrize("yaml", [False, True], ids=["--http", "http.listen"])
def test_http_websocket_and_mqtt_in_one_process_drain_on_sigterm(
    mosquitto: MosquittoProcess, bridge: Callable[..., tuple[ProjectProcess, int]], yaml: bool
) -> None:
    process, port = bridge(yaml=yaml)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/", timeout=20) as response:
        assert (response.status, response.read()) == (200, b"hello")
    with (
        connect(f"ws://127.0.0.1:{port}/ws/live/", open_timeout=20) as websocket,
        PahoClient(mosquitto.host, mosquitto.port) as device,
    ):
        assert receive_json(websocket) == {"joined": "live"}
        device.subscribe("devices/d1/ack", qos=1)
        # An MQTT consumer's group_send reaches the WebSocket: one in-memory layer, no Redis.
        device.publish("sensors/d1/live", b"21.5", qos=1)
        assert receive_json(websocket) == {"device": "d1", "text": "21.5"}

        # SIGTERM with the WebSocket open and an MQTT handler in flight: the handler finishes
        # (its acknowledgement arrives), the WebSocket is closed as "going away" by restart.
        device.publish("sensors/d1/live", b"slow:1", qos=1)
        assert receive_json(websocket) == {"device": "d1", "text": "slow:1"}
        process.proc.send_signal(signal.SIGTERM)
        assert device.next_message(timeout=20).payload == b"done"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                websocket.recv(timeout=20)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        # A hang guard, not a timing threshold: well past the shutdown timeout.
        assert process.proc.wait(SHUTDOWN_TIMEOUT + 20) == 0
    assert "Traceback" not in process.output
    assert "bridge stopped" in process.output


def test_a_port_in_use_is_one_line_and_exit_1(
    project: Path, bridge: Callable[..., tuple[ProjectProcess, int]]
) -> None:
    _, port = bridge()
    result = mqttbridge(project, "run", "--asgi", ASGI, "--http", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: http.listen 127.0.0.1:{port}: cannot listen: Address already in use; "
        "pick a free port with --http HOST:PORT"
    )
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("--asgi", ASGI, "--http", "8000"),
            "command line: --http: expected host:port, got '8000'",
        ),
        (
            ("--asgi", ASGI, "--http", "127.0.0.1:70000"),
            "command line: --http: port must be between 0 and 65535, got 70000",
        ),
        (
            ("--http", "127.0.0.1:8000"),
            "--http: needs an application to serve; give --asgi <project>.asgi:application",
        ),
    ],
    ids=["no-port", "port-too-large", "no-asgi"],
)
def test_bad_http_flag_is_one_line_exit_2_in_run_and_check(
    project: Path, command: str, args: tuple[str, ...], error: str
) -> None:
    (project / "config.yaml").write_text("")
    result = mqttbridge(project, command, *args)
    assert (result.returncode, result.stderr) == (2, f"error: {error}\n")


def test_check_reports_a_bad_http_section_with_its_line(project: Path) -> None:
    (project / "config.yaml").write_text(
        "http:\n  listen: 127.0.0.1:8000\n  key_file: missing.pem\n  proxy_headers: maybe\n"
    )
    result = mqttbridge(project, "check", "--asgi", ASGI)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: config.yaml:3: http.key_file: needs http.cert_file",
        "error: config.yaml:4: http.proxy_headers: expected true or false, got 'maybe'",
    ]
