"""A bridge on an idle Redis channel layer keeps its connections and publishes promptly.

redis-py 8 reads every reply with a 5 s socket timeout by default; channels_redis waits up to
5 s in BZPOPMIN. An idle bridge then timed out and reconnected every few seconds, and a
``confirm=True`` publish after an idle spell waited out the intake's back-off (issue 6,
redis/redis-py#4091, django/channels_redis#422). Each layer below is configured as a Django
project's CHANNEL_LAYERS would name it, idles longer than any of its client timeouts, and must
then behave as it did before the idle spell.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

import pytest
import redis
from django.test import override_settings

from tests.bridge_fixtures import bridge_config, next_message, recording_route, wait_until
from tests.services import PahoClient

BACKENDS = [
    "mqttbridge.layers.redis.RedisChannelLayer",
    "channels_redis.core.RedisChannelLayer",
    # Polls with its own 0.1 s read timeout, so redis-py 8 never cut it: kept here so that
    # whatever the bridge does to Redis layers does not break it.
    "channels_redis.pubsub.RedisPubSubChannelLayer",
]

# The post-idle publish may be this many times slower than the slowest pre-idle one: generous
# for a loaded machine, far below the seconds an intake backing off after timeouts costs.
SLOWDOWN_ALLOWED = 20


def redis_default_socket_timeout() -> float | None:
    default: float | None = (
        inspect.signature(redis.asyncio.Redis).parameters["socket_timeout"].default
    )
    return default


def longest_client_timeout(layer: Any) -> float:
    """The longest wait the layer's Redis client may be in: a blocking read or a socket read."""
    socket_timeouts = [
        host.get("socket_timeout", redis_default_socket_timeout())
        for host in getattr(layer, "hosts", [{}])
    ]
    return max([getattr(layer, "brpop_timeout", 0), *filter(None, socket_timeouts)])


def connections_accepted(client: redis.Redis) -> int:
    return int(client.info("stats")["total_connections_received"])


async def timed_confirm_publish(topic: str, listener: PahoClient) -> float:
    import mqttbridge as bridge

    started = time.perf_counter()
    await bridge.apublish(topic, b"x", qos=1, confirm=True, timeout=30)
    elapsed = time.perf_counter() - started
    assert (await next_message(listener)).topic == topic
    return elapsed


@pytest.mark.parametrize("backend", BACKENDS, ids=["bridge", "channels_redis", "pubsub"])
async def test_idle_bridge_keeps_its_redis_connections_and_publishes_promptly(
    backend, mosquitto, redis_server, run_bridge, caplog
):
    from channels.layers import get_channel_layer

    from tests import apps

    caplog.set_level(logging.WARNING)
    layers = {"default": {"BACKEND": backend, "CONFIG": {"hosts": [redis_server.url]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        server = await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
        layer = get_channel_layer()
        with PahoClient(mosquitto.host, mosquitto.port) as device:
            device.subscribe("idle/#", qos=1)
            device.subscribe("reply/#", qos=1)
            device.publish("sensors/i1/data", b"hello", qos=1)
            await wait_until(lambda: len(apps.EVENTS) >= 2, what="instance joined its group")
            before = max(
                [await timed_confirm_publish(f"idle/before/{i}", device) for i in range(3)]
            )

            with redis.Redis.from_url(redis_server.url) as observer:
                accepted = connections_accepted(observer)
                idle = max(2 * getattr(layer, "brpop_timeout", 0), longest_client_timeout(layer))
                await asyncio.sleep(idle + 1)
                reconnects = connections_accepted(observer) - accepted

            after = await timed_confirm_publish("idle/after", device)
            # The consumer's own layer channel still delivers, too.
            await layer.group_send("device.i1", {"type": "device.command", "text": "still here"})
            reply = await next_message(device)

    problems = [
        f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING
    ]
    assert problems == [], f"idling {idle:.0f} s on {backend} logged problems"
    assert server.stats["layer_receive_failures"] == 0
    assert reconnects == 0, f"{reconnects} new Redis connections while idle for {idle:.0f} s"
    assert (reply.topic, reply.payload) == ("reply/i1", b"still here")
    assert after <= SLOWDOWN_ALLOWED * before, (
        f"confirm=True publish took {after * 1000:.0f} ms after {idle:.0f} s idle, "
        f"{before * 1000:.0f} ms before"
    )


@pytest.mark.parametrize("backend", BACKENDS[:2], ids=["bridge", "channels_redis"])
async def test_a_confirm_wait_past_the_blocking_read_ends_in_publish_error(backend, redis_server):
    """A Django process without a bridge: ``apublish`` waits on its reply channel across more
    than one BZPOPMIN and then reports the missing bridge, not redis-py's TimeoutError."""
    import mqttbridge as bridge

    layers = {"default": {"BACKEND": backend, "CONFIG": {"hosts": [redis_server.url]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        from channels.layers import get_channel_layer

        wait = get_channel_layer().brpop_timeout + 1
        with pytest.raises(bridge.PublishError, match=rf"not confirmed within {wait} s"):
            await bridge.apublish("nobody/home", b"x", confirm=True, timeout=wait)
