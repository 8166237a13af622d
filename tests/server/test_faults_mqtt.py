"""Faults on the MQTT side, against a real private Mosquitto: a bridge SIGKILLed mid-stream, the
broker restarted, paused, and cut off behind a stalled link, publishes made while it is away.

Every wait is a condition with a deadline; the only fixed sleeps are the faults themselves
(how long the broker stays paused).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mqttbridge as bridge
from mqttbridge.config.schema import parse_config
from mqttbridge.mqtt.client import OutboundQueueFull
from mqttbridge.routing import topic
from tests import apps
from tests.bridge_fixtures import next_message, recording_route, wait_until
from tests.cli_helpers import BridgeProcess
from tests.services import PahoClient

# The smallest keepalive the config accepts: dead-link detection is 1.5 x this.
KEEPALIVE = 5


def fault_config(broker_url: str, broker_extra: str = "") -> Any:
    """MQTT 5, keepalive 5 s, fast reconnects; ``broker_extra`` adds keys under ``broker:``."""
    return parse_config(
        f"broker:\n  url: {broker_url}\n  protocol: '5'\n  keepalive: {KEEPALIVE}\n"
        f"  reconnect: {{min_delay: 0.1, max_delay: 1}}\n{broker_extra}",
        source="test_faults_mqtt.yaml",
    )


def _handled() -> list[bytes | None]:
    return [payload for _, kind, _, payload in apps.EVENTS if kind == "msg"]


async def _publish_and_see_it_handled(broker: Any, payload: bytes, timeout: float = 20.0) -> None:
    with PahoClient(broker.host, broker.port) as device:
        device.publish("sensors/f1/data", payload, qos=1)
        await wait_until(lambda: payload in _handled(), timeout, f"{payload!r} to be handled")


def _route_subscribes(broker: Any, client_id: str) -> int:
    """SUBSCRIBE packets for the route's filter that the broker logged from ``client_id``."""
    log = broker.log_path.read_text(errors="replace")
    return sum(
        line.split(": ", 1)[-1] == f"{client_id} 1 sensors/+/data" for line in log.splitlines()
    )


# Mosquitto logs each SUBSCRIBE (client id, QoS, filter) with log_type subscribe; naming any
# log_type replaces the defaults, so they are listed again.
_LOG_SUBSCRIBES = [
    f"log_type {kind}" for kind in ("error", "warning", "notice", "information", "subscribe")
]


# -- 1. at-least-once across a SIGKILL of the bridge ----------------------------------------------


@pytest.fixture
def bridge_processes() -> Iterator[list[BridgeProcess]]:
    started: list[BridgeProcess] = []
    yield started
    for process in started:
        process.close()


