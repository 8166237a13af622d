"""examples/dashboard as a process, for tests that drive it from outside: an HTTP client, a
WebSocket client (the page's feed), and independent MQTT clients as its devices.

    dashboard = start_dashboard(mosquitto, f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with dashboard.socket() as socket, dashboard.device("t1") as device:
        device.publish("devices/t1/status", "online", qos=1)
        next_event(socket, "status", "t1")   # the page now follows t1
    stop(dashboard.process)

The project runs from its directory as users run it (``python manage.py mqttbridge run --http``,
or the standalone ``mqttbridge run --asgi``), migrated first, against the given broker
(``DASHBOARD_BROKER``) and database (``DATABASE_URL``), with HTTP on a free port.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.django_project import MANAGE, ProjectProcess, clean_env
from tests.services import MosquittoProcess, PahoClient, free_port

__all__ = [
    "PROJECT",
    "TIMEOUT",
    "Dashboard",
    "next_event",
    "reading",
    "start_dashboard",
]

PROJECT = Path(__file__).resolve().parents[1] / "examples" / "dashboard"
ASGI = "dashboard.asgi:application"
TIMEOUT = 20.0


@dataclass
class Dashboard:
    process: ProjectProcess
    url: str  # http://127.0.0.1:<port>
    broker: MosquittoProcess

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=TIMEOUT) as response:
            return json.load(response)

    def post(self, path: str, body: Any, content_type: str = "application/json") -> Any:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.load(response)

    def status_of(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=TIMEOUT) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    def socket(self) -> ClientConnection:
        return connect(
            self.url.replace("http", "ws", 1) + "/ws/dashboard/",
            origin=self.url,  # the socket checks Origin against ALLOWED_HOSTS, as a browser's
            open_timeout=TIMEOUT,
        )

    def device(self, device_id: str, *, will: bool = False) -> PahoClient:
        """A device on the broker, not yet connected: ``with dashboard.device("t1") as t1:``.
        With ``will``, its last will is the generic profile's: ``offline``, retained."""
        device = PahoClient(self.broker.host, self.broker.port, client_id=device_id)
        if will:
            device.client.will_set(f"devices/{device_id}/status", "offline", qos=1, retain=True)
        return device


def start_dashboard(
    broker: MosquittoProcess, database_url: str, *, standalone: bool = False
) -> Dashboard:
    """``manage.py mqttbridge run --http`` (or the standalone command) in examples/dashboard."""
    env = clean_env(DATABASE_URL=database_url, DASHBOARD_BROKER=broker.url)
    subprocess.run(
        [*MANAGE, "migrate", "--no-input", "-v", "0"], cwd=PROJECT, env=env, check=True, timeout=120
    )
    listen = f"127.0.0.1:{free_port()}"
    if standalone:
        process = ProjectProcess(PROJECT, "run", "--asgi", ASGI, "--http", listen, env=env)
    else:
        process = ProjectProcess(
            PROJECT, "mqttbridge", "run", "--http", listen, env=env, launcher=MANAGE
        )
    process.wait_for("bridge ready")
    process.wait_for("serving HTTP and WebSocket on")
    return Dashboard(process, f"http://{listen}", broker)


def reading(celsius: float, seq: int) -> str:
    return json.dumps(
        {"celsius": celsius, "humidity": 40.5, "battery": 99.0, "fan": "off", "seq": seq, "ts": 1}
    )


def next_event(socket: ClientConnection, kind: str, device_id: str) -> dict[str, Any]:
    """The next event of ``kind`` about ``device_id`` (other tests' devices also talk)."""
    seen = []
    while True:
        try:
            event = json.loads(socket.recv(timeout=TIMEOUT))
        except TimeoutError:
            raise AssertionError(f"no {kind} event for {device_id}; got {seen}") from None
        if event["type"] == kind and event["device_id"] == device_id:
            return event  # type: ignore[no-any-return]
        seen.append(event)
