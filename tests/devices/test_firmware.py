"""The MicroPython firmware example, run on CPython against a real Mosquitto.

``tests/devices/micropython/`` stands in for the board's modules; ``umqtt.simple`` there speaks
real MQTT over a socket, so what the broker sees is what the firmware asked for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.services import MosquittoProcess
from tests.services.mqtt_client import PahoClient

ROOT = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).parent / "micropython"
FIRMWARE = ROOT / "devices" / "firmware"
DEVICE = "esp32-a1b2c3d4e5f6"


def _start_board(broker: MosquittoProcess) -> subprocess.Popen[bytes]:
    code = (
        f"import sys; sys.path[:0] = [{str(SHIM)!r}, {str(FIRMWARE)!r}]\n"
        "import main\nmain.INTERVAL_MS = 200\n"
        f"main.main({broker.host!r}, {broker.port})\n"
    )
    env = {**os.environ, "BOARD_ID": "a1b2c3d4e5f6"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stderr=subprocess.PIPE)


def test_the_firmware_reports_obeys_acknowledges_and_leaves_its_will(
    mosquitto: MosquittoProcess,
) -> None:
    with PahoClient(mosquitto.host, mosquitto.port) as client:
        client.subscribe(f"devices/{DEVICE}/#", qos=1)
        client.subscribe(f"sensors/{DEVICE}/temperature", qos=1)
        board = _start_board(mosquitto)
        try:
            first = client.next_message(10)
            assert (first.topic, first.payload) == (f"devices/{DEVICE}/status", b"online")
            reading = json.loads(client.next_message(5).payload)
            assert reading["fan"] == "off" and reading["celsius"] == 41.5
            client.publish(f"devices/{DEVICE}/commands", json.dumps({"fan": "on", "ref": "7"}), 1)
            topics: dict[str, bytes] = {}
            while f"devices/{DEVICE}/ack" not in topics:
                message = client.next_message(5)
                topics[message.topic] = message.payload
            assert json.loads(topics[f"devices/{DEVICE}/ack"]) == {"fan": "on", "ref": "7"}
            later = client.next_message(5)
            while later.topic != f"sensors/{DEVICE}/temperature":
                later = client.next_message(5)
            assert json.loads(later.payload)["fan"] == "on"
            os.kill(board.pid, signal.SIGKILL)
            board.wait()
            will = client.next_message(10)
            while will.topic != f"devices/{DEVICE}/status":
                will = client.next_message(10)
            assert will.payload == b"offline"
        finally:
            board.kill()
            board.wait()
