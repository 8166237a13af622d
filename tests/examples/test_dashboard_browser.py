"""The dashboard example (examples/dashboard) in a real browser: headless Chromium on the page
served by ``python manage.py mqttbridge run --http`` (started as its README says, see
``harness.dashboard``), with independent MQTT clients as the devices on a private Mosquitto.
What the tests rely on in the page is the dashboard's contract: one ``[data-device]`` per
device with ``.status``, ``.celsius``, ``svg.chart polyline``, ``button.command[data-fan]`` and
``.ack[data-ref]``; ``body[data-ws="open"]``.

Every wait is Playwright's (``expect`` retries until its timeout): no sleeps.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from harness.browser import LATENCY_PROBE
from harness.dashboard import DashboardProcess, SimulatedDevices
from tests.services import MosquittoProcess, PahoClient

_ids = itertools.count()


@pytest.fixture(scope="module")
def dashboard(
    shared_mosquitto: MosquittoProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardProcess]:
    """One dashboard for the module: each test uses devices of its own."""
    process = DashboardProcess(tmp_path_factory.mktemp("dashboard"), shared_mosquitto.url)
    process.start()
    try:
        yield process
    finally:
        code = process.stop()
    # Whatever the pages and devices did, the bridge drained and logged no exception.
    assert code == 0, process.log_tail()
    assert "Traceback" not in process.log(), process.log()


@pytest.fixture
def device_id(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name.removeprefix('test_')[:24]}-{next(_ids)}".replace("_", "-")


@pytest.fixture
def opened(page: Page, dashboard: DashboardProcess) -> Page:
    """The page, loaded and live (its WebSocket joined the groups)."""
    response = page.goto(dashboard.url)
    assert response is not None and response.ok, response
    expect(page.locator("body")).to_have_attribute("data-ws", "open")
    return page


def reading(celsius: float, **fields: object) -> str:
    now = int(time.time() * 1000)
    return json.dumps(
        {
            "celsius": celsius,
            "humidity": 40.0,
            "battery": 99.0,
            "fan": "off",
            "seq": 0,
            "ts": now,
            **fields,
        }
    )


def row(page: Page, device_id: str) -> Locator:
    return page.locator(f'[data-device="{device_id}"]')


def chart_points(page: Page, device_id: str, at_least: int) -> None:
    """Wait until the device's chart has drawn ``at_least`` points."""
    page.wait_for_function(
        """([id, n]) => {
            const line = document.querySelector(`[data-device="${id}"] svg.chart polyline`);
            const points = (line?.getAttribute("points") || "").trim();
            return points !== "" && points.split(/\\s+/).length >= n;
        }""",
        arg=[device_id, at_least],
    )


def test_the_page_loads_and_goes_live(opened: Page) -> None:
    expect(opened).to_have_title("Devices · mqttbridge dashboard")
    # The page's own script and style came from the same process (whitenoise), no CDN.
    expect(opened.locator("body")).to_have_attribute("data-ws", "open")
    assert opened.evaluate("document.styleSheets.length") >= 1


def test_a_new_device_and_its_readings_appear_without_reload(
    opened: Page, shared_mosquitto: MosquittoProcess, device_id: str
) -> None:
    with PahoClient(shared_mosquitto.host, shared_mosquitto.port) as device:
        device.publish(f"devices/{device_id}/status", "online", qos=1)
        device_row = row(opened, device_id)
        expect(device_row.locator(".status")).to_have_text("online")
        expect(device_row.locator(".status")).to_have_attribute("data-online", "true")

        device.publish(f"sensors/{device_id}/temperature", reading(21.25), qos=1)
        expect(device_row.locator(".celsius")).to_have_text("21.25")
        chart_points(opened, device_id, 1)
        for celsius in (21.5, 22.75):
            device.publish(f"sensors/{device_id}/temperature", reading(celsius), qos=1)
        expect(device_row.locator(".celsius")).to_have_text("22.75")
        chart_points(opened, device_id, 3)
        expect(device_row.locator(".last-seen")).not_to_have_text("never")
    # Nothing was reloaded: the one page load of the fixture saw it all come in.
    assert opened.evaluate("performance.getEntriesByType('navigation').length") == 1


