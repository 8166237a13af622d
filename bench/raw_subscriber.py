"""The baseline: a plain paho 2.x subscriber in ``loop_forever``, counting, stopping at N.

    python -m bench.raw_subscriber --port P --count N [--qos 0] [--topic bench/+/data]

At QoS 1 paho sends the PUBACK after ``on_message`` returns, so like the bridge it
acknowledges after handling. Emits ``ready`` once the SUBACK is in, ``done`` at N messages,
or with ``complete: false`` after ``--idle`` seconds without one (messages were lost).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import Counter, emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1))
    parser.add_argument("--protocol", default="3.1.1", choices=("3.1.1", "5"))
    parser.add_argument("--topic", default="bench/+/data")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="give up this long after ready"
    )
    parser.add_argument(
        "--idle", type=float, default=3.0, help="give up after this long without a message"
    )
    args = parser.parse_args()

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-raw-{os.getpid()}",
        protocol=paho.MQTTv5 if args.protocol == "5" else paho.MQTTv311,
    )
    counter = Counter()
    counter.target = args.count
    finished = threading.Event()

    def finish(complete: bool) -> None:
        if not finished.is_set():
            finished.set()
            emit("done", **counter.result(complete=complete))
            client.disconnect()

    counter.on_done = lambda: finish(True)

    def on_connect(c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        c.subscribe(args.topic, args.qos)

    def on_subscribe(*_: Any) -> None:
        emit("ready", pid=os.getpid())
        threading.Thread(target=watchdog, daemon=True).start()

    def watchdog() -> None:
        deadline = time.perf_counter() + args.timeout
        while not finished.wait(0.25):
            now = time.perf_counter()
            if now > deadline or counter.idle_for(now) > args.idle:
                finish(False)

    hit = counter.hit
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = lambda _c, _u, _m: hit()
    client.connect(args.host, args.port, keepalive=60)
    client.loop_forever()


if __name__ == "__main__":
    main()
