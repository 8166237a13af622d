"""Publish from anywhere through a real Redis channel layer (a private redis-server)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from django.test import override_settings

from tests.bridge_fixtures import bridge_config, next_message, recording_route
from tests.services import PahoClient

ROOT = Path(__file__).resolve().parents[2]


def redis_layers(url: str) -> dict:
    return {
        "default": {
            "BACKEND": "mqttbridge.layers.redis.RedisChannelLayer",
            "CONFIG": {"hosts": [url]},
        }
    }


async def test_publish_from_a_second_process_over_redis(
    mosquitto, redis_server, run_bridge, tmp_path
):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        f"broker:\n  url: {mosquitto.url}\nchannel_layer:\n  url: {redis_server.url}\n"
    )
    with override_settings(CHANNEL_LAYERS=redis_layers(redis_server.url)):
        await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
        with PahoClient(mosquitto.host, mosquitto.port) as listener:
            listener.subscribe("from/#", qos=1)
            script = (
                "import mqttbridge\n"
                f"mqttbridge.configure({str(config_file)!r})\n"
                "for i in range(20):\n"
                "    mqttbridge.publish(f'from/other/{i}', b'hi', qos=1, confirm=(i == 19))\n"
                "print('confirmed')\n"
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                script,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            assert out.decode().strip() == "confirmed"
            topics = [(await next_message(listener)).topic for _ in range(20)]
    assert sorted(topics) == sorted(f"from/other/{i}" for i in range(20))


async def test_several_bridges_publish_each_request_once(mosquitto, redis_server, run_bridge):
    import mqttbridge as bridge

    with override_settings(CHANNEL_LAYERS=redis_layers(redis_server.url)):
        for _ in range(3):
            await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
        with PahoClient(mosquitto.host, mosquitto.port) as listener:
            listener.subscribe("once/#", qos=1)
            for i in range(60):
                await bridge.apublish(f"once/{i}", b"x", qos=1)
            received = [(await next_message(listener)).topic for _ in range(60)]
            await asyncio.sleep(0.5)
            assert listener.messages.empty(), "a request was published more than once"
    assert sorted(received) == sorted(f"once/{i}" for i in range(60))


async def test_confirm_times_out_with_a_clear_error_when_no_bridge_listens(redis_server):
    import pytest

    import mqttbridge as bridge

    with (
        override_settings(CHANNEL_LAYERS=redis_layers(redis_server.url)),
        pytest.raises(
            bridge.PublishError, match=r"not confirmed within 0\.5 s: is a bridge running"
        ),
    ):
        await bridge.apublish("nobody/home", b"x", confirm=True, timeout=0.5)


async def test_redis_layer_send_refuses_past_capacity_and_receive_many_drains_in_order(
    redis_server,
):
    from channels.exceptions import ChannelFull

    from mqttbridge.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[redis_server.url], capacity=3)
    for i in range(3):
        await layer.send("mqtt.publish", {"type": "mqtt.publish", "n": i})
    try:
        await layer.send("mqtt.publish", {"type": "mqtt.publish", "n": 3})
    except ChannelFull:
        pass
    else:
        raise AssertionError("the 4th send into a channel of capacity 3 was accepted")
    assert [m["n"] for m in await layer.receive_many("mqtt.publish")] == [0, 1, 2]
    await layer.send("mqtt.publish", {"type": "mqtt.publish", "n": 4})
    assert [m["n"] for m in await layer.receive_many("mqtt.publish")] == [4]
    # A stock receive() sees what the one-round-trip send wrote.
    await layer.send("mqtt.publish", {"type": "mqtt.publish", "n": 5})
    assert (await layer.receive("mqtt.publish"))["n"] == 5
    await layer.flush()
