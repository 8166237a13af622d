"""The bridge under test, in its own process: ``mqttbridge.server.server.Server`` and a bench
consumer.

    python -m bench.bridge_runner --port P --mode count --count N [--qos 0] [--protocol 3.1.1]

Modes:

* ``count``: route ``bench/{device_id}/data`` -> ``CountingConsumer`` (one instance per device).
* ``pong``: route ``rt/{device_id}/ping`` -> ``PongConsumer``, which answers on ``.../pong``.
* ``mqttasgi-app``: no routes; ``MqttasgiCountingConsumer.as_asgi()`` as the application,
  exactly as mqttasgi would run it (a master instance that subscribes in ``connect()``).
* ``layer``: no routes; only the channel-layer intake (publish from another process).

The configuration is YAML text given to ``mqttbridge.config.parse_config``, as a user would write
it. Emits ``ready`` (with the pid, to read its memory and CPU) once ``server.ready`` is set, and
``done`` when ``--count`` messages were handled; runs until SIGTERM, or stops itself with
``--exit-when-done``.
``--profile FILE`` runs cProfile from ready to done only, so start-up is not in it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import sys
import time
from typing import Any

from bench.common import emit, peak_rss_kb

ROUTES = {
    "count": ("bench/{device_id}/data", "bench.consumers:CountingConsumer"),
    "pong": ("rt/{device_id}/ping", "bench.consumers:PongConsumer"),
}


def config_text(args: argparse.Namespace) -> str:
    lines = [
        "broker:",
        f"  url: mqtt://{args.host}:{args.port}",
        f"  protocol: '{args.protocol}'",
        f"  client_id: bench-bridge-{os.getpid()}",
        "channel_layer:",
        f"  url: {'memory://' if args.layer == 'none' else args.layer}",
        "limits:",
        f"  max_instances: {args.max_instances}",
    ]
    if args.mode in ROUTES:
        pattern, consumer = ROUTES[args.mode]
        lines += [
            "routes:",
            f"  - topic: {pattern}",
            f"    consumer: {consumer}",
            f"    qos: {args.qos}",
        ]
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace, profiler: cProfile.Profile | None) -> None:
    from bench import consumers
    from mqttbridge.config.schema import parse_config
    from mqttbridge.django_setup import ensure_django
    from mqttbridge.routing import as_application, topic
    from mqttbridge.server.server import Server

    config = parse_config(config_text(args), "<bench>")
    # "none" is a diagnostic the config cannot express: no CHANNEL_LAYERS at all, so consumers
    # read only MQTT (the memory scenario uses it to show what the layer costs per instance).
    layers = {} if args.layer == "none" else {"default": config.channel_layer.channels_settings()}
    ensure_django(layers)
    consumers.PongConsumer.qos = args.qos
    consumers.MqttasgiCountingConsumer.qos = args.qos
    routes = [
        topic(r.topic, as_application(r.consumer_class), qos=r.qos, name=r.consumer)
        for r in config.routes
    ]
    application = (
        consumers.MqttasgiCountingConsumer.as_asgi() if args.mode == "mqttasgi-app" else None
    )
    server = Server(config, application=application, routes=routes)
    counter = consumers.COUNTER
    counter.target = args.count
    finished = asyncio.Event()
    stop_requested = [0.0]

    def finish(complete: bool) -> None:
        if finished.is_set():
            return
        finished.set()
        if profiler is not None:
            profiler.disable()
        client_stats = dict(server.client.stats) if server.client is not None else {}
        emit(
            "done",
            **counter.result(complete=complete),
            instances=len(server.instances),
            peak_kb=peak_rss_kb(),
            server_stats=dict(server.stats),
            client_stats=client_stats,
        )
        if args.exit_when_done:
            stop_requested[0] = time.perf_counter()
            server.request_stop()

    counter.on_done = lambda: finish(True)
    serving = asyncio.get_running_loop().create_task(server.serve())
    ready = asyncio.get_running_loop().create_task(server.ready.wait())
    await asyncio.wait([serving, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if not server.ready.is_set():
        ready.cancel()
        emit("error", message="the bridge did not become ready within 30 s")
        server.request_stop()
        await serving
        return
    if args.mode == "mqttasgi-app":
        await _subscribed(server, consumers.MqttasgiCountingConsumer.topic)
    emit("ready", pid=os.getpid())
    if profiler is not None:
        profiler.enable()
    watchdog = asyncio.get_running_loop().create_task(_watchdog(args, counter, finished, finish))
    await serving
    watchdog.cancel()
    if stop_requested[0]:
        emit("stopped", shutdown_seconds=time.perf_counter() - stop_requested[0])


async def _subscribed(server: Any, topic_filter: str, timeout: float = 10.0) -> None:
    """Wait for the SUBACK of a subscription an application made (``mqtt.sub``).

    ``server.ready`` covers routes; an application subscribes when its ``connect()`` runs,
    which may be after. Reads the client's pending-SUBACK table: a bench, not an API.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = server.client
        if topic_filter in client.subscriptions and client.connected and not client._subacks:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"the application's subscription to {topic_filter!r} was not acknowledged")


async def _watchdog(
    args: argparse.Namespace, counter: Any, finished: asyncio.Event, finish: Any
) -> None:
    deadline = time.perf_counter() + args.timeout
    while not finished.is_set():
        await asyncio.sleep(0.25)
        now = time.perf_counter()
        if now > deadline or counter.idle_for(now) > args.idle:
            finish(False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--mode", default="count", choices=("count", "pong", "mqttasgi-app", "layer")
    )
    parser.add_argument(
        "--count", type=int, default=0, help="messages to handle before 'done' (0: never)"
    )
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1))
    parser.add_argument("--protocol", default="3.1.1", choices=("3.1.1", "5"))
    parser.add_argument(
        "--layer", default="memory://", help="channel_layer.url, or 'none' (diagnostic)"
    )
    parser.add_argument("--max-instances", type=int, default=20000)
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="give up this long after ready"
    )
    parser.add_argument(
        "--idle", type=float, default=3.0, help="give up after this long without a message"
    )
    parser.add_argument("--exit-when-done", action="store_true")
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile from ready to done, pstats to FILE"
    )
    args = parser.parse_args()
    if args.count == 0:
        args.timeout = args.idle = float("inf")
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s"
    )
    profiler = cProfile.Profile() if args.profile else None
    asyncio.run(run(args, profiler))
    if profiler is not None:
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
