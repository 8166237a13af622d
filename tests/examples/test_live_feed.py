"""examples/dashboard/telemetry/live.py: the pages' readings, batched per process.

The module is the example's own (imported from its directory, as the project's consumers do);
the layers are real: Channels' in-memory layer, and the Redis layer on a private Redis, with a
feed per layer instance standing for a feed per process."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from harness.dashboard import DASHBOARD_DIR
from tests.services import RedisProcess

sys.path.insert(0, str(DASHBOARD_DIR))
from telemetry.live import LiveFeed

GROUP = "dashboard"


def reading(device_id: str, celsius: float) -> dict[str, Any]:
    return {"device_id": device_id, "celsius": celsius, "ts": 1, "received": 2}


async def batches(layer: Any, channel: str, readings: int) -> list[list[dict[str, Any]]]:
    """The ``device.readings`` messages on ``channel`` until ``readings`` readings came."""
    got: list[list[dict[str, Any]]] = []
    while sum(map(len, got)) < readings:
        message = await asyncio.wait_for(layer.receive(channel), 10)
        assert message["type"] == "device.readings", message
        got.append(message["readings"])
    return got


async def test_readings_added_meanwhile_reach_the_group_as_one_message() -> None:
    layer = InMemoryChannelLayer()
    page = await layer.new_channel()
    await layer.group_add(GROUP, page)
    feed = LiveFeed(GROUP, layer=layer)
    sent = [reading(f"d{n % 10}", 20 + n / 10) for n in range(50)]
    for one in sent:  # 50 handlers in one turn of the loop: nothing has been sent yet
        feed.add(one)
    assert await batches(layer, page, 50) == [sent]
    # Quiet again: the next reading goes by itself, in order, and nothing is left behind.
    feed.add(sent[0])
    assert await batches(layer, page, 1) == [[sent[0]]]


async def test_readings_while_a_batch_is_sent_make_the_next_batch() -> None:
    layer = InMemoryChannelLayer()
    page = await layer.new_channel()
    await layer.group_add(GROUP, page)
    feed = LiveFeed(GROUP, layer=layer)
    feed.add(reading("a", 1.0))
    await asyncio.sleep(0)  # the feed takes the first one at once, then waits its interval
    feed.add(reading("a", 2.0))
    feed.add(reading("b", 3.0))
    got = await batches(layer, page, 3)
    assert got == [[reading("a", 1.0)], [reading("a", 2.0), reading("b", 3.0)]]


@pytest.mark.integration
async def test_with_the_redis_layer_each_process_sends_its_own_batches(
    redis_server: RedisProcess,
) -> None:
    from channels_redis.core import RedisChannelLayer

    def process_layer() -> RedisChannelLayer:  # one per process, on the same Redis
        return RedisChannelLayer(hosts=[redis_server.url])

    pages, one, two = process_layer(), process_layer(), process_layer()
    page = await pages.new_channel()
    await pages.group_add(GROUP, page)
    feeds = LiveFeed(GROUP, layer=one), LiveFeed(GROUP, layer=two)
    sent = [[reading(f"p{i}-d{n}", float(n)) for n in range(20)] for i in range(2)]
    for feed, readings in zip(feeds, sent, strict=True):
        for one_reading in readings:
            feed.add(one_reading)
    got = await batches(pages, page, 40)
    assert sorted(got, key=lambda batch: batch[0]["device_id"]) == sent
    for layer in (pages, one, two):
        await layer.flush()
