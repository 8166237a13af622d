"""mqttasgi 2.0.0, the server the bridge replaces, running ``MqttasgiCountingConsumer``.

    python -m bench.mqttasgi_runner --port P --count N [--qos 0] [--timeout 30]

Django is configured the least mqttasgi needs (``settings.configure``, in-memory channel
layer, no database), as a project's settings module would. mqttasgi's ``Server.run()`` owns its
event loop, so the watchdog starts from an overridden ``mqtt_receive_loop``. Emits ``ready`` on
the SUBACK of the consumer's subscription, ``done`` at N messages or, with ``complete: false``,
``--timeout`` seconds after ready: mqttasgi handles about a hundred messages a second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from typing import Any

from bench.common import emit


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1))
    parser.add_argument("--timeout", type=float, default=30.0, help="stop this long after ready")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

    from mqttasgi.server import Server

    from bench.consumers import COUNTER, MqttasgiCountingConsumer

    MqttasgiCountingConsumer.qos = args.qos
    COUNTER.target = args.count
    state = {"finished": False, "ready_at": 0.0}

    def finish(complete: bool) -> None:
        if not state["finished"]:
            state["finished"] = True
            emit("done", **COUNTER.result(complete=complete))

    COUNTER.on_done = lambda: finish(True)

    class BenchServer(Server):  # type: ignore[misc]
        async def mqtt_receive_loop(self) -> None:
            asyncio.get_running_loop().create_task(watchdog())
            await super().mqtt_receive_loop()

    async def watchdog() -> None:
        while not state["finished"]:
            await asyncio.sleep(0.25)
            if state["ready_at"] and time.perf_counter() - state["ready_at"] > args.timeout:
                finish(False)

    def on_subscribe(*_: Any) -> None:
        state["ready_at"] = time.perf_counter()
        emit("ready", pid=os.getpid())

    server = BenchServer(
        MqttasgiCountingConsumer.as_asgi(),
        args.host,
        args.port,
        client_id=f"bench-mqttasgi-{os.getpid()}",
    )
    server.client.on_subscribe = on_subscribe
    server.run()  # until SIGTERM


if __name__ == "__main__":
    main()
