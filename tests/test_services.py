"""The service helpers do what fault tests rely on: real brokers that die, stall and recover."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable

import pytest
import redis

from tests.services import (
    MosquittoProcess,
    PahoClient,
    RedisProcess,
    ServiceStartError,
    TcpProxy,
    free_port,
    mqtt_ping,
    redis_ping,
)

ProxyFactory = Callable[[str, int], TcpProxy]


def unique(prefix: str) -> str:
    """Topics and client ids that cannot collide with other tests on the shared broker."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert port not in (1883, 6379)


def test_mosquitto_runs_privately_and_round_trips_a_publish(
    shared_mosquitto: MosquittoProcess,
) -> None:
    assert shared_mosquitto.port != 1883
    assert shared_mosquitto.url == f"mqtt://127.0.0.1:{shared_mosquitto.port}"
    topic = unique("roundtrip") + "/x"
    with PahoClient(shared_mosquitto.host, shared_mosquitto.port) as client:
        client.subscribe(topic, qos=1)
        client.publish(topic, b"hello", qos=1)
        message = client.next_message()
    assert (message.topic, message.payload, message.qos) == (topic, b"hello", 1)


def test_mosquitto_restart_keeps_port_and_persistent_sessions(
    mosquitto: MosquittoProcess,
) -> None:
    port, client_id, topic = mosquitto.port, unique("persistent"), unique("queued")
    offline = PahoClient(mosquitto.host, port, client_id=client_id, clean_session=False)
    offline.connect()
    offline.subscribe(topic, qos=1)
    offline.close()
    with PahoClient(mosquitto.host, port) as publisher:
        publisher.publish(topic, b"while you were out", qos=1)

    mosquitto.restart()

    assert mosquitto.port == port
    back = PahoClient(mosquitto.host, port, client_id=client_id, clean_session=False)
    with back:
        assert back.session_present is True, mosquitto.log_tail()
        assert back.next_message().payload == b"while you were out"


def test_mosquitto_kill_loses_sessions_unless_saved_first(mosquitto: MosquittoProcess) -> None:
    client_id, topic = unique("crash"), unique("crash")

    def subscribe_offline() -> None:
        with PahoClient(
            mosquitto.host, mosquitto.port, client_id=client_id, clean_session=False
        ) as c:
            c.subscribe(topic, qos=1)

    def session_present_after_restart() -> bool | None:
        with PahoClient(
            mosquitto.host, mosquitto.port, client_id=client_id, clean_session=False
        ) as c:
            return c.session_present

    subscribe_offline()
    mosquitto.kill()
    mosquitto.start()
    assert session_present_after_restart() is False  # autosave_interval 0: nothing on disk

    subscribe_offline()
    mosquitto.save()
    mosquitto.kill()
    mosquitto.start()
    assert session_present_after_restart() is True


def test_mosquitto_kill_then_start_serves_again(mosquitto: MosquittoProcess) -> None:
    old_pid = mosquitto.pid
    mosquitto.kill()
    assert not mosquitto.running
    assert not mqtt_ping(mosquitto.host, mosquitto.port, timeout=0.5)
    mosquitto.start()
    assert mosquitto.pid != old_pid
    assert mosquitto.ping()


def test_mosquitto_pause_holds_connack_and_resume_delivers_it(
    mosquitto: MosquittoProcess,
) -> None:
    mosquitto.pause()
    assert mosquitto.paused
    assert not mosquitto.ping(timeout=0.3)
    client = PahoClient(mosquitto.host, mosquitto.port)
    try:
        # The kernel accepts the TCP connection for the stopped broker; only CONNACK is missing.
        with pytest.raises(TimeoutError, match="no CONNACK"):
            client.connect(wait=0.3)
        mosquitto.resume()
        assert client.connected.wait(5), mosquitto.log_tail()
    finally:
        client.close()
    assert not mosquitto.paused


