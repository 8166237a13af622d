"""The bridge against a real, private Mosquitto: routing, instances, limits, bad input."""

from __future__ import annotations

import asyncio
import json

import pytest

from mqttbridge.routing import topic
from tests import apps
from tests.bridge_fixtures import bridge_config, next_message, recording_route, wait_until
from tests.services import PahoClient


def _msgs(device: int | None = None) -> list[tuple[int, str, str | None, bytes | None]]:
    return [e for e in apps.EVENTS if e[1] == "msg" and (device is None or e[0] == device)]


async def test_one_instance_per_device_connect_first_and_in_order(mosquitto, run_bridge):
    await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        for i in range(20):
            device.publish("sensors/a/data", f"a{i}", qos=1)
            device.publish("sensors/b/data", f"b{i}", qos=1)
        await wait_until(lambda: len(_msgs()) == 40, what="40 messages handled")

    by_instance: dict[int, list[bytes | None]] = {}
    for number, kind, _topic, payload in apps.EVENTS:
        by_instance.setdefault(number, []).append(payload if kind == "msg" else kind.encode())
    assert len(by_instance) == 2, by_instance.keys()
    for events in by_instance.values():
        assert events[0] == b"connect"
        prefix = events[1][:1]  # type: ignore[index]
        assert events[1:] == [f"{prefix.decode()}{i}".encode() for i in range(20)]


async def test_consumer_publishes_reach_the_broker(mosquitto, run_bridge):
    await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/#", qos=1)
        device.publish("sensors/d1/data", b"echo", qos=1)
        reply = await next_message(device)
    assert (reply.topic, reply.payload) == ("reply/d1", b"echo")


async def test_mqtt5_properties_reach_the_consumer(mosquitto, run_bridge):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    seen: list[dict] = []
    original = apps.RecordingConsumer.receive

    async def spy(self, message):  # record the full message dict
        seen.append(message)
        await original(self, message)

    apps.RecordingConsumer.receive = spy  # type: ignore[method-assign]
    try:
        with PahoClient(mosquitto.host, mosquitto.port, protocol=5) as device:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = "application/json"
            props.UserProperty = ("fw", "1.2")
            device.client.publish("sensors/p/data", b"{}", qos=1, properties=props)
            await wait_until(lambda: seen, what="message with properties")
    finally:
        apps.RecordingConsumer.receive = original  # type: ignore[method-assign]
    message = seen[0]
    assert message["properties"]["content_type"] == "application/json"
    assert message["properties"]["user_properties"] == [("fw", "1.2")]
    assert message["retain"] is False and message["dup"] is False and message["qos"] == 1


