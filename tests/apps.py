"""Consumers and applications the tests route to (importable, so config files can name them)."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from typing import Any

from channels.exceptions import StopConsumer
from mqttasgi.consumers import MqttConsumer as MqttasgiConsumer

from mqttbridge.consumers import InvalidPayload, JsonMqttConsumer, MqttConsumer, SyncMqttConsumer

# What every instance saw, in order: (instance number, event type, topic, payload).
EVENTS: list[tuple[int, str, str | None, bytes | None]] = []
ERRORS: list[str] = []
_counter: defaultdict[str, int] = defaultdict(int)


def reset() -> None:
    EVENTS.clear()
    ERRORS.clear()
    _counter.clear()


class RecordingConsumer(MqttConsumer):
    """Records its events. Payload commands: b"echo" publishes to reply/<device_id>, b"boom"
    raises, b"sleep:<s>" sleeps, b"bad-publish" publishes to a wildcard topic."""

    groups = ["device.{device_id}"]

    async def connect(self) -> None:
        _counter["instances"] += 1
        self.number = _counter["instances"]
        EVENTS.append((self.number, "connect", None, None))

    async def receive(self, message: dict[str, Any]) -> None:
        payload = message["payload"]
        EVENTS.append((self.number, "msg", message["topic"], payload))
        device_id = self.topic_kwargs.get("device_id", "none")
        if payload == b"echo":
            await self.publish(f"reply/{device_id}", payload, qos=1)
        elif payload == b"boom":
            raise RuntimeError("boom requested")
        elif payload.startswith(b"sleep:"):
            await self.publish(f"reply/{device_id}", b"started", qos=1)
            await asyncio.sleep(float(payload[6:]))
            await self.publish(f"reply/{device_id}", b"finished", qos=1)
        elif payload == b"bad-publish":
            try:
                await self.publish("reply/+/wild", b"x")
            except ValueError as exc:
                ERRORS.append(str(exc))

    async def device_command(self, event: dict[str, Any]) -> None:
        await self.publish(f"reply/{self.topic_kwargs['device_id']}", event["text"], qos=1)

    async def disconnect(self) -> None:
        EVENTS.append((self.number, "disconnect", None, None))


class JsonRecorder(JsonMqttConsumer):
    async def receive_json(self, content: Any, message: dict[str, Any]) -> None:
        EVENTS.append((0, "json", message["topic"], repr(content).encode()))


class SyncRecorder(SyncMqttConsumer):
    def receive(self, message: dict[str, Any]) -> None:
        EVENTS.append((0, "sync", message["topic"], message["payload"]))
        self.publish("reply/sync", message["payload"])


class MqttasgiEcho(MqttasgiConsumer):
    """A consumer written for mqttasgi, unchanged: it subscribes itself and echoes upper-case."""

    async def connect(self) -> None:
        await self.subscribe("legacy/in/#", 1)

    async def receive(self, mqtt_message: dict[str, Any]) -> None:
        await self.publish("legacy/out", mqtt_message["payload"].upper(), qos=1)

    async def disconnect(self) -> None:
        await self.unsubscribe("legacy/in/#")


class ChannelNameConsumer(MqttConsumer):
    """Hands out its channel name over MQTT; answers and stops on layer messages."""

    async def connect(self) -> None:
        await self.publish("reply/channel", self.channel_name, qos=1)

    async def say(self, event: dict[str, Any]) -> None:
        await self.publish("reply/said", event["text"], qos=1)

    async def stop(self, event: dict[str, Any]) -> None:
        EVENTS.append((0, "stopped-by-layer", None, None))
        raise StopConsumer()


class SlowConsumer(MqttConsumer):
    """Takes 5 ms per message: a consumer that falls behind a fast device."""

    async def receive(self, message: dict[str, Any]) -> None:
        await asyncio.sleep(0.005)
        EVENTS.append((0, "slow", message["topic"], message["payload"]))


# Where DurableRecorder appends its lines; read from the environment, so a bridge run as a
# subprocess (`python -m mqttbridge run`) records into the test's temporary directory.
RECORD_ENV = "MQTTBRIDGE_TEST_RECORD"


class DurableRecorder(MqttConsumer):
    """Appends ``topic payload dup`` per message to $MQTTBRIDGE_TEST_RECORD, then takes 20 ms.

    One ``os.write`` on an ``O_APPEND`` descriptor per line: the line is in the kernel before
    the handler returns (so before the PUBACK can go out) and survives a SIGKILL of the bridge.
    The sleep keeps messages in flight, so a kill lands mid-stream.
    """

    delay = 0.02

    async def connect(self) -> None:
        self.fd = os.open(os.environ[RECORD_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def receive(self, message: dict[str, Any]) -> None:
        line = f"{message['topic']} {message['payload'].decode()} {int(message['dup'])}\n"
        os.write(self.fd, line.encode())
        await asyncio.sleep(self.delay)

    async def disconnect(self) -> None:
        os.close(self.fd)


class FailingConnect(MqttConsumer):
    """connect() raises: every instance fails before handling anything."""

    async def connect(self) -> None:
        _counter["failing_connects"] += 1
        raise RuntimeError("cannot start")


class LayerBoom(MqttConsumer):
    """A layer event raises while an MQTT message is being handled."""

    async def connect(self) -> None:
        await self.publish("reply/channel", self.channel_name, qos=1)

    async def receive(self, message: dict[str, Any]) -> None:
        await asyncio.sleep(0.3)
        EVENTS.append((0, "handled", message["topic"], message["payload"]))

    async def boom(self, event: dict[str, Any]) -> None:
        raise ValueError("layer handler failed")


class SyncChannelName(SyncMqttConsumer):
    def connect(self) -> None:
        self.publish("reply/channel", self.channel_name)

    def say(self, event: dict[str, Any]) -> None:
        self.publish("reply/said", event["text"])


class CrashingMaster(MqttasgiConsumer):
    """An mqttasgi master that crashes on b"boom" after subscribing."""

    async def connect(self) -> None:
        await self.subscribe("master/in", 1)

    async def receive(self, mqtt_message: dict[str, Any]) -> None:
        if mqtt_message["payload"] == b"boom":
            await asyncio.sleep(0.2)  # let more messages queue behind this one
            raise RuntimeError("master crashed")
        EVENTS.append((0, "master", mqtt_message["topic"], mqtt_message["payload"]))


class SlowCrashingConsumer(SlowConsumer):
    """A slow consumer that raises on b"crash" (while the bridge is holding reads back)."""

    async def receive(self, message: dict[str, Any]) -> None:
        if message["payload"] == b"crash":
            raise RuntimeError("crashed while behind")
        await super().receive(message)


class CountingJson(JsonMqttConsumer):
    """Counts its messages in ``self``: state a restarted instance would lose.

    Records ``(id(self), "count", topic, b"<count>")`` per message handled.
    """

    async def connect(self) -> None:
        self.count = 0
        EVENTS.append((id(self), "connect", None, None))

    async def receive_json(self, content: Any, message: dict[str, Any]) -> None:
        self.count += 1
        EVENTS.append((id(self), "count", message["topic"], str(self.count).encode()))


class StrictJson(CountingJson):
    """A ``decode_json`` override that accepts JSON objects only."""

    @classmethod
    async def decode_json(cls, payload: bytes) -> Any:
        content = await super().decode_json(payload)
        if not isinstance(content, dict):
            raise InvalidPayload(f"expected a JSON object, got {type(content).__name__}")
        return content


class CountingSync(SyncMqttConsumer):
    """CountingJson's sync twin: raw payloads, b"bad" is refused as bad input."""

    def connect(self) -> None:
        self.count = 0
        EVENTS.append((id(self), "connect", None, None))

    def receive(self, message: dict[str, Any]) -> None:
        if message["payload"] == b"bad":
            raise InvalidPayload("not a reading")
        self.count += 1
        EVENTS.append((id(self), "count", message["topic"], str(self.count).encode()))
