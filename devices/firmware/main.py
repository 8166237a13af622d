"""MicroPython firmware for an ESP32 that speaks the simulator's generic profile.

Copy to the board as ``main.py`` (``mpremote cp main.py :main.py``) after setting WIFI_* and
BROKER below; it needs ``umqtt.simple`` (``mpremote mip install umqtt.simple``). The board:

* is ``esp32-<unique id>``; announces ``devices/<id>/status`` "online" (retained) and leaves
  "offline" as its last will, so the broker says so when the board loses power;
* publishes ``sensors/<id>/temperature`` {"celsius", "fan", "seq"} every INTERVAL_MS, from the
  chip's own sensor (``esp32.mcu_temperature``; wire a DS18B20 for room temperature);
* obeys ``devices/<id>/commands`` {"fan": "on"|"off"} on FAN_PIN and acknowledges on
  ``devices/<id>/ack`` (echoing a ``ref``, so ``mqttbridge simulate --round-trip`` timings
  compare with real hardware);
* reconnects, Wi-Fi first, whenever the connection fails.

``tests/devices/test_firmware.py`` runs this file on CPython against a real Mosquitto, with
small stand-ins for ``machine``, ``network``, ``esp32``, ``utime`` and ``umqtt.simple``.
"""

import json

import esp32
import machine
import network
import ubinascii
import utime
from umqtt.simple import MQTTClient

WIFI_SSID = "my-network"
WIFI_PASSWORD = "my-password"
BROKER = "192.168.1.10"
PORT = 1883
INTERVAL_MS = 5000
FAN_PIN = 2  # the on-board LED of most ESP32 dev boards: the "fan" is visible

DEVICE_ID = "esp32-" + ubinascii.hexlify(machine.unique_id()).decode()
STATUS = "devices/" + DEVICE_ID + "/status"
READINGS = "sensors/" + DEVICE_ID + "/temperature"
COMMANDS = "devices/" + DEVICE_ID + "/commands"
ACK = "devices/" + DEVICE_ID + "/ack"


class Board:
    def __init__(self):
        self.fan = machine.Pin(FAN_PIN, machine.Pin.OUT)
        self.fan.value(0)
        self.seq = 0
        self.client = None

    def fan_state(self):
        return "on" if self.fan.value() else "off"

    def on_message(self, topic, message):
        try:
            command = json.loads(message)
        except ValueError:
            return
        if not isinstance(command, dict):
            return
        wanted = command.get("fan")
        if wanted in ("on", "off"):
            self.fan.value(1 if wanted == "on" else 0)
        ack = {"fan": self.fan_state()}
        if "ref" in command:
            ack["ref"] = command["ref"]
        self.client.publish(ACK, json.dumps(ack))

    def connect(self, server, port):
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        if not wlan.isconnected():
            wlan.connect(WIFI_SSID, WIFI_PASSWORD)
            while not wlan.isconnected():
                utime.sleep_ms(200)
        client = MQTTClient(DEVICE_ID, server, port=port, keepalive=30)
        client.set_last_will(STATUS, "offline", retain=True, qos=1)
        client.set_callback(self.on_message)
        client.connect()
        client.subscribe(COMMANDS, qos=1)
        client.publish(STATUS, "online", retain=True, qos=1)
        self.client = client

    def publish_reading(self):
        reading = {
            "celsius": round(esp32.mcu_temperature(), 2),
            "fan": self.fan_state(),
            "seq": self.seq,
        }
        self.client.publish(READINGS, json.dumps(reading))
        self.seq += 1


def main(server=BROKER, port=PORT, readings=None):
    """Run forever (or for ``readings`` readings, for the test)."""
    board = Board()
    while readings is None or board.seq < readings:
        try:
            board.connect(server, port)
            next_reading = utime.ticks_ms()
            while readings is None or board.seq < readings:
                board.client.check_msg()
                if utime.ticks_diff(utime.ticks_ms(), next_reading) >= 0:
                    board.publish_reading()
                    next_reading = utime.ticks_add(next_reading, INTERVAL_MS)
                utime.sleep_ms(20)
        except OSError:
            utime.sleep_ms(2000)  # broker or Wi-Fi gone: try again
    board.client.disconnect()


if __name__ == "__main__":
    main()
