"""Canaries for the libraries' private parts the bridge relies on, one test per dependency.

Each private attribute or method below is used by our code for speed or for a fix the library
lacks; pyproject.toml pins the library to the releases checked here. A rename in a new release
would not fail loudly where it is used: an override that paho no longer calls, or an attribute
set that paho no longer reads, just stops working. These tests fail first, naming the attribute,
the module that uses it and the pin to move once the code is re-read against the new release.
(amqtt's are checked in tests/broker/test_embedded.py::
test_amqtt_private_methods_we_override_are_still_there.)
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _pin(distribution: str) -> SpecifierSet:
    """The version range pyproject.toml's dependencies give ``distribution``."""
    match = re.search(rf'"{re.escape(distribution)}([<>=!~][^"]*)"', PYPROJECT.read_text())
    assert match, f"pyproject.toml does not pin {distribution}"
    return SpecifierSet(match.group(1))


def _moved(distribution: str, what: str, user: str) -> str:
    version = importlib.metadata.version(distribution)
    return (
        f"{distribution} {version}: {what}, which {user} relies on, moved. Re-read "
        f"{distribution} {version}, update {user}, then the pin {distribution}{_pin(distribution)}"
        " in pyproject.toml and this test."
    )


@pytest.mark.parametrize(
    ("distribution", "widest"),
    [
        # Minor releases may reshape private parts: the upper bound stops before the next one.
        ("paho-mqtt", "<2.3"),
        ("channels", "<4.4"),
        ("channels-redis", "<4.4"),
        ("amqtt", "<0.13"),
    ],
)
def test_installed_version_is_within_the_pin_checked_here(distribution: str, widest: str) -> None:
    pin = _pin(distribution)
    assert widest in str(pin).split(","), f"{distribution}{pin}: keep the upper bound {widest}"
    installed = importlib.metadata.version(distribution)
    assert installed in pin, f"{distribution} {installed} is installed; pyproject pins {pin}"


# --- paho-mqtt: bridge/mqtt/client.py ---------------------------------------------------------

CLIENT_PY = "bridge/mqtt/client.py"


def _calls(function: Callable[..., Any], call: str) -> bool:
    return call in inspect.getsource(function)


def test_paho_still_reads_the_socket_through_sock_recv() -> None:
    # BufferedClient overrides _sock_recv(bufsize) to serve paho's three reads per packet from
    # one 64 KiB recv; paho must still call it for every read of a packet.
    from paho.mqtt.client import Client

    what = "Client._sock_recv(bufsize), called by Client._packet_read"
    assert list(inspect.signature(Client._sock_recv).parameters) == ["self", "bufsize"], _moved(
        "paho-mqtt", what, CLIENT_PY
    )
    assert _calls(Client._packet_read, "self._sock_recv("), _moved("paho-mqtt", what, CLIENT_PY)


def test_paho_still_delivers_messages_through_handle_on_message() -> None:
    # BufferedClient overrides _handle_on_message(message) to skip paho's per-filter callback
    # matcher, reading _on_message and _userdata itself.
    from paho.mqtt.client import Client

    what = "Client._handle_on_message(message), called by Client._handle_publish"
    parameters = list(inspect.signature(Client._handle_on_message).parameters)
    assert parameters == ["self", "message"], _moved("paho-mqtt", what, CLIENT_PY)
    assert _calls(Client._handle_publish, "self._handle_on_message("), _moved(
        "paho-mqtt", what, CLIENT_PY
    )


def test_paho_client_attributes_the_bridge_reads_and_sets() -> None:
    from paho.mqtt.client import Client, MQTTMessage
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2, userdata="ours")

    def on_message(*_: Any) -> None: ...

    client.on_message = on_message
    context = ssl.create_default_context()
    client.tls_set_context(context)
    client.max_inflight_messages_set(7)
    # Each: (private attribute, what the public API put there, why the bridge touches it).
    expected = {
        "_on_message": (on_message, "read by BufferedClient._handle_on_message"),
        "_userdata": ("ours", "read by BufferedClient._handle_on_message"),
        "_ssl_context": (context, "read to tell why a TLS connection failed"),
        "_max_inflight_messages": (7, "set from the broker's Receive Maximum after CONNACK"),
        "_ping_t": (0, "zeroed while reading is paused, so paho keeps pinging"),
    }
    for name, (value, why) in expected.items():
        assert getattr(client, name, "missing") == value, _moved(
            "paho-mqtt", f"Client.{name} ({why})", CLIENT_PY
        )
    assert _calls(Client._check_keepalive, "self._ping_t"), _moved(
        "paho-mqtt", "Client._ping_t, read by Client._check_keepalive", CLIENT_PY
    )
    assert _calls(Client._handle_publish, "self._max_inflight_messages") or _calls(
        Client._update_inflight, "self._max_inflight_messages"
    ), _moved("paho-mqtt", "Client._max_inflight_messages", CLIENT_PY)
    message = MQTTMessage(topic=b"sensors/t1")
    assert message._topic == b"sensors/t1", _moved(
        "paho-mqtt", "MQTTMessage._topic (the raw topic bytes, logged)", CLIENT_PY
    )


