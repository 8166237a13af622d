"""The broker connection: queueing while disconnected, confirmations, re-subscribing.

Without a broker: what ``MqttClient`` does before it ever connects. With one: a private
Mosquitto per test (``mosquitto`` fixture), and a paho client on its own thread to watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import paho.mqtt.client as paho
import pytest

from mqttbridge.config.schema import BrokerConfig, ReconnectConfig
from mqttbridge.mqtt.client import ConnectionLost, MqttClient, OutboundQueueFull
from tests.services import MosquittoProcess, PahoClient, free_port

QUICK = ReconnectConfig(min_delay=0.05, max_delay=0.2)


def config(port: int, **options: Any) -> BrokerConfig:
    options.setdefault("reconnect", QUICK)
    return BrokerConfig(url=f"mqtt://127.0.0.1:{port}", client_id="client-under-test", **options)


class Inbox:
    """What the client under test received, awaitable."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[paho.MQTTMessage] = asyncio.Queue()

    def __call__(self, message: paho.MQTTMessage) -> None:
        self.messages.put_nowait(message)

    async def next(self, timeout: float = 5.0) -> tuple[str, bytes]:
        message = await asyncio.wait_for(self.messages.get(), timeout)
        return message.topic, message.payload


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def started() -> AsyncIterator[Callable[[BrokerConfig, Inbox], Any]]:
    clients: list[MqttClient] = []

    async def start(cfg: BrokerConfig, inbox: Inbox) -> MqttClient:
        client = MqttClient(cfg, inbox)
        clients.append(client)
        await client.start()
        return client

    yield start
    for client in clients:
        await client.stop()


# --- before any broker answers -----------------------------------------------------------------


async def test_publishes_queue_while_disconnected_up_to_outbound_queue() -> None:
    client = MqttClient(config(free_port(), outbound_queue=2), Inbox())
    assert client.publish("a", b"1") is None
    assert client.publish("a", b"2") is None
    with pytest.raises(OutboundQueueFull) as full:
        client.publish("a", b"3")
    assert str(full.value) == (
        f"broker {client.broker} is unreachable and the outbound queue is full "
        "(2 messages, broker.outbound_queue)"
    )
    assert (client.stats["outbound_queued"], client.stats["outbound_rejected"]) == (2, 1)


async def test_stop_fails_the_confirmations_of_what_was_never_sent() -> None:
    client = MqttClient(config(free_port()), Inbox())
    await client.start()
    confirmation = client.publish("a", b"1", confirm=True)
    assert confirmation is not None
    await client.stop()
    with pytest.raises(ConnectionLost, match="the bridge shut down before sending it"):
        await confirmation


async def test_filters_are_remembered_while_disconnected() -> None:
    client = MqttClient(config(free_port()), Inbox())
    assert client.subscribe("a/+", 1) is None  # no SUBACK to wait for yet
    client.subscribe("b/#", 0)
    client.unsubscribe("a/+")
    assert client.subscriptions == {"b/#": 0}


# --- against Mosquitto ------------------------------------------------------------------------


async def test_subscribes_receives_and_confirms_a_publish(
    mosquitto: MosquittoProcess, started: Any
) -> None:
    inbox = Inbox()
    client = await started(config(mosquitto.port), inbox)
    await wait_until(lambda: client.connected)
    suback = client.subscribe("in/+", 1)
    assert suback is not None and not (await suback)[0].is_failure
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.connect()
        device.subscribe("out/#", qos=1)
        device.publish("in/t1", b"reading", qos=1)
        assert await inbox.next() == ("in/t1", b"reading")
        confirmation = client.publish("out/t1", b"command", qos=1, confirm=True)
        assert confirmation is not None
        await asyncio.wait_for(confirmation, 5)  # PUBACK came
        message = await asyncio.to_thread(device.next_message)
        assert (message.topic, message.payload) == ("out/t1", b"command")


async def test_what_was_queued_before_the_broker_came_up_goes_out_in_order(
    mosquitto_factory: Callable[..., MosquittoProcess], started: Any
) -> None:
    broker = mosquitto_factory(start=False, port=free_port())
    inbox = Inbox()
    client = await started(config(broker.port), inbox)
    client.subscribe("q/#", 1)  # sent on connect, before the queue drains
    for n in range(5):
        client.publish("q/t1", b"%d" % n, qos=1)
    broker.start()
    received = [await inbox.next(timeout=10) for _ in range(5)]
    assert received == [("q/t1", b"%d" % n) for n in range(5)]
    assert client.stats["connects"] == 1


async def test_every_filter_is_subscribed_again_after_the_broker_restarts(
    mosquitto: MosquittoProcess, started: Any
) -> None:
    inbox = Inbox()
    client = await started(config(mosquitto.port), inbox)  # clean start: the broker forgets us
    await wait_until(lambda: client.connected)
    suback = client.subscribe("r/+", 1)
    assert suback is not None
    await suback
    mosquitto.restart()
    await wait_until(lambda: client.stats["connects"] == 2)
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.connect()
        device.publish("r/t1", b"after restart", qos=1)
        assert await inbox.next() == ("r/t1", b"after restart")


async def test_a_loss_while_the_connector_is_still_finishing_is_reconnected(
    mosquitto: MosquittoProcess, started: Callable[[BrokerConfig, Inbox], Any]
) -> None:
    # Seen under load: the connection dropped before the task that made it had returned, so
    # the loss found a connector "still running", started none, and nothing ever reconnected.
    client = await started(config(mosquitto.port), Inbox())
    await wait_until(lambda: client.connected)
    finishing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client._connector = finishing  # type: ignore[assignment]  # the connector, not yet returned
    mosquitto.stop()
    await wait_until(lambda: not client.connected)
    mosquitto.start()
    finishing.set_result(None)  # it returns, from the attempt that had succeeded
    await wait_until(lambda: client.connected)
    assert client._connector is not finishing