def _records(path: Path) -> list[tuple[str, str, bool]]:
    """DurableRecorder's lines as (topic, payload, dup); a line still being written is left out."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # the part after the last newline is not a whole line yet
    return [(t, p, d == "1") for t, p, d in (line.split(" ") for line in lines)]


async def test_sigkilled_bridge_loses_no_qos1_message_of_its_persistent_session(
    mosquitto, tmp_path, monkeypatch, bridge_processes
):
    total = 300
    record = tmp_path / "handled.txt"
    monkeypatch.setenv(apps.RECORD_ENV, str(record))  # inherited by the bridge subprocess
    config = tmp_path / "config.yaml"
    config.write_text(
        f"broker:\n  url: {mosquitto.url}\n  protocol: '5'\n  client_id: faults-at-least-once\n"
        f"  clean_start: false\n  session_expiry: 3600\n  keepalive: {KEEPALIVE}\n"
        "  reconnect: {min_delay: 0.1, max_delay: 1}\n"
        "routes:\n  - topic: durable/{device_id}\n    consumer: tests.apps:DurableRecorder\n"
        "    qos: 1\n"
    )

    def start_bridge() -> BridgeProcess:
        process = BridgeProcess("--config", str(config))
        bridge_processes.append(process)
        return process

    first = start_bridge()
    await asyncio.to_thread(first.wait_for, "bridge ready")

    expected = [f"m{i:03d}" for i in range(total)]
    infos: list[Any] = []
    publisher = PahoClient(mosquitto.host, mosquitto.port, client_id="faults-publisher")
    publisher.connect()

    def publish_all() -> None:
        # Paced, so publishing goes on while the bridge is dead (the broker queues for it).
        for i, payload in enumerate(expected):
            infos.append(publisher.client.publish(f"durable/d{i % 3}", payload, qos=1))
            time.sleep(0.005)

    thread = threading.Thread(target=publish_all, name="publisher")
    thread.start()
    try:
        await wait_until(
            lambda: len(_records(record)) >= total // 4, timeout=20, what="a quarter handled"
        )
        first.proc.kill()  # SIGKILL: no PUBACK for anything in flight, no DISCONNECT
        assert first.proc.wait(10) == -9
        handled_at_kill = len(_records(record))
        assert handled_at_kill < total, "the kill came after the stream, not in the middle"

        await asyncio.to_thread(thread.join, 20)
        for info in infos:  # the broker holds every message before the bridge is back
            await asyncio.to_thread(info.wait_for_publish, 5)
        assert len(infos) == total and all(info.is_published() for info in infos)
    finally:
        await asyncio.to_thread(thread.join, 20)
        publisher.close()

    second = start_bridge()
    await asyncio.to_thread(second.wait_for, "bridge ready")
    assert "session present: True" in "".join(second.lines), "the broker dropped the session"
    await wait_until(
        lambda: {p for _, p, _ in _records(record)} >= set(expected),
        timeout=30,
        what=f"all {total} payloads handled",
    )

    records = _records(record)
    counts = collections.Counter(p for _, p, _ in records)
    assert sorted(counts) == expected, "a payload was lost or invented"
    duplicates = sorted(p for p, n in counts.items() if n > 1)
    redelivered = [p for _, p, dup in records if dup]
    print(
        f"\n{total} messages, {handled_at_kill} handled before the SIGKILL, "
        f"{len(records)} handled in all: {len(duplicates)} duplicates {duplicates}, "
        f"{len(redelivered)} redelivered with DUP set"
    )
    # What was in flight at the kill comes back with DUP set (MQTT 5 4.4, 3.3.1.1).
    assert redelivered, "nothing was redelivered with DUP after reconnecting to the session"
    for payload in duplicates:
        later = [dup for _, p, dup in records if p == payload][1:]
        assert all(later), f"{payload} handled again without DUP set: {later}"
    assert "Traceback" not in "".join(first.lines + second.lines)


# -- 2. broker restarted (SIGTERM) or crashed (SIGKILL) on the same port --------------------------


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_bridge_resubscribes_after_broker_restart_and_shuts_down_promptly(
    mosquitto_factory, run_bridge, how
):
    broker = mosquitto_factory(extra_config=_LOG_SUBSCRIBES)
    server = await run_bridge(fault_config(broker.url), routes=[recording_route()])
    await _publish_and_see_it_handled(broker, b"before")
    assert _route_subscribes(broker, server.client_id) == 1

    await asyncio.to_thread(broker.stop if how == "sigterm" else broker.kill)
    await wait_until(lambda: not server.client.connected, what="the bridge to see the broker go")
    assert not server.ready.is_set()
    await asyncio.to_thread(broker.start)  # same port, and no session for the bridge
    await wait_until(server.ready.is_set, timeout=20, what="the bridge to reconnect")

    # The broker itself logged the route's SUBSCRIBE again, and routes messages to it.
    assert _route_subscribes(broker, server.client_id) == 2
    await _publish_and_see_it_handled(broker, b"after")
    assert _handled() == [b"before", b"after"]

    await asyncio.wait_for(server.shutdown(), 5)
    assert server._tasks == set(), f"bridge tasks still running: {server._tasks}"
    assert server.client._connector is None or server.client._connector.done()
    assert not server.instances
    others = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and not task.done()
    ]
    assert others == [], f"tasks left running after shutdown: {others}"


# -- 3. broker paused (SIGSTOP) for longer than the keepalive -------------------------------------


async def test_paused_broker_is_dropped_as_a_dead_link_and_the_bridge_recovers(
    mosquitto, run_bridge, caplog
):
    server = await run_bridge(fault_config(mosquitto.url), routes=[recording_route()])
    await _publish_and_see_it_handled(mosquitto, b"before")

    pause = 9.0  # well past 1.5 x keepalive, so the bridge must notice
    await asyncio.to_thread(mosquitto.pause)
    paused_at = time.monotonic()
    try:
        await wait_until(
            lambda: server.client.stats["dead_links"] >= 1,
            timeout=pause,
            what="the bridge to drop the dead connection",
        )
        detected = time.monotonic() - paused_at
        await asyncio.sleep(pause - detected)  # the fault: keep the broker stopped
    finally:
        await asyncio.to_thread(mosquitto.resume)
    assert detected < 2 * KEEPALIVE
    assert "dropping the dead connection" in caplog.text

    await wait_until(server.ready.is_set, timeout=15, what="the bridge to reconnect")
    await _publish_and_see_it_handled(mosquitto, b"after")
    assert _handled() == [b"before", b"after"]


# -- 4. publishes made while the broker is down ---------------------------------------------------


def _offline_subscriber(broker: Any, client_id: str, topic_filter: str) -> None:
    """Leave a persistent QoS 1 subscription behind: the broker queues for it while it is away
    and (persistence, SIGTERM) across its own restart."""
    with PahoClient(broker.host, broker.port, client_id=client_id, clean_session=False) as sub:
        sub.subscribe(topic_filter, qos=1)


async def test_publishes_queued_while_disconnected_arrive_in_order_after_reconnect(
    mosquitto, run_bridge
):
    count = 200
    server = await run_bridge(fault_config(mosquitto.url, f"  outbound_queue: {count}\n"))
    _offline_subscriber(mosquitto, "faults-order-sub", "cmd/#")
    await asyncio.to_thread(mosquitto.stop)
    await wait_until(lambda: not server.client.connected, what="the bridge to see the broker go")

    confirms = [
        server.client.publish("cmd/order", f"q{i:03d}".encode(), 1, confirm=True)
        for i in range(count)
    ]
    assert server.client.stats["outbound_queued"] == count
    assert not any(future.done() for future in confirms), "confirmed with no broker"

    await asyncio.to_thread(mosquitto.start)
    await asyncio.wait_for(asyncio.gather(*confirms), 10)  # every PUBACK came
    with PahoClient(
        mosquitto.host, mosquitto.port, client_id="faults-order-sub", clean_session=False
    ) as sub:
        assert sub.session_present
        received = [(await next_message(sub)).payload for _ in range(count)]
    assert received == [f"q{i:03d}".encode() for i in range(count)]


async def test_a_publish_racing_the_reconnect_does_not_overtake_the_queued_ones(
    mosquitto, run_bridge
):
    server = await run_bridge(fault_config(mosquitto.url))
    _offline_subscriber(mosquitto, "faults-race-sub", "cmd/#")
    await asyncio.to_thread(mosquitto.stop)
    await wait_until(lambda: not server.client.connected, what="the bridge to see the broker go")
    queued = [f"q{i:02d}".encode() for i in range(20)]
    for payload in queued:
        server.client.publish("cmd/race", payload, 1)

    async def publish_once_connected() -> None:
        # Ready in every loop iteration, as a busy producer is: it runs in the first iteration
        # after the CONNACK, ahead of anything the CONNACK callback scheduled.
        while not server.client.connected:
            await asyncio.sleep(0)
        confirm = server.client.publish("cmd/race", b"racer", 1, confirm=True)
        assert confirm is not None
        await asyncio.wait_for(confirm, 10)

    racer = asyncio.ensure_future(publish_once_connected())
    await asyncio.to_thread(mosquitto.start)
    await asyncio.wait_for(racer, 10)
    with PahoClient(
        mosquitto.host, mosquitto.port, client_id="faults-race-sub", clean_session=False
    ) as sub:
        received = [(await next_message(sub)).payload for _ in range(len(queued) + 1)]
    assert received == [*queued, b"racer"]


async def test_outbound_queue_bound_refuses_publishes_loudly(mosquitto, run_bridge):
    server = await run_bridge(fault_config(mosquitto.url, "  outbound_queue: 3\n"))
    _offline_subscriber(mosquitto, "faults-bound-sub", "cmd/#")
    await asyncio.to_thread(mosquitto.stop)
    await wait_until(lambda: not server.client.connected, what="the bridge to see the broker go")

    # Three publishes from Django code over the channel layer fill the queue, in order.
    confirms = []
    for i in range(3):
        confirms.append(
            asyncio.ensure_future(bridge.apublish("cmd/q", f"q{i}", qos=1, confirm=True))
        )
        await wait_until(
            lambda n=i + 1: server.client.stats["outbound_queued"] == n, what=f"q{i} queued"
        )
    # The fourth is refused, never dropped silently: from the layer and from the client alike.
    with pytest.raises(bridge.PublishError, match=r"outbound queue is full \(3 messages"):
        await bridge.apublish("cmd/q", "q3", qos=1, confirm=True)
    with pytest.raises(OutboundQueueFull, match=r"broker\.outbound_queue"):
        server.client.publish("cmd/q", b"q4", 1)
    assert server.client.stats["outbound_rejected"] == 2
    assert not any(confirm.done() for confirm in confirms)

    await asyncio.to_thread(mosquitto.start)
    await asyncio.wait_for(asyncio.gather(*confirms), 10)  # confirm=True returns once PUBACKed
    await bridge.apublish("cmd/q", "after", qos=1, confirm=True)
    with PahoClient(
        mosquitto.host, mosquitto.port, client_id="faults-bound-sub", clean_session=False
    ) as sub:
        received = [(await next_message(sub)).payload for _ in range(4)]
    # "after" went out last, so nothing else (no q3, no q4) came in between.
    assert received == [b"q0", b"q1", b"q2", b"after"]


# -- 5. a link that stalls: open, but nothing moves -----------------------------------------------


async def test_stalled_link_is_dropped_within_two_keepalives_and_the_bridge_reconnects(
    mosquitto, tcp_proxy, run_bridge
):
    proxy = tcp_proxy(mosquitto.host, mosquitto.port)
    server = await run_bridge(fault_config(proxy.url), routes=[recording_route()])
    await _publish_and_see_it_handled(mosquitto, b"before")

    await asyncio.to_thread(proxy.stall)
    stalled_at = time.monotonic()
    await wait_until(
        lambda: server.client.stats["dead_links"] >= 1,
        timeout=2 * KEEPALIVE,
        what="the bridge to drop the stalled link",
    )
    elapsed = time.monotonic() - stalled_at
    # 1.5 x keepalive of silence, checked every 0.5 s.
    assert elapsed < 2 * KEEPALIVE, f"dead link detected after {elapsed:.1f} s"
    await wait_until(lambda: not server.client.connected, what="the connection to be closed")

    await asyncio.to_thread(proxy.unstall)  # the network heals: the reconnect can get through
    await wait_until(server.ready.is_set, timeout=20, what="the bridge to reconnect")
    assert proxy.accepted >= 2
    await _publish_and_see_it_handled(mosquitto, b"after")
    assert _handled() == [b"before", b"after"]


# -- scale-out: bridges sharing routes through $share subscriptions -------------------------------


async def test_shared_group_bridges_split_the_load_and_survive_a_member_kill(
    mosquitto, tmp_path, monkeypatch, bridge_processes
):
    def start_bridge(name: str) -> tuple[BridgeProcess, Path]:
        record = tmp_path / f"{name}.txt"
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            f"broker:\n  url: {mosquitto.url}\n  protocol: '5'\n  client_id: scale-{name}\n"
            f"  shared_group: fleet\n  keepalive: {KEEPALIVE}\n"
            "routes:\n  - topic: durable/{device_id}\n    consumer: tests.apps:DurableRecorder\n"
        )
        monkeypatch.setenv(apps.RECORD_ENV, str(record))  # read when the process starts
        process = BridgeProcess("--config", str(config))
        bridge_processes.append(process)
        return process, record

    (first, first_record), (second, second_record) = start_bridge("a"), start_bridge("b")
    for process in (first, second):
        await asyncio.to_thread(process.wait_for, "bridge ready")

    def payloads(path: Path) -> list[str]:
        return [p for _, p, _ in _records(path)]

    with PahoClient(mosquitto.host, mosquitto.port) as device:
        for i in range(100):
            device.publish(f"durable/d{i % 10}", f"m{i:03d}", qos=1)
        await wait_until(
            lambda: len(payloads(first_record)) + len(payloads(second_record)) >= 100,
            timeout=20,
            what="the first 100 handled",
        )
        both = payloads(first_record) + payloads(second_record)
        assert sorted(both) == [f"m{i:03d}" for i in range(100)], "each handled exactly once"
        assert payloads(first_record) and payloads(second_record), "one bridge got everything"

        first.proc.kill()
        assert first.proc.wait(10) == -9
        for i in range(100, 200):
            device.publish(f"durable/d{i % 10}", f"m{i:03d}", qos=1)
        after_kill = {f"m{i:03d}" for i in range(100, 200)}
        await wait_until(
            lambda: after_kill <= set(payloads(second_record)),
            timeout=20,
            what="the survivor to handle everything published after the kill",
        )
    assert "Traceback" not in "".join(second.lines)


# -- what survives a reconnect, and what is never redelivered -------------------------------------


async def test_instances_and_dynamic_subscriptions_survive_a_broker_restart(mosquitto, run_bridge):
    server = await run_bridge(
        fault_config(mosquitto.url),
        routes=[recording_route()],
        application=apps.MqttasgiEcho.as_asgi(),
    )
    await wait_until(lambda: "legacy/in/#" in server.client.subscriptions, what="master sub")
    await _publish_and_see_it_handled(mosquitto, b"before")
    instance = server.instances[("sensors/{device_id}/data", "f1")]
    mosquitto.stop()
    mosquitto.start()
    await wait_until(lambda: server.client.stats["connects"] == 2, what="a reconnect")
    await asyncio.wait_for(server.ready.wait(), 10)  # and re-subscribed
    await _publish_and_see_it_handled(mosquitto, b"after")
    assert server.instances[("sensors/{device_id}/data", "f1")] is instance, "instance replaced"
    assert [kind for _, kind, _, _ in apps.EVENTS].count("connect") == 1
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("legacy/out", qos=1)
        device.publish("legacy/in/x", b"dynamic", qos=1)  # the master's own mqtt.sub
        assert (await next_message(device)).payload == b"DYNAMIC"


async def test_a_poison_message_is_not_redelivered_to_a_persistent_session(mosquitto, run_bridge):
    extra = "  client_id: poison-session\n  clean_start: false\n  session_expiry: 3600\n"
    first = await run_bridge(fault_config(mosquitto.url, extra), routes=[recording_route()])
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("mqttbridge/dead-letter", qos=1)
        device.publish("sensors/p/data", b"boom", qos=1)
        await next_message(device)  # dead-lettered, and so acknowledged
        await first.shutdown()
        await run_bridge(fault_config(mosquitto.url, extra), routes=[recording_route()])
        device.publish("sensors/p/data", b"next", qos=1)
        await wait_until(lambda: b"next" in _handled(), what="the next message")
        with pytest.raises(AssertionError):
            await next_message(device, timeout=0.5)  # no second dead letter
    assert _handled().count(b"boom") == 1


async def test_an_invalid_payload_is_acknowledged_not_redelivered_to_a_persistent_session(
    mosquitto, run_bridge
):
    # The instance lives on after a bad payload, so the ack comes from its next receive().
    extra = "  client_id: invalid-session\n  clean_start: false\n  session_expiry: 3600\n"
    route = [topic("count/{device_id}", apps.CountingJson.as_asgi())]
    first = await run_bridge(fault_config(mosquitto.url, extra), routes=route)
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("mqttbridge/dead-letter", qos=1)
        device.publish("count/c1", b"{oops", qos=1)
        await next_message(device)  # dead-lettered
        await wait_until(lambda: not first.acks, what="the bad message acknowledged")
        await first.shutdown()
        await run_bridge(fault_config(mosquitto.url, extra), routes=route)
        device.publish("count/c1", b"{}", qos=1)
        await wait_until(lambda: any(e[1] == "count" for e in apps.EVENTS), what="the next message")
        with pytest.raises(AssertionError):
            await next_message(device, timeout=0.5)  # no second dead letter


async def test_the_brokers_receive_maximum_bounds_publishes_in_flight(
    mosquitto_factory, run_bridge
):
    # Mosquitto announces max_inflight_messages as its Receive Maximum to MQTT 5 clients;
    # sending more QoS 1 publishes unacknowledged than that is a protocol error.
    broker = mosquitto_factory(extra_config=["max_inflight_messages 5"])
    server = await run_bridge(fault_config(broker.url), routes=[recording_route()])
    assert server.client._client._max_inflight_messages == 5
    with PahoClient(broker.host, broker.port) as listener:
        listener.subscribe("burst/#", qos=1)
        futures = [server.client.publish(f"burst/{i}", b"x", 1, confirm=True) for i in range(200)]
        await asyncio.wait_for(asyncio.gather(*futures), 20)
        topics = [(await next_message(listener)).topic for _ in range(200)]
    assert topics == [f"burst/{i}" for i in range(200)]
    assert server.client.stats["connects"] == 1, "the broker dropped the bridge"
