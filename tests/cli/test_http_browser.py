"""``mqttbridge run --http`` seen from a real browser: headless Chromium loads a page from the
bridge process and its WebSocket receives what a device publishes over MQTT (the project of
``tests.django_project``, a private Mosquitto, a paho client as the device)."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.cli.test_http import bridge, project  # noqa: F401  (fixtures)
from tests.django_project import ProjectProcess
from tests.services import MosquittoProcess, PahoClient

# What a dashboard page does, in a few lines: open the WebSocket, list what arrives.
LISTEN = """url => {
    const list = document.createElement("ul");
    document.body.append(list);
    const socket = new WebSocket(url);
    socket.onopen = () => { document.body.dataset.ws = "open"; };
    socket.onmessage = event => {
        const message = JSON.parse(event.data);
        if (!message.device) return;
        const item = document.createElement("li");
        item.textContent = `${message.device} ${message.text}`;
        list.append(item);
    };
}"""


def test_a_device_publish_reaches_a_page_in_chromium(
    mosquitto: MosquittoProcess,
    bridge: Callable[..., tuple[ProjectProcess, int]],  # noqa: F811
    page: Page,
) -> None:
    _, port = bridge()
    page.goto(f"http://127.0.0.1:{port}/hello/")
    expect(page.locator("body")).to_have_text("hello")

    page.evaluate(LISTEN, f"ws://127.0.0.1:{port}/ws/live/")
    expect(page.locator("body")).to_have_attribute("data-ws", "open")
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.publish("sensors/d7/live", b"21.5", qos=1)
        device.publish("sensors/d8/live", b"19.0", qos=1)
    expect(page.locator("li")).to_have_text(["d7 21.5", "d8 19.0"])
