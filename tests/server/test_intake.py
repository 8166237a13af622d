"""PublishIntake: publish requests read from the channel layer (what mqttbridge.publish sends),
validated, published, and answered when the caller asked for confirmation."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mqttbridge.layers.memory import InMemoryChannelLayer
from mqttbridge.server.intake import PublishIntake
from tests.server.parts import RecordingClient, settle

CHANNEL = "mqtt.publish"


class _Intake:
    def __init__(self, layer: Any) -> None:
        self.client = RecordingClient()
        self.stats: collections.Counter[str] = collections.Counter()
        self.intake = PublishIntake(lambda: self.client, CHANNEL, 10, self.stats)  # type: ignore[arg-type,return-value]
        self.layer = layer


@pytest.fixture
async def running(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[_Intake]:
    layer = InMemoryChannelLayer()
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda alias="default": layer)
    intake = _Intake(layer)
    task = asyncio.create_task(intake.intake.run())
    yield intake
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_request_is_published(running: _Intake):
    await running.layer.send(CHANNEL, {"topic": "cmd/a", "payload": "on", "qos": 0})
    await settle(lambda: running.client.published, rounds=200)
    assert running.client.published == [("cmd/a", b"on", 0, False)]
    assert running.stats["layer_publishes"] == 1


async def test_a_confirmed_request_is_answered_once_the_broker_acknowledged_it(running: _Intake):
    reply = await running.layer.new_channel()
    await running.layer.send(CHANNEL, {"topic": "cmd/a", "payload": b"x", "reply_channel": reply})
    answer = await asyncio.wait_for(running.layer.receive(reply), 2)
    assert answer == {"type": "mqtt.publish.result", "ok": True}


async def test_an_invalid_request_is_refused_with_the_reason(running: _Intake):
    reply = await running.layer.new_channel()
    await running.layer.send(
        CHANNEL, {"topic": "cmd/a", "payload": b"x" * 11, "reply_channel": reply}
    )
    answer = await asyncio.wait_for(running.layer.receive(reply), 2)
    assert answer["ok"] is False and "payload is 11 bytes, over the limit of 10" in answer["error"]
    assert running.client.published == []


async def test_a_failing_layer_is_retried_not_fatal(monkeypatch: pytest.MonkeyPatch):
    class Flaky(InMemoryChannelLayer):
        failures = 1

        async def receive(self, channel: str) -> Any:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("redis went away")
            return await super().receive(channel)

    layer = Flaky()
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda alias="default": layer)
    intake = _Intake(layer)
    task = asyncio.create_task(intake.intake.run())
    try:
        await layer.send(CHANNEL, {"topic": "cmd/b", "payload": b"y", "qos": 1})
        await asyncio.wait_for(_published(intake), 2)
    finally:
        task.cancel()
    assert intake.stats["layer_receive_failures"] == 1
    assert intake.client.published == [("cmd/b", b"y", 1, False)]


async def _published(intake: _Intake) -> None:
    while not intake.client.published:
        await asyncio.sleep(0.01)
