"""Faults on the Channels side: a Redis layer that dies, and consumers that fall behind."""

from __future__ import annotations

import asyncio
import time

from django.test import override_settings

from mqttbridge.routing import topic
from tests import apps
from tests.bridge_fixtures import bridge_config, next_message, recording_route, wait_until
from tests.services import PahoClient


def redis_layers(url: str) -> dict:
    return {
        "default": {
            "BACKEND": "mqttbridge.layers.redis.RedisChannelLayer",
            "CONFIG": {"hosts": [url]},
        }
    }


async def test_redis_outage_mqtt_keeps_flowing_then_layer_and_groups_recover(
    mosquitto, redis_server, run_bridge
):
    from channels.layers import get_channel_layer

    import mqttbridge as bridge

    with override_settings(CHANNEL_LAYERS=redis_layers(redis_server.url)):
        await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
        with PahoClient(mosquitto.host, mosquitto.port) as device:
            device.subscribe("reply/#", qos=1)
            device.subscribe("cmd/#", qos=1)
            device.publish("sensors/r1/data", b"before", qos=1)
            await wait_until(lambda: len(apps.EVENTS) >= 2, what="instance joined its group")

            redis_server.kill()
            for i in range(5):  # MQTT does not need Redis
                device.publish("sensors/r1/data", f"during{i}", qos=1)
            await wait_until(
                lambda: sum(e[1] == "msg" for e in apps.EVENTS) == 6, what="messages during outage"
            )

            redis_server.start()  # same port, empty: every group membership is gone
            restarted = time.monotonic()
            while True:  # publish-from-anywhere resumes
                try:
                    await bridge.apublish("cmd/after", b"ok", qos=1, confirm=True, timeout=1)
                    break
                except Exception:
                    assert time.monotonic() - restarted < 5, "publishing did not resume within 5 s"
                    await asyncio.sleep(0.1)
            assert (await next_message(device)).topic == "cmd/after"

            layer = get_channel_layer()
            reply = None
            while reply is None:  # the instance re-joins device.r1 on its own
                await layer.group_send("device.r1", {"type": "device.command", "text": "hi"})
                try:
                    reply = await next_message(device, timeout=0.5)
                except AssertionError:
                    assert time.monotonic() - restarted < 15, "group membership not restored"
    assert (reply.topic, reply.payload) == ("reply/r1", b"hi")


async def test_slow_consumer_gets_backpressure_not_unbounded_queues(mosquitto, run_bridge):
    config = bridge_config(mosquitto.url, "limits:\n  queue_size: 10\n")
    server = await run_bridge(
        config, routes=[topic("slow/{device_id}", apps.SlowConsumer.as_asgi())]
    )
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            for inst in list(server.instances.values()):
                peak = max(peak, len(inst.items))
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    try:
        with PahoClient(mosquitto.host, mosquitto.port) as device:
            for i in range(300):
                device.client.publish("slow/s1", str(i), qos=0)
            await wait_until(lambda: len(apps.EVENTS) == 300, timeout=20, what="all 300 handled")
    finally:
        watcher.cancel()
    assert [int(e[3]) for e in apps.EVENTS] == list(range(300))  # nothing dropped, in order
    assert server.stats["backpressure"] >= 1
    assert server.client.stats["reading_paused"] >= 1
    assert peak <= 11, f"instance queue reached {peak} with queue_size 10"


async def test_reads_resume_when_the_instance_that_paused_them_crashes(mosquitto, run_bridge):
    config = bridge_config(mosquitto.url, "limits:\n  queue_size: 10\n")
    server = await run_bridge(
        config, routes=[topic("slow/{device_id}", apps.SlowCrashingConsumer.as_asgi())]
    )
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        for i in range(60):
            device.client.publish("slow/s1", b"crash" if i == 30 else str(i), qos=0)
        await wait_until(lambda: len(apps.EVENTS) == 59, timeout=20, what="the other 59 handled")
    assert server.stats["backpressure"] >= 1 and server.stats["instance_errors"] == 1
    assert not server.dispatch.paused_by


async def test_confirm_pending_at_shutdown_fails_fast_instead_of_timing_out(mosquitto, run_bridge):
    import pytest

    import mqttbridge as bridge

    server = await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    mosquitto.pause()  # the PUBACK will not come
    try:
        request = asyncio.ensure_future(bridge.apublish("x/y", b"z", confirm=True, timeout=30))
        await wait_until(lambda: server.client.stats["published"] >= 1, what="publish sent")
        started = time.monotonic()
        await server.shutdown()
        with pytest.raises(bridge.PublishError, match="shutting down"):
            await asyncio.wait_for(request, 5)
        assert time.monotonic() - started < 5
    finally:
        mosquitto.resume()
