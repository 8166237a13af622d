"""examples/dashboard run as users run it, from its directory (``python manage.py mqttbridge run
--http ...``, and the standalone ``mqttbridge run --asgi dashboard.asgi:application --http ...``),
against a private Mosquitto, with an independent paho client as the device, a real WebSocket
client (``websockets``) as the page, and plain HTTP: on SQLite, and on PostgreSQL (a fresh
database; a private cluster stopped while readings flow)."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.dashboard_project import (
    TIMEOUT,
    Dashboard,
    any_event,
    eventually,
    next_event,
    reading,
    start_dashboard,
    stop,
)
from tests.services import MosquittoProcess, PostgresProcess, psql

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dashboard(
    shared_mosquitto: MosquittoProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    running = start_dashboard(shared_mosquitto, tmp_path_factory.mktemp("dashboard"))
    try:
        yield running
        stop(running.process)  # SIGTERM: exit 0, no traceback
    finally:
        running.process.stop()


@pytest.fixture(scope="module")
def sqlite_file(dashboard: Dashboard) -> Path:
    return dashboard.process.database


@pytest.fixture
def device_id(request: pytest.FixtureRequest) -> str:
    """A device of its own per test (the broker and the bridge are shared by the module)."""
    return f"t-{request.node.name.removeprefix('test_')[:40]}".replace("_", "-")


def stored(sqlite_file: Path, device_id: str) -> list[tuple[float, float | None]]:
    with sqlite3.connect(sqlite_file) as db:
        return db.execute(
            "SELECT celsius, humidity FROM telemetry_reading r JOIN telemetry_device d "
            "ON r.device_id = d.id WHERE d.device_id = ? ORDER BY r.id",
            (device_id,),
        ).fetchall()


def test_birth_and_readings_are_stored_and_served_as_json(
    dashboard: Dashboard, sqlite_file: Path, device_id: str
) -> None:
    with dashboard.socket() as socket, dashboard.device(device_id) as device:
        device.publish(f"devices/{device_id}/status", "online", qos=1)
        next_event(socket, "status", device_id)
        for seq, celsius in enumerate([21.5, 22.25, 23.41]):
            device.publish(f"sensors/{device_id}/temperature", reading(celsius, seq), qos=1)
        for _ in range(3):
            next_event(socket, "reading", device_id)

    rows = eventually(lambda: stored(sqlite_file, device_id), lambda rows: len(rows) >= 3)
    assert rows == [(21.5, 40.5), (22.25, 40.5), (23.41, 40.5)]
    listed = {entry["device_id"]: entry for entry in dashboard.get("/api/devices/")}
    assert listed[device_id]["online"] is True
    assert listed[device_id]["celsius"] == 23.41
    assert listed[device_id]["last_seen"] is not None
    last_two = dashboard.get(f"/api/devices/{device_id}/readings/?limit=2")
    assert [(r["celsius"], r["fan"], r["device_id"]) for r in last_two] == [
        (22.25, "off", device_id),
        (23.41, "off", device_id),
    ]
    assert last_two[0]["received"] <= last_two[1]["received"]


def test_readings_reach_an_open_websocket(dashboard: Dashboard, device_id: str) -> None:
    with dashboard.socket() as socket, dashboard.device(device_id) as device:
        # A device the page has never seen: its birth adds it, and the socket follows it.
        device.publish(f"devices/{device_id}/status", "online", qos=1)
        status = next_event(socket, "status", device_id)
        assert (status["online"], status["last_seen"] is not None) == (True, True)
        device.publish(f"sensors/{device_id}/temperature", reading(24.5, 1), qos=1)
        event = next_event(socket, "reading", device_id)
    assert {key: event[key] for key in ("celsius", "humidity", "battery", "fan", "ts")} == {
        "celsius": 24.5,
        "humidity": 40.5,
        "battery": 99.0,
        "fan": "off",
        "ts": 1,
    }
    assert isinstance(event["received"], int)


def test_an_open_page_gets_a_new_devices_first_readings(
    dashboard: Dashboard, device_id: str
) -> None:
    with dashboard.socket() as socket, dashboard.device(device_id) as device:
        # No birth message: the page hears of the device through its readings, from the first.
        for seq, celsius in enumerate([10.0, 11.0, 12.0]):
            device.publish(f"sensors/{device_id}/temperature", reading(celsius, seq), qos=1)
        shown = [next_event(socket, "reading", device_id)["celsius"] for _ in range(3)]
        # ... and it follows the device from then on: a command sent to it reaches the page.
        status, body = dashboard.post(f"/api/devices/{device_id}/command/", {"fan": "on"})
        assert status == 202
        assert next_event(socket, "command", device_id)["ref"] == body["ref"]
    assert shown == [10.0, 11.0, 12.0]


def test_the_command_view_reaches_the_device_and_its_ack_reaches_the_socket(
    dashboard: Dashboard, device_id: str
) -> None:
    with dashboard.socket() as socket, dashboard.device(device_id) as device:
        device.subscribe(f"devices/{device_id}/commands", qos=1)
        device.publish(f"devices/{device_id}/status", "online", qos=1)
        next_event(socket, "status", device_id)
        # The first reading makes the device's MQTT instance, which listens on its group.
        device.publish(f"sensors/{device_id}/temperature", reading(26.0, 1), qos=1)
        next_event(socket, "reading", device_id)
        status, body = dashboard.post(f"/api/devices/{device_id}/command/", {"fan": "on"})
        assert status == 202
        ref = body["ref"]
        command = device.next_message(timeout=TIMEOUT)
        assert command.topic == f"devices/{device_id}/commands"
        assert json.loads(command.payload) == {"fan": "on", "ref": ref}
        assert next_event(socket, "command", device_id)["ref"] == ref

        device.publish(f"devices/{device_id}/ack", json.dumps({"fan": "on", "ref": ref}), 1)
        ack = next_event(socket, "ack", device_id)
    assert ack == {"type": "ack", "device_id": device_id, "fan": "on", "ref": ref}


def test_a_reading_without_celsius_is_dead_lettered_and_the_next_one_shown(
    dashboard: Dashboard, device_id: str
) -> None:
    topic = f"sensors/{device_id}/temperature"
    with (
        dashboard.socket() as socket,
        dashboard.device(device_id) as device,
        dashboard.device(f"{device_id}-watch") as watcher,
    ):
        watcher.subscribe("mqttbridge/dead-letter", qos=1)
        device.publish(f"devices/{device_id}/status", "online", qos=1)
        next_event(socket, "status", device_id)
        device.publish(topic, json.dumps({"humidity": 40.0}), qos=1)
        device.publish(topic, reading(19.5, 2), qos=1)
        assert next_event(socket, "reading", device_id)["celsius"] == 19.5
        record = json.loads(watcher.next_message(timeout=TIMEOUT).payload)
        while record["topic"] != topic:  # another test's, on the shared broker
            record = json.loads(watcher.next_message(timeout=TIMEOUT).payload)
    assert (record["topic"], record["error"]) == (
        topic,
        "expected a JSON object with a numeric celsius",
    )
    shown = eventually(lambda: dashboard.get(f"/api/devices/{device_id}/readings/"), bool)
    assert [r["celsius"] for r in shown] == [19.5]


def test_the_last_will_marks_the_device_offline(dashboard: Dashboard, device_id: str) -> None:
    with dashboard.socket() as socket, dashboard.device(device_id, will=True) as device:
        device.publish(f"devices/{device_id}/status", "online", qos=1)
        assert next_event(socket, "status", device_id)["online"] is True
        # Killed, not disconnected: the broker publishes the will.
        device.client.loop_stop()
        sock = device.client.socket()
        assert sock is not None
        sock.close()
        assert next_event(socket, "status", device_id)["online"] is False
    listed = {entry["device_id"]: entry for entry in dashboard.get("/api/devices/")}
    assert listed[device_id]["online"] is False


def test_the_page_static_files_and_admin_are_served(dashboard: Dashboard) -> None:
    with urllib.request.urlopen(dashboard.url + "/", timeout=TIMEOUT) as response:
        page = response.read().decode()
    assert 'data-ws="connecting"' in page and 'id="device-template"' in page
    assert dashboard.status_of("/static/telemetry/dashboard.js") == 200
    assert dashboard.status_of("/static/admin/css/base.css") == 200  # whitenoise, in-process
    assert dashboard.status_of("/admin/login/") == 200


def test_bad_requests_are_refused_with_a_reason(dashboard: Dashboard) -> None:
    command = "/api/devices/nobody/command/"

    def refused(path: str, body: Any, content_type: str = "application/json") -> tuple[int, str]:
        with pytest.raises(urllib.error.HTTPError) as error:
            dashboard.post(path, body, content_type)
        return error.value.code, json.load(error.value)["error"]

    assert refused(command, {"fan": "up"}) == (400, 'fan: expected "on" or "off"')
    assert refused(command, {"fan": "on"}, "text/plain") == (
        415,
        "expected Content-Type: application/json",
    )
    assert refused(command, {"fan": "on"}) == (404, "no device 'nobody'")
    assert dashboard.status_of("/api/devices/nobody/readings/?limit=0") == 400
    with pytest.raises(urllib.error.HTTPError) as unknown:
        dashboard.get("/api/devices/nobody/readings/")
    assert (unknown.value.code, json.load(unknown.value)) == (404, {"error": "no device 'nobody'"})
    assert dashboard.status_of(command) == 405  # GET


def test_a_websocket_from_another_site_is_refused(dashboard: Dashboard) -> None:
    url = dashboard.url.replace("http", "ws", 1) + "/ws/dashboard/"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin="http://evil.example", open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 403


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{postgres_database}"


def test_readings_are_stored_in_postgresql_by_the_standalone_command(
    mosquitto: MosquittoProcess, postgres_url: str, postgres_database: str, tmp_path: Path
) -> None:
    dashboard = start_dashboard(mosquitto, tmp_path, database_url=postgres_url, standalone=True)
    try:
        with dashboard.socket() as socket, dashboard.device("pg-1") as device:
            device.publish("devices/pg-1/status", "online", qos=1)
            next_event(socket, "status", "pg-1")
            # Published without waiting for each PUBACK: the batch writer gets them together.
            for seq in range(200):
                device.client.publish("sensors/pg-1/temperature", reading(20 + seq / 100, seq), 1)
            for _ in range(200):
                next_event(socket, "reading", "pg-1")
        count = "SELECT count(*), count(DISTINCT (payload->>'seq')) FROM telemetry_reading"
        counts = eventually(
            lambda: psql(count, dbname=postgres_database), lambda c: c.startswith("200|")
        )
        assert counts.split("|") == ["200", "200"]
        online = "SELECT online FROM telemetry_device WHERE device_id = 'pg-1'"
        assert psql(online, dbname=postgres_database) == "t"
        last = dashboard.get("/api/devices/pg-1/readings/?limit=3")
        assert [r["celsius"] for r in last] == [21.97, 21.98, 21.99]
        stop(dashboard.process)
    finally:
        dashboard.process.stop()


def test_postgresql_down_while_readings_flow_loses_no_acknowledged_reading(
    mosquitto: MosquittoProcess, postgres_cluster: PostgresProcess, tmp_path: Path
) -> None:
    dashboard = start_dashboard(mosquitto, tmp_path, database_url=postgres_cluster.url)

    def readings_of(socket: ClientConnection, device_id: str, count: int) -> None:
        for _ in range(count):
            next_event(socket, "reading", device_id)

    try:
        with (
            dashboard.socket() as socket,
            dashboard.device("pg-known") as known,
            dashboard.device("pg-new") as new,
        ):
            known.publish("devices/pg-known/status", "online", qos=1)
            next_event(socket, "status", "pg-known")
            for seq in range(20):
                known.publish("sensors/pg-known/temperature", reading(20.0, seq), qos=1)
            readings_of(socket, "pg-known", 20)
            postgres_cluster.stop()
            # The broker acknowledges these to the devices; the bridge holds them unacknowledged
            # until they are stored. pg-new was never seen: its device row waits too.
            for seq in range(20, 40):
                known.publish("sensors/pg-known/temperature", reading(21.0, seq), qos=1)
            new.publish("devices/pg-new/status", "online", qos=1)
            new.publish("sensors/pg-new/temperature", reading(22.0, 0), qos=1)
            dashboard.process.wait_for("unavailable (OperationalError")
            postgres_cluster.start()
            # pg-known's 20 readings (shown live, stored once the database is back), pg-new's
            # birth and its first reading (once its device row is stored), in any order.
            known_left, new_online, new_reading = 20, False, False
            while known_left or not new_online or not new_reading:
                event = any_event(socket)
                if event["type"] == "reading":
                    known_left -= event["device_id"] == "pg-known"
                    new_reading |= event["device_id"] == "pg-new"
                elif event["type"] == "status" and event["device_id"] == "pg-new":
                    new_online = event["online"]
        known_seqs = (
            "SELECT payload->>'seq' FROM telemetry_reading r JOIN telemetry_device d "
            "ON r.device_id = d.id WHERE d.device_id = 'pg-known'"
        )
        seqs = eventually(
            lambda: postgres_cluster.psql(known_seqs).split(), lambda seqs: len(seqs) >= 40
        )
        assert sorted(map(int, seqs)) == list(range(40))  # all of them, each once
        new_rows = eventually(lambda: dashboard.get("/api/devices/pg-new/readings/"), bool)
        assert [r["celsius"] for r in new_rows] == [22.0]
        assert dashboard.process.proc is not None and dashboard.process.proc.poll() is None
        stop(dashboard.process)  # up all along; SIGTERM: exit 0, no traceback
    finally:
        dashboard.process.stop()
    assert "dead-letter" not in dashboard.process.log().lower(), dashboard.process.log()
