"""Outbound: what applications send, checked, then published, subscribed or recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mqttbridge.protocol.events import InvalidEvent
from mqttbridge.routing import topic
from tests.server.parts import message, server_with, settle


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuses b"bad" as bad input, as a consumer raising InvalidPayload does."""
    while (event := await receive())["type"] != "mqtt.disconnect":
        if event["type"] == "mqtt.msg" and event["mqtt"]["payload"] == b"bad":
            await send({"type": "mqtt.dead_letter", "mqtt": {"error": "not a reading"}})


async def _instance() -> tuple[Any, Any, Any]:
    server, client = server_with(routes=[topic("s/{device}", _app)])
    server.dispatch.on_message(message("s/a", b"x", mid=1))
    inst = server.instances[("s/{device}", "a")]
    await settle(lambda: client.acked)
    return server, client, inst


async def test_a_publish_is_checked_then_handed_to_the_client():
    _, client, inst = await _instance()
    await inst.send({"type": "mqtt.pub", "mqtt": {"topic": "out/a", "payload": "hi", "qos": 0}})
    assert client.published == [("out/a", b"hi", 0, False)]
    with pytest.raises(InvalidEvent, match="wildcard"):
        await inst.send({"type": "mqtt.pub", "mqtt": {"topic": "out/+", "payload": b""}})


async def test_subscriptions_end_with_the_instance():
    server, client, inst = await _instance()
    await inst.send({"type": "mqtt.sub", "mqtt": {"topic": "cmd/#", "qos": 1}})
    assert client.subscriptions["cmd/#"] == 1
    server.registry.close(inst, "idle timeout")
    await settle(lambda: inst.task.done())
    assert "cmd/#" not in client.subscriptions and not server.subscriptions


async def test_a_dead_letter_event_records_the_message_being_handled():
    server, client, _ = await _instance()
    server.dispatch.on_message(message("s/a", b"bad", mid=2))
    await settle(lambda: client.acked == [1, 2])
    (record,) = [json.loads(data) for data in client.dead_letters()]
    assert (record["payload"], record["error"]) == ("bad", "not a reading")
    assert server.stats["dead_lettered_by_app"] == 1


async def test_an_unknown_event_type_names_the_ones_allowed():
    _, _, inst = await _instance()
    with pytest.raises(InvalidEvent, match=r"unknown event type 'mqtt\.publish'.*'mqtt\.pub'"):
        await inst.send({"type": "mqtt.publish", "mqtt": {}})


async def test_only_the_master_may_spawn_workers():
    _, _, inst = await _instance()
    with pytest.raises(InvalidEvent, match=r"only the master application \(app_id 0\) may spawn"):
        await inst.send({"type": "mqttasgi.worker.spawn", "command": {"app_id": 1}})