# --- channels: bridge/layers/memory.py --------------------------------------------------------


async def test_channels_in_memory_layer_still_sweeps_through_clean_expired() -> None:
    # mqttbridge.layers.memory.InMemoryChannelLayer overrides _clean_expired() to sweep at most
    # once a second; channels must still call it from receive() and group_send().
    from channels.layers import InMemoryChannelLayer

    sweeps: list[str] = []

    class Counting(InMemoryChannelLayer):  # type: ignore[misc]
        def _clean_expired(self) -> None:
            sweeps.append("sweep")
            super()._clean_expired()

    layer = Counting()
    await layer.send("c", {"type": "t"})
    await layer.receive("c")
    after_receive = len(sweeps)
    await layer.group_send("g", {"type": "t"})
    what = "InMemoryChannelLayer._clean_expired(), called by receive() and group_send()"
    assert after_receive >= 1, _moved("channels", what, "bridge/layers/memory.py")
    assert len(sweeps) > after_receive, _moved("channels", what, "bridge/layers/memory.py")


# --- channels_redis: bridge/layers/redis.py and redis_timeouts.py -----------------------------


def test_channels_redis_layer_parts_the_bridge_layer_uses() -> None:
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1/0"], prefix="p:", expiry=30)
    user = "bridge/layers/redis.py"
    # Our send() and receive_many() pick a connection as channels_redis does, and write and
    # read its storage directly: one sorted set per channel, prefix + name.
    for name in ("_send_index_generator", "_receive_index_generator"):
        assert next(getattr(layer, name, iter(["missing"]))) == 0, _moved(
            "channels-redis", f"RedisChannelLayer.{name} (an itertools.cycle of host indexes)", user
        )
    assert (layer.prefix, layer.expiry, layer.brpop_timeout) == ("p:", 30, 5), _moved(
        "channels-redis", "RedisChannelLayer.prefix / expiry / brpop_timeout", user
    )
    assert list(inspect.signature(layer.connection).parameters) == ["index"], _moved(
        "channels-redis", "RedisChannelLayer.connection(index)", user
    )
    message = {"type": "t", "n": 1}
    assert layer.deserialize(layer.serialize(message)) == message, _moved(
        "channels-redis", "RedisChannelLayer.serialize / deserialize", user
    )
    # redis_timeouts rewrites hosts: a list of dicts of redis-py connection arguments.
    assert layer.hosts == [{"address": "redis://127.0.0.1:1/0"}], _moved(
        "channels-redis", "RedisChannelLayer.hosts", "bridge/layers/redis_timeouts.py"
    )
    send = inspect.getsource(RedisChannelLayer.send)
    assert "zadd" in send and "zremrangebyscore" in send, _moved(
        "channels-redis",
        "send()'s storage (ZREMRANGEBYSCORE, ZCOUNT, ZADD, EXPIRE), which our Lua script repeats",
        user,
    )


async def test_channels_redis_reads_what_the_bridge_layer_wrote_and_back(redis_server) -> None:
    # The same storage, end to end: the bridge layer's send() is read by stock receive() (a
    # Django process on stock channels_redis, the bridge on ours) and the other way round.
    from channels_redis.core import RedisChannelLayer

    from mqttbridge.layers.redis import RedisChannelLayer as BridgeLayer

    ours, stock = BridgeLayer(hosts=[redis_server.url]), RedisChannelLayer(hosts=[redis_server.url])
    try:
        await ours.send("to.stock", {"type": "t", "n": 1})
        assert await stock.receive("to.stock") == {"type": "t", "n": 1}, _moved(
            "channels-redis", "the channel storage our send() writes", "bridge/layers/redis.py"
        )
        await stock.send("to.ours", {"type": "t", "n": 2})
        assert await ours.receive_many("to.ours") == [{"type": "t", "n": 2}], _moved(
            "channels-redis", "the channel storage receive_many() reads", "bridge/layers/redis.py"
        )
    finally:
        await ours.flush()
        await ours.close_pools()
        await stock.close_pools()


# --- channels: consumers/base.py ---------------------------------------------------------------


def test_channels_consumer_parts_the_mqtt_consumers_use() -> None:
    # consumers/base.py replaces AsyncConsumer.__call__ and dispatch but keeps channels' handler
    # naming and as_asgi().
    from channels.consumer import AsyncConsumer, get_handler_name

    user = "consumers/base.py"
    assert get_handler_name({"type": "mqtt.msg"}) == "mqtt_msg", _moved(
        "channels", "channels.consumer.get_handler_name", user
    )
    assert "channel_layer_alias" in vars(AsyncConsumer), _moved(
        "channels", "AsyncConsumer.channel_layer_alias", user
    )
    assert list(inspect.signature(AsyncConsumer.__call__).parameters) == [
        "self",
        "scope",
        "receive",
        "send",
    ], _moved("channels", "AsyncConsumer.__call__(scope, receive, send)", user)