def test_the_fan_button_reaches_the_device_and_its_ack_shows(
    opened: Page, shared_mosquitto: MosquittoProcess, device_id: str
) -> None:
    with (
        PahoClient(shared_mosquitto.host, shared_mosquitto.port) as device,
        PahoClient(shared_mosquitto.host, shared_mosquitto.port) as listener,
    ):
        listener.subscribe(f"devices/{device_id}/commands", qos=1)
        device.publish(f"devices/{device_id}/status", "online", qos=1)
        # The reading brings up the device's MQTT instance, which carries commands to it.
        device.publish(f"sensors/{device_id}/temperature", reading(24.0), qos=1)
        device_row = row(opened, device_id)
        expect(device_row.locator(".celsius")).to_have_text("24.00")

        device_row.locator('button.command[data-fan="on"]').click()
        command = json.loads(listener.next_message(timeout=30).payload)
        assert command["fan"] == "on"
        assert isinstance(command["ref"], str) and command["ref"]

        device.publish(
            f"devices/{device_id}/ack", json.dumps({"fan": "on", "ref": command["ref"]}), qos=1
        )
        ack = device_row.locator(".ack")
        expect(ack).to_have_attribute("data-ref", command["ref"])
        expect(ack).to_contain_text("fan on")


def test_a_device_killed_shows_offline(
    opened: Page, shared_mosquitto: MosquittoProcess, device_id: str, tmp_path: Path
) -> None:
    # A simulated device (the generic profile: birth "online", last will "offline"), then
    # SIGKILL: no DISCONNECT, so the broker publishes its will.
    with SimulatedDevices(tmp_path, shared_mosquitto.url, prefix=device_id, rate=2) as fleet:
        device_row = row(opened, fleet.ids[0])
        expect(device_row.locator(".status")).to_have_text("online")
        chart_points(opened, fleet.ids[0], 1)
        fleet.kill()
        expect(device_row.locator(".status")).to_have_text("offline")
        expect(device_row.locator(".status")).to_have_attribute("data-online", "false")


def test_the_latency_probe_times_each_reading_the_page_shows(
    page: Page, dashboard: DashboardProcess, shared_mosquitto: MosquittoProcess, device_id: str
) -> None:
    """What ``python -m bench.browser`` measures: one sample per reading, stamped by the device
    (``ts``), by the bridge (``received``) and when the page showed it, in that order."""
    page.add_init_script(LATENCY_PROBE)
    page.goto(dashboard.url)
    expect(page.locator("body")).to_have_attribute("data-ws", "open")
    with PahoClient(shared_mosquitto.host, shared_mosquitto.port) as device:
        device.publish(f"devices/{device_id}/status", "online", qos=1)
        expect(row(page, device_id).locator(".status")).to_have_text("online")
        sent = []
        for celsius in (20.5, 21.5, 22.5):
            payload = reading(celsius)
            sent.append(json.loads(payload)["ts"])
            device.publish(f"sensors/{device_id}/temperature", payload, qos=1)
            expect(row(page, device_id).locator(".celsius")).to_have_text(f"{celsius:.2f}")
    samples = page.evaluate("__latency.samples")
    assert [sample[0] for sample in samples] == sent
    for ts, received, arrived, shown in samples:
        # Whole milliseconds from the device and the bridge; the page's clock is finer.
        assert ts <= received + 1 and received <= arrived + 1 and arrived <= shown


def test_a_new_devices_first_reading_reaches_the_page_live(
    page: Page, dashboard: DashboardProcess, shared_mosquitto: MosquittoProcess, device_id: str
) -> None:
    """No birth message, one reading: the page makes the card and shows the reading from its
    socket (the probe saw it arrive), not only from the card's history fetched afterwards."""
    page.add_init_script(LATENCY_PROBE)
    page.goto(dashboard.url)
    expect(page.locator("body")).to_have_attribute("data-ws", "open")
    with PahoClient(shared_mosquitto.host, shared_mosquitto.port) as device:
        payload = reading(18.75)
        device.publish(f"sensors/{device_id}/temperature", payload, qos=1)
        expect(row(page, device_id).locator(".celsius")).to_have_text("18.75")
    expect(row(page, device_id).locator(".status")).to_have_text("offline")  # no birth yet
    arrived = page.evaluate(
        "id => [...__latency.samples.map(s => s[0]), ...(__latency.pending.get(id) || [])"
        ".map(p => p[0])]",
        device_id,
    )
    assert arrived == [json.loads(payload)["ts"]]