async def test_idle_instance_is_closed_and_recreated(mosquitto, run_bridge):
    config = bridge_config(mosquitto.url, "limits:\n  idle_timeout: 0.3\n")
    await run_bridge(config, routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.publish("sensors/a/data", b"1", qos=1)
        await wait_until(
            lambda: any(e[1] == "disconnect" for e in apps.EVENTS), what="idle disconnect"
        )
        device.publish("sensors/a/data", b"2", qos=1)
        await wait_until(lambda: len(_msgs()) == 2, what="second message")
    kinds = [(n, k) for n, k, _, _ in apps.EVENTS]
    assert kinds == [(1, "connect"), (1, "msg"), (1, "disconnect"), (2, "connect"), (2, "msg")]


async def test_instance_limit_evicts_least_recently_used(mosquitto, run_bridge):
    config = bridge_config(mosquitto.url, "limits:\n  max_instances: 2\n")
    server = await run_bridge(config, routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        for name in ("a", "b", "a", "c"):  # b is least recently used when c arrives
            device.publish(f"sensors/{name}/data", name, qos=1)
            before = len(_msgs())
            await wait_until(lambda b=before: len(_msgs()) > b, what=f"message for {name}")
        await wait_until(lambda: any(e[1] == "disconnect" for e in apps.EVENTS), what="eviction")
    disconnected = [n for n, k, _, _ in apps.EVENTS if k == "disconnect"]
    first_b = next(n for n, k, _, p in apps.EVENTS if k == "msg" and p == b"b")
    assert disconnected == [first_b]
    assert len(server.instances) == 2
    assert server.stats["instances_evicted"] == 1


async def test_flood_of_device_ids_stays_within_instance_limit(mosquitto, run_bridge):
    config = bridge_config(mosquitto.url, "limits:\n  max_instances: 10\n")
    server = await run_bridge(config, routes=[recording_route()])
    peak = 0
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        for i in range(200):
            device.client.publish(f"sensors/fake{i}/data", b"x", qos=0)
        while len(_msgs()) < 200:
            peak = max(peak, len(server.instances))
            await asyncio.sleep(0.005)
    assert peak <= 10
    assert server.stats["instances_evicted"] >= 190


async def test_oversized_payload_is_dead_lettered_not_delivered(mosquitto, run_bridge):
    config = bridge_config(mosquitto.url, "limits:\n  max_payload_bytes: 100\n")
    await run_bridge(config, routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("mqttbridge/dead-letter", qos=1)
        device.publish("sensors/big/data", b"x" * 200, qos=1)
        record = json.loads((await next_message(device)).payload)
        device.publish("sensors/big/data", b"small", qos=1)
        await wait_until(lambda: _msgs(), what="the next message")
    assert record["topic"] == "sensors/big/data"
    assert record["payload_size"] == 200
    assert "over limits.max_payload_bytes=100" in record["error"]
    assert [e[3] for e in _msgs()] == [b"small"]


async def test_handler_exception_is_dead_lettered_and_instance_restarted(
    mosquitto, run_bridge, caplog
):
    await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("mqttbridge/dead-letter", qos=1)
        device.publish("sensors/p1/data", b"boom", qos=1)
        record = json.loads((await next_message(device)).payload)
        device.publish("sensors/p1/data", b"after", qos=1)
        await wait_until(lambda: len(_msgs()) == 2, what="message after the poison one")
    assert record["topic"] == "sensors/p1/data"
    assert record["payload"] == "boom"
    assert record["error"] == "RuntimeError: boom requested"
    assert record["consumer"].endswith("RecordingConsumer")
    assert [(n, k) for n, k, _, _ in apps.EVENTS] == [
        (1, "connect"),
        (1, "msg"),
        (2, "connect"),
        (2, "msg"),
    ]
    assert "Exception inside application" in caplog.text and "sensors/p1/data" in caplog.text


async def test_invalid_publish_raises_in_the_consumer_and_reaches_no_broker(mosquitto, run_bridge):
    await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/#", qos=1)
        device.publish("sensors/w/data", b"bad-publish", qos=1)
        await wait_until(lambda: apps.ERRORS, what="the publish error")
        with pytest.raises(AssertionError):
            await next_message(device, timeout=0.3)
    assert "wildcards are only allowed in subscriptions" in apps.ERRORS[0]


async def test_group_send_reaches_the_device_instance(mosquitto, run_bridge):
    from channels.layers import get_channel_layer

    await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/#", qos=1)
        device.publish("sensors/g1/data", b"hello", qos=1)
        await wait_until(lambda: _msgs(), what="instance start")
        await get_channel_layer().group_send(
            "device.g1", {"type": "device.command", "text": "from django"}
        )
        reply = await next_message(device)
    assert (reply.topic, reply.payload) == ("reply/g1", b"from django")


async def test_json_and_sync_consumers(mosquitto, run_bridge):
    routes = [
        topic("json/{device_id}", apps.JsonRecorder.as_asgi()),
        topic("sync/{device_id}", apps.SyncRecorder.as_asgi()),
    ]
    await run_bridge(bridge_config(mosquitto.url), routes=routes)
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/sync", qos=1)
        device.publish("json/j1", b'{"celsius": 21.5}', qos=1)
        device.publish("sync/s1", b"orm", qos=1)
        reply = await next_message(device)
        await wait_until(lambda: len(apps.EVENTS) == 2, what="both consumers")
    assert reply.payload == b"orm"
    assert (0, "json", "json/j1", b"{'celsius': 21.5}") in apps.EVENTS


@pytest.mark.parametrize(
    ("consumer", "bad", "error"),
    [
        (
            apps.CountingJson,
            b"{not json",
            "invalid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (apps.StrictJson, b"[1, 2]", "expected a JSON object, got list"),
        (apps.CountingSync, b"bad", "not a reading"),
    ],
    ids=["invalid-json", "decode_json-override", "sync-consumer"],
)
async def test_invalid_payload_is_dead_lettered_and_the_instance_keeps_its_state(
    mosquitto, run_bridge, caplog, consumer, bad, error
):
    server = await run_bridge(
        bridge_config(mosquitto.url), routes=[topic("count/{device_id}", consumer.as_asgi())]
    )
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("mqttbridge/dead-letter", qos=1)
        for payload in (b"{}", bad, b"{}"):
            device.publish("count/c1", payload, qos=1)
        record = json.loads((await next_message(device)).payload)
        await wait_until(
            lambda: sum(e[1] == "count" for e in apps.EVENTS) == 2, what="the valid messages"
        )
    assert record["topic"] == "count/c1"
    assert record["payload"] == bad.decode()
    assert record["error"] == error
    assert record["consumer"].endswith(consumer.__qualname__)
    # One consumer object saw both valid messages: its state survived the bad one.
    first = apps.EVENTS[0][0]
    assert [(ident, kind, payload) for ident, kind, _, payload in apps.EVENTS] == [
        (first, "connect", None),
        (first, "count", b"1"),
        (first, "count", b"2"),
    ]
    about_it = [r for r in caplog.records if "count/c1" in r.getMessage()]
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in about_it] == [
        (
            "WARNING",
            f"dead-lettered message on count/c1 for {record['consumer']} (device_id=c1): {error}",
            None,
        )
    ]
    assert "Traceback" not in caplog.text
    assert server.stats["instance_errors"] == 0 and server.stats["instances_started"] == 1
    assert server.stats["dead_lettered_by_app"] == 1


async def test_dead_letter_event_outside_a_message_is_an_invalid_event(mosquitto, run_bridge):
    from mqttbridge.protocol.events import InvalidEvent

    server = await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.publish("sensors/i/data", b"x", qos=1)
        await wait_until(lambda: _msgs(), what="instance")
        inst = next(iter(server.instances.values()))
        await wait_until(inst.idle, what="the message handled")
    event = {"type": "mqtt.dead_letter", "mqtt": {"error": "late"}}
    with pytest.raises(InvalidEvent, match=r"only while handling an 'mqtt\.msg'"):
        await inst.send(event)


async def test_mqttasgi_application_runs_unchanged(mosquitto, run_bridge):
    await run_bridge(
        bridge_config(mosquitto.url, protocol="3.1.1"), application=apps.MqttasgiEcho.as_asgi()
    )
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("legacy/out", qos=1)
        # The master subscribes in connect(); retry until its SUBACK is in.
        for _ in range(50):
            device.publish("legacy/in/x", b"hello", qos=1)
            if not device.messages.empty():
                break
            await asyncio.sleep(0.05)
        reply = await next_message(device)
    assert reply.payload == b"HELLO"


async def test_subscriptions_survive_a_broker_restart(mosquitto, run_bridge):
    await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    mosquitto.stop()
    mosquitto.start()
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        # A clean broker knows no subscriptions: the bridge must have re-subscribed.
        for _ in range(300):
            device.publish("sensors/r/data", b"after-restart", qos=1)
            if _msgs():
                break
            await asyncio.sleep(0.1)
    assert _msgs(), "no message handled after the broker restarted"


async def test_publish_from_the_channel_layer_with_confirm(mosquitto, run_bridge):
    import mqttbridge as bridge

    await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as listener:
        listener.subscribe("cmd/#", qos=1)
        await bridge.apublish("cmd/x", b"go", qos=1, confirm=True)
        message = await next_message(listener)
        assert (message.topic, message.payload) == ("cmd/x", b"go")
        with pytest.raises(bridge.PublishError, match="wildcards are only allowed"):
            await bridge.apublish("cmd/#", b"no")


async def test_publish_json_from_the_channel_layer_sends_json(mosquitto, run_bridge):
    import mqttbridge as bridge

    await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as listener:
        listener.subscribe("cmd/#", qos=1)
        await bridge.apublish_json("cmd/json", {"fan": "on", "°C": 26.1}, confirm=True)
        message = await next_message(listener)
        assert message.topic == "cmd/json"
        assert json.loads(message.payload) == {"fan": "on", "°C": 26.1}
        # The hint a dict payload gives names a function that exists.
        with pytest.raises(bridge.PublishError, match="or use publish_json"):
            await bridge.apublish("cmd/x", {"fan": "on"})  # type: ignore[arg-type]
        assert callable(bridge.publish_json)


async def test_shared_group_splits_messages_between_bridges(mosquitto, run_bridge):
    # Parsed twice: each bridge gets its own generated client id, as two processes would.
    first = await run_bridge(
        bridge_config(mosquitto.url, shared_group="g"), routes=[recording_route()]
    )
    second = await run_bridge(
        bridge_config(mosquitto.url, shared_group="g"), routes=[recording_route()]
    )
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        for i in range(100):
            device.publish(f"sensors/d{i % 10}/data", str(i), qos=1)
        await wait_until(lambda: len(_msgs()) >= 100, what="100 messages")
        await asyncio.sleep(0.3)
    payloads = sorted(int(e[3]) for e in _msgs())  # type: ignore[arg-type]
    assert payloads == list(range(100)), "each message handled exactly once across bridges"
    assert first.stats["instances_started"] > 0 and second.stats["instances_started"] > 0


async def test_topic_that_is_not_utf8_is_rejected_and_dead_lettered(mosquitto, run_bridge):
    import paho.mqtt.client as paho

    server = await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("mqttbridge/dead-letter", qos=1)
        # Brokers refuse such topics from clients, so hand the bridge the packet directly.
        message = paho.MQTTMessage(mid=0, topic=b"sensors/\xff/data")
        message.payload = b"x"
        server.dispatch.on_message(message)
        record = json.loads((await next_message(device)).payload)
    assert record["topic"] is None
    assert record["error"].startswith("topic is not valid UTF-8")
    assert server.stats["rejected"] == 1 and not _msgs()


async def test_routes_and_a_master_application_combine(mosquitto, run_bridge):
    server = await run_bridge(
        bridge_config(mosquitto.url, protocol="3.1.1"),
        application=apps.MqttasgiEcho.as_asgi(),
        routes=[recording_route()],
    )
    assert server.master_app is not None and server.router is not None
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("legacy/out", qos=1)
        device.publish("sensors/c1/data", b"routed", qos=1)
        for _ in range(50):
            device.publish("legacy/in/x", b"master", qos=1)
            if not device.messages.empty():
                break
            await asyncio.sleep(0.05)
        reply = await next_message(device)
        await wait_until(lambda: _msgs(), what="routed message")
    assert reply.payload == b"MASTER"
    assert _msgs()[0][3] == b"routed"


async def test_channel_name_handed_out_receives_layer_messages(mosquitto, run_bridge):
    from channels.layers import get_channel_layer

    server = await run_bridge(
        bridge_config(mosquitto.url),
        routes=[topic("cn/{device_id}", apps.ChannelNameConsumer.as_asgi())],
    )
    layer = get_channel_layer()
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/#", qos=1)
        device.publish("cn/1", b"start", qos=1)
        channel = (await next_message(device)).payload.decode()
        await layer.send(channel, {"type": "say", "text": "via layer"})
        said = await next_message(device)
        await layer.send(channel, {"type": "stop"})
        await wait_until(lambda: not server.instances, what="instance stopped by a layer handler")
    assert said.payload == b"via layer"
    assert (0, "stopped-by-layer", None, None) in apps.EVENTS


async def test_failing_connect_dead_letters_instead_of_restarting_in_a_loop(mosquitto, run_bridge):
    server = await run_bridge(
        bridge_config(mosquitto.url),
        routes=[topic("fc/{device_id}", apps.FailingConnect.as_asgi())],
    )
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("mqttbridge/dead-letter", qos=1)
        for i in range(3):
            device.publish("fc/1", f"m{i}", qos=1)
        records = [json.loads((await next_message(device)).payload) for _ in range(3)]
        await asyncio.sleep(0.3)
    assert sorted(r["payload"] for r in records) == ["m0", "m1", "m2"]
    assert all("instance failed (RuntimeError: cannot start)" in r["error"] for r in records)
    assert apps._counter["failing_connects"] <= 3  # one attempt per message at most, no loop
    assert server.stats["instance_errors"] == apps._counter["failing_connects"]


async def test_unsubscribing_a_routes_filter_keeps_the_route(mosquitto, run_bridge):
    server = await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.publish("sensors/u1/data", b"first", qos=1)
        await wait_until(lambda: _msgs(), what="instance")
        inst = next(iter(server.instances.values()))
        await inst.send({"type": "mqtt.sub", "mqtt": {"topic": "sensors/+/data", "qos": 0}})
        await inst.send({"type": "mqtt.usub", "mqtt": {"topic": "sensors/+/data"}})
        assert server.client.subscriptions["sensors/+/data"] == 1
        device.publish("sensors/u1/data", b"second", qos=1)
        await wait_until(lambda: len(_msgs()) == 2, what="message after the unsubscribe")


async def test_master_crash_records_queued_messages_and_restarts(mosquitto, run_bridge):
    server = await run_bridge(
        bridge_config(mosquitto.url, protocol="3.1.1"), application=apps.CrashingMaster.as_asgi()
    )
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("mqttbridge/dead-letter", qos=1)
        await wait_until(lambda: "master/in" in server.client.subscriptions, what="master sub")
        await asyncio.sleep(0.2)
        for payload in (b"boom", b"a", b"b"):
            device.publish("master/in", payload, qos=1)
        records = [json.loads((await next_message(device)).payload) for _ in range(3)]
        assert [r["payload"] for r in records] == ["boom", "a", "b"]
        assert records[0]["error"] == "RuntimeError: master crashed"
        assert records[1]["error"] == "not handled: the application instance ended"
        await wait_until(lambda: ("app", 0) in server.instances, what="master restarted")
        await wait_until(lambda: "master/in" in server.client.subscriptions, what="resubscribed")
        await asyncio.sleep(0.2)
        device.publish("master/in", b"after", qos=1)
        await wait_until(lambda: apps.EVENTS, what="restarted master handles messages")


async def test_layer_handler_error_does_not_dead_letter_the_mqtt_message(mosquitto, run_bridge):
    from channels.layers import get_channel_layer

    server = await run_bridge(
        bridge_config(mosquitto.url), routes=[topic("lb/{device_id}", apps.LayerBoom.as_asgi())]
    )
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/channel", qos=1)
        device.subscribe("mqttbridge/dead-letter", qos=1)
        device.publish("lb/1", b"slow", qos=1)
        channel = (await next_message(device)).payload.decode()
        await asyncio.sleep(0.05)  # the slow message is being handled now
        await get_channel_layer().send(channel, {"type": "boom"})
        await wait_until(lambda: server.stats["instance_errors"] == 1, what="layer failure")
        with pytest.raises(AssertionError):
            await next_message(device, timeout=0.5)  # no dead letter
    assert apps.EVENTS == [(0, "handled", "lb/1", b"slow")]


async def test_stop_consumer_from_a_layer_handler_is_a_clean_end(mosquitto, run_bridge):
    from channels.layers import get_channel_layer

    server = await run_bridge(
        bridge_config(mosquitto.url),
        routes=[topic("cn/{device_id}", apps.ChannelNameConsumer.as_asgi())],
    )
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/#", qos=1)
        device.publish("cn/1", b"start", qos=1)
        channel = (await next_message(device)).payload.decode()
        await get_channel_layer().send(channel, {"type": "stop"})
        await wait_until(lambda: not server.instances, what="instance ended")
    assert server.stats["instance_errors"] == 0


async def test_sync_consumer_can_hand_out_its_channel_name(mosquitto, run_bridge):
    from channels.layers import get_channel_layer

    await run_bridge(
        bridge_config(mosquitto.url),
        routes=[topic("sc/{device_id}", apps.SyncChannelName.as_asgi())],
    )
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("reply/#", qos=1)
        device.publish("sc/1", b"start", qos=1)
        channel = (await next_message(device)).payload.decode()
        await get_channel_layer().send(channel, {"type": "say", "text": "sync"})
        said = await next_message(device)
    assert said.payload == b"sync"


async def test_publish_property_of_the_wrong_type_is_an_invalid_event(mosquitto, run_bridge):
    from mqttbridge.protocol.events import InvalidEvent

    server = await run_bridge(bridge_config(mosquitto.url), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.publish("sensors/p/data", b"x", qos=1)
        await wait_until(lambda: server.instances, what="instance")
    inst = next(iter(server.instances.values()))
    event = {
        "type": "mqtt.pub",
        "mqtt": {"topic": "a/b", "payload": b"x", "properties": {"message_expiry_interval": -1}},
    }
    with pytest.raises(InvalidEvent, match="bad MQTT 5 property value"):
        await inst.send(event)


async def test_mqttasgi_master_spawns_and_kills_workers(mosquitto, run_bridge):
    """mqttasgi's own example consumer, unchanged: its master spawns a worker on 'spawn' and
    kills it on 'kill' (mqttasgi.worker.spawn / mqttasgi.worker.kill)."""
    from mqttasgi.consumers import TestMqttConsumer

    server = await run_bridge(
        bridge_config(mosquitto.url, protocol="3.1.1"), application=TestMqttConsumer.as_asgi()
    )
    await wait_until(lambda: "spawn" in server.client.subscriptions, what="master subscribed")
    await asyncio.sleep(0.2)  # SUBACK
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.publish("spawn", b"w1", qos=1)
        await wait_until(lambda: ("app", "w1") in server.instances, what="worker spawned")
        worker = server.instances[("app", "w1")]
        assert worker.scope["instance_type"] == "worker" and worker.scope["test"] == "test"
        await wait_until(lambda: "workers" in server.client.subscriptions, what="worker subscribed")
        device.publish("kill", b"w1", qos=1)
        await wait_until(lambda: ("app", "w1") not in server.instances, what="worker killed")
    assert ("app", 0) in server.instances
