"""Dispatcher: each PUBLISH to the instances it is for, acknowledgements, rejection,
backpressure, and what becomes of an ended instance's messages (no broker: tests/server/parts)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from mqttbridge.protocol.build import routed_scope
from mqttbridge.protocol.topics import compile_pattern
from mqttbridge.routing import topic
from tests.server.parts import message, server_with, settle


class Recorder:
    """An ASGI application recording ``(instance number, event type, payload)``. b"boom"
    raises; b"hold" waits for ``release`` before asking for the next event; a device named
    "broken" fails on start-up."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, bytes | None]] = []
        self.scopes: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        number = len(self.scopes)
        while True:
            event = await receive()
            payload = event["mqtt"].get("payload")
            self.seen.append((number, event["type"], payload))
            if (
                event["type"] == "mqtt.connect"
                and "broken" in scope["topic_route"]["kwargs"].values()
            ):
                raise RuntimeError("cannot start")
            if event["type"] == "mqtt.disconnect":
                return
            if payload == b"boom":
                raise RuntimeError("boom")
            if payload == b"hold":
                await self.release.wait()

    def messages(self) -> list[tuple[int, bytes | None]]:
        return [(n, payload) for n, kind, payload in self.seen if kind == "mqtt.msg"]


def _routed(limits: str = "") -> tuple[Any, Any, Recorder]:
    app = Recorder()
    server, client = server_with(limits, routes=[topic("s/{device}", app)])
    return server, client, app


async def test_one_instance_per_device_gets_connect_then_its_messages_in_order():
    server, _, app = _routed()
    for mid, (device, payload) in enumerate([("a", b"1"), ("b", b"2"), ("a", b"3")], 1):
        server.dispatch.on_message(message(f"s/{device}", payload, mid=mid))
    await settle(lambda: len(app.messages()) == 3)
    by_instance: dict[int, list[tuple[str, bytes | None]]] = {}
    for number, kind, payload in app.seen:
        by_instance.setdefault(number, []).append((kind, payload))
    assert by_instance == {
        1: [("mqtt.connect", None), ("mqtt.msg", b"1"), ("mqtt.msg", b"3")],
        2: [("mqtt.connect", None), ("mqtt.msg", b"2")],
    }
    assert list(server.instances) == [("s/{device}", "b"), ("s/{device}", "a")]  # LRU order


async def test_the_scope_is_the_one_protocol_build_makes():
    server, _, app = _routed()
    server.dispatch.on_message(message("s/d1"))
    await settle(lambda: app.scopes)
    expected = routed_scope(
        server.client_id, server.link.broker_url, compile_pattern("s/{device}"), {"device": "d1"}
    )
    assert app.scopes == [expected]


async def test_a_message_is_acknowledged_after_its_handler_returned_not_before():
    server, client, app = _routed()
    server.dispatch.on_message(message("s/a", b"hold", mid=1))
    server.dispatch.on_message(message("s/b", b"x", mid=2))
    await settle(lambda: len(app.messages()) == 2)
    assert client.acked == []  # 2 is handled, but 1 is not: arrival order (MQTT 4.6)
    app.release.set()
    await settle(lambda: client.acked)
    await settle()
    assert client.acked == [1, 2]


async def test_an_unrouted_message_is_acknowledged_at_once():
    server, client, _ = _routed()
    server.dispatch.on_message(message("elsewhere", mid=9))
    assert client.acked == [9] and server.stats["unrouted"] == 1 and not server.instances


async def test_an_oversized_message_is_dead_lettered_and_acknowledged_not_delivered():
    server, client, _ = _routed("  max_payload_bytes: 10\n")
    server.dispatch.on_message(message("s/a", b"x" * 11, mid=3))
    (record,) = [json.loads(data) for data in client.dead_letters()]
    assert record["topic"] == "s/a" and record["payload_size"] == 11
    assert "over limits.max_payload_bytes=10" in record["error"]
    assert client.acked == [3] and not server.instances


async def test_a_topic_that_is_not_utf8_is_dead_lettered_without_a_topic():
    server, client, _ = _routed()
    server.dispatch.on_message(message(b"s/\xff", mid=4))
    (record,) = [json.loads(data) for data in client.dead_letters()]
    assert record["topic"] is None and record["error"].startswith("topic is not valid UTF-8")
    assert client.acked == [4]


async def test_a_full_queue_pauses_reading_until_it_is_half_empty():
    server, client, app = _routed("  queue_size: 4\n")
    server.dispatch.on_message(message("s/a", b"hold", mid=1))
    await settle(lambda: app.messages())
    for mid in range(2, 6):
        server.dispatch.on_message(message("s/a", b"x", mid=mid))
    assert not client.reading and client.pauses == 1
    app.release.set()
    await settle(lambda: client.reading)
    assert client.reading and not server.dispatch.paused_by


async def test_an_instance_subscribed_to_its_own_route_gets_each_message_once():
    server, _, app = _routed()
    server.dispatch.on_message(message("s/a", b"1", mid=1))
    await settle(lambda: app.messages())
    inst = server.instances[("s/{device}", "a")]
    await inst.send({"type": "mqtt.sub", "mqtt": {"topic": "s/#", "qos": 1}})
    server.dispatch.on_message(message("s/a", b"2", mid=2))
    await settle(lambda: len(app.messages()) == 2)
    await settle()
    assert app.messages() == [(1, b"1"), (1, b"2")]


async def test_a_crash_on_a_message_dead_letters_it_and_a_fresh_instance_takes_the_rest():
    server, client, app = _routed()
    server.dispatch.on_message(message("s/a", b"boom", mid=1))
    server.dispatch.on_message(message("s/a", b"next", mid=2))
    await settle(lambda: (2, b"next") in app.messages())
    (record,) = [json.loads(data) for data in client.dead_letters()]
    assert (record["payload"], record["error"]) == ("boom", "RuntimeError: boom")
    assert app.messages() == [(1, b"boom"), (2, b"next")]
    await settle(lambda: len(client.acked) == 2)
    assert client.acked == [1, 2] and server.stats["instance_errors"] == 1


async def test_a_crash_at_start_up_dead_letters_what_was_queued_instead_of_retrying():
    server, client, app = _routed()
    server.dispatch.on_message(message("s/broken", b"1", mid=1))
    server.dispatch.on_message(message("s/broken", b"2", mid=2))
    await settle(lambda: len(client.dead_letters()) == 2)
    records = [json.loads(data) for data in client.dead_letters()]
    assert [r["payload"] for r in records] == ["1", "2"]
    assert all(
        r["error"] == "not handled: the instance failed (RuntimeError: cannot start)"
        for r in records
    )
    assert len(app.scopes) == 1 and client.acked == [1, 2]


async def test_an_instance_ending_while_the_bridge_stops_leaves_its_queue_to_the_broker():
    server, client, app = _routed()
    server.dispatch.on_message(message("s/a", b"hold", mid=1))
    server.dispatch.on_message(message("s/a", b"queued", mid=2))
    await settle(lambda: app.messages())
    server.registry.stopping = True
    server.instances[("s/{device}", "a")].task.cancel()
    await settle(lambda: not server.registry.live)
    assert client.acked == [] and not client.dead_letters()  # redelivered by the broker