def test_mosquitto_stop_of_a_paused_broker_does_not_hang(mosquitto: MosquittoProcess) -> None:
    mosquitto.pause()
    mosquitto.stop(timeout=3)
    assert not mosquitto.running


def test_mosquitto_start_failure_reports_the_log(
    mosquitto_factory: Callable[..., MosquittoProcess],
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        broker = mosquitto_factory(start=False, port=squatter.getsockname()[1])
        with pytest.raises(ServiceStartError, match=r"(?s)exited with code .*in use"):
            broker.start(timeout=5)


def test_mosquitto_websockets_listener_answers(
    mosquitto_factory: Callable[..., MosquittoProcess],
) -> None:
    broker = mosquitto_factory(websockets=True)
    assert broker.ws_port is not None
    topic = unique("ws")
    with PahoClient(broker.host, broker.ws_port, transport="websockets") as client:
        client.subscribe(topic)
        client.publish(topic, b"over ws")
        assert client.next_message().payload == b"over ws"


def test_redis_pings_and_survives_kill_and_restart(redis_server: RedisProcess) -> None:
    assert redis_server.port != 6379
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    assert client.ping()
    client.set("k", "v")
    port = redis_server.port

    redis_server.kill()
    assert not redis_ping(redis_server.host, port, timeout=0.3)
    redis_server.start()
    assert redis_server.port == port
    # No persistence: a restarted Redis is empty, which is what fault tests assume.
    assert client.get("k") is None

    redis_server.restart()
    assert client.ping()
    client.close()


def test_redis_pause_times_out_and_resume_recovers(redis_server: RedisProcess) -> None:
    redis_server.pause()
    assert not redis_server.ping(timeout=0.3)
    redis_server.resume()
    assert redis_server.ping()


def test_proxy_forwards_mqtt_both_ways(
    shared_mosquitto: MosquittoProcess, tcp_proxy: ProxyFactory
) -> None:
    proxy = tcp_proxy(shared_mosquitto.host, shared_mosquitto.port)
    topic = unique("proxied")
    with PahoClient(proxy.host, proxy.port) as client:
        client.subscribe(topic, qos=1)
        client.publish(topic, b"x" * 300_000, qos=1)  # larger than one recv, exercises buffering
        assert client.next_message().payload == b"x" * 300_000
    assert proxy.accepted == 1


def test_proxy_drop_connections_disconnects_the_client(
    shared_mosquitto: MosquittoProcess, tcp_proxy: ProxyFactory
) -> None:
    proxy = tcp_proxy(shared_mosquitto.host, shared_mosquitto.port)
    client = PahoClient(proxy.host, proxy.port, reconnect_on_failure=False)
    client.connect()
    try:
        assert proxy.connection_count == 1
        proxy.drop_connections()
        assert client.disconnected.wait(5)
        assert proxy.connection_count == 0
        assert mqtt_ping(proxy.host, proxy.port), "the proxy accepts new connections after a drop"
    finally:
        client.close()


def test_proxy_stall_holds_bytes_until_unstall(
    shared_mosquitto: MosquittoProcess, tcp_proxy: ProxyFactory
) -> None:
    proxy = tcp_proxy(shared_mosquitto.host, shared_mosquitto.port)
    proxy.stall()
    assert not mqtt_ping(proxy.host, proxy.port, timeout=0.3)

    answered = threading.Event()

    def ping_through_proxy() -> None:
        if mqtt_ping(proxy.host, proxy.port, timeout=5):
            answered.set()

    waiter = threading.Thread(target=ping_through_proxy)
    waiter.start()
    assert not answered.wait(0.3)
    proxy.unstall()
    waiter.join()
    assert answered.is_set()


def test_proxy_to_a_dead_target_resets_the_client(tcp_proxy: ProxyFactory) -> None:
    proxy = tcp_proxy("127.0.0.1", free_port())
    assert not mqtt_ping(proxy.host, proxy.port, timeout=1)
