"""examples/dashboard as a process (``harness.dashboard.DashboardProcess``, the one helper that
starts it, shared with the browser tests and the benchmarks), with the clients the tests drive
it with: HTTP, a WebSocket client (the page's feed), and independent MQTT clients as devices.

    dashboard = start_dashboard(mosquitto, tmp_path)
    with dashboard.socket() as socket, dashboard.device("t1") as device:
        device.publish("devices/t1/status", "online", qos=1)
        next_event(socket, "status", "t1")   # the page now follows t1
    stop(dashboard.process)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from websockets.sync.client import ClientConnection, connect

from harness.dashboard import DashboardProcess
from tests.services import MosquittoProcess, PahoClient

__all__ = [
    "TIMEOUT",
    "Dashboard",
    "any_event",
    "eventually",
    "next_event",
    "reading",
    "start_dashboard",
    "stop",
]

TIMEOUT = 20.0
T = TypeVar("T")


@dataclass
class Dashboard:
    process: DashboardProcess
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
    broker: MosquittoProcess,
    workdir: Path,
    *,
    database_url: str | None = None,
    standalone: bool = False,
) -> Dashboard:
    """``manage.py mqttbridge run --http`` (or the standalone command) in examples/dashboard,
    migrated first; SQLite in ``workdir`` unless ``database_url``."""
    process = DashboardProcess(
        workdir, broker.url, database_url=database_url, standalone=standalone
    )
    process.start()
    return Dashboard(process, process.url.rstrip("/"), broker)


def stop(process: DashboardProcess) -> None:
    """SIGTERM; the process must exit 0 with no traceback."""
    assert process.stop(20) == 0, process.log_tail()
    assert "Traceback" not in process.log(), process.log()


def reading(celsius: float, seq: int) -> str:
    return json.dumps(
        {"celsius": celsius, "humidity": 40.5, "battery": 99.0, "fan": "off", "seq": seq, "ts": 1}
    )


# Events received but not yet asked for: a batch of readings is one WebSocket message.
_unread: weakref.WeakKeyDictionary[ClientConnection, deque[dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def any_event(socket: ClientConnection) -> dict[str, Any]:
    """The socket's next event; each reading of a batch (``{"type": "readings", "readings":
    [...]}``) as one ``{"type": "reading", ...}``. AssertionError after ``TIMEOUT`` s of
    silence."""
    unread = _unread.setdefault(socket, deque())
    while not unread:
        try:
            event = json.loads(socket.recv(timeout=TIMEOUT))
        except TimeoutError:
            raise AssertionError(f"no event in {TIMEOUT:g} s") from None
        if event["type"] == "readings":
            unread.extend({"type": "reading", **one} for one in event["readings"])
        else:
            unread.append(event)
    return unread.popleft()


def next_event(socket: ClientConnection, kind: str, device_id: str) -> dict[str, Any]:
    """The next event of ``kind`` about ``device_id`` (other tests' devices also talk)."""
    seen = []
    while True:
        try:
            event = any_event(socket)
        except AssertionError:
            raise AssertionError(f"no {kind} event for {device_id}; got {seen}") from None
        if event["type"] == kind and event["device_id"] == device_id:
            return event
        seen.append(event)


def eventually(read: Callable[[], T], done: Callable[[T], bool]) -> T:
    """``read()`` again until ``done`` says yes (at most ``TIMEOUT`` s), and its value. The page
    hears of a reading before the reading is committed (the page is a live view; the MQTT
    acknowledgement is what waits for the commit), so what is stored is checked this way."""
    deadline = time.monotonic() + TIMEOUT
    value = read()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {TIMEOUT:g} s")
        time.sleep(0.05)
        value = read()
    return value
