"""A few simulated devices for the README's demo, on one MQTT connection.

Each device publishes ``devices/<id>/status`` ("online", retained), a JSON temperature reading
on ``sensors/<id>/temperature`` every ``interval`` seconds (a slow sine wave, so fans switch),
and prints the commands it receives on ``devices/<id>/commands``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["run_demo_devices"]

logger = logging.getLogger(__name__)


async def run_demo_devices(host: str, port: int, count: int = 3, interval: float = 1.0) -> None:
    """Run until cancelled."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="mqttbridge-demo-devices")
    ids = [f"t{i + 1}" for i in range(count)]
    # Readings start once the command subscriptions are acknowledged, so no command is missed.
    subscribed = threading.Event()

    def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        c.subscribe([(f"devices/{device_id}/commands", 1) for device_id in ids])
        for device_id in ids:
            c.publish(f"devices/{device_id}/status", "online", qos=1, retain=True)

    def on_subscribe(c: paho.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        subscribed.set()

    def on_message(c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        device_id = msg.topic.split("/")[1]
        logger.info(
            "device %s received command %s", device_id, msg.payload.decode("utf-8", "replace")
        )

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, port)
    client.loop_start()
    try:
        await asyncio.to_thread(subscribed.wait, 10)
        tick = 0
        while True:
            for index, device_id in enumerate(ids):
                celsius = 24.0 + 3.0 * math.sin((tick + 4 * index) / 5.0)
                reading = {"celsius": round(celsius, 2), "seq": tick}
                client.publish(f"sensors/{device_id}/temperature", json.dumps(reading), qos=1)
            tick += 1
            await asyncio.sleep(interval)
    finally:
        for device_id in ids:
            client.publish(f"devices/{device_id}/status", "offline", qos=1, retain=True)
        await asyncio.sleep(0.2)
        client.disconnect()
        client.loop_stop()
