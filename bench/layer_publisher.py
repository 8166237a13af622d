"""Publish from another process: ``mqttbridge.configure(config)``, then
``await mqttbridge.apublish``.

    python -m bench.layer_publisher --config FILE --count 5000 [--topic layer/{n}/cmd]

What a Django view or a Celery task does, in a loop: each request goes over the Redis channel
layer to a running bridge, which publishes it. ``apublish`` is awaited one call at a time, as a
caller would; ``ChannelFull`` (channels_redis's per-channel capacity, 100 by default) is
counted and retried after a millisecond, since the caller would otherwise lose the message.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import emit


async def run(args: argparse.Namespace) -> None:
    from channels.exceptions import ChannelFull

    import mqttbridge as bridge

    bridge.configure(args.config)
    full = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    for i in range(args.count):
        topic = args.topic.format(n=i % 100)
        while True:
            try:
                await bridge.apublish(topic, b'{"command": "on"}', qos=args.qos)
                break
            except ChannelFull:
                full += 1
                await asyncio.sleep(0.001)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    emit(
        "done",
        published=args.count,
        seconds=seconds,
        rate=args.count / seconds,
        channel_full=full,
        cpu_ms_per_message=1000 * cpu / args.count,
        started_at=started,  # perf_counter is CLOCK_MONOTONIC: comparable across processes
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1))
    parser.add_argument("--topic", default="layer/{n}/cmd")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
