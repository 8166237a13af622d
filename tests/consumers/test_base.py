"""The consumer base classes' channel-layer side: listening on the instance's channel, and how
a layer handler's failure reaches the bridge (no broker: MqttCommunicator, in-memory layer)."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import get_channel_layer

from mqttbridge.consumers import MqttConsumer
from mqttbridge.protocol.events import LayerEventFailed
from mqttbridge.testing import MqttCommunicator


class _Listener(MqttConsumer):
    """Hands its channel out by publishing it; ``say`` echoes, ``boom`` raises."""

    explicit = True

    async def connect(self) -> None:
        name = self.listen_on_channel() if self.explicit else self.channel_name
        await self.publish("reply/channel", name)

    async def say(self, event: dict[str, Any]) -> None:
        await self.publish("reply/said", event["text"])

    async def boom(self, event: dict[str, Any]) -> None:
        raise KeyError("no such device")


class _ReadsTheProperty(_Listener):
    explicit = False


async def _channel(consumer: type[_Listener]) -> tuple[MqttCommunicator, str]:
    communicator = MqttCommunicator(consumer.as_asgi(), "d/{device}", topic="d/1")
    await communicator.connect()
    return communicator, (await communicator.receive_publish())["payload"]


@pytest.mark.parametrize("consumer", [_Listener, _ReadsTheProperty], ids=["method", "property"])
async def test_an_instance_that_handed_its_channel_out_receives_layer_messages(consumer):
    communicator, channel = await _channel(consumer)
    await get_channel_layer().send(channel, {"type": "say", "text": "hello"})
    assert (await communicator.receive_publish())["payload"] == "hello"
    await communicator.disconnect()


async def test_a_layer_handlers_exception_reaches_the_bridge_as_a_layer_event_failure():
    communicator, channel = await _channel(_Listener)
    await get_channel_layer().send(channel, {"type": "boom"})
    with pytest.raises(LayerEventFailed) as failure:
        await communicator.wait(1)
    assert isinstance(failure.value.error, KeyError)
    assert failure.value.__cause__ is failure.value.error
