"""One simulated device: a profile bound to an index, its state, and its MQTT connection.

The fleet's scheduler calls ``publish_stream``; the connection calls back with commands, which
change ``state`` (so the next telemetry shows them) and are acknowledged by the profile's replies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from mqttbridge.devices.simulator import codec
from mqttbridge.devices.simulator.connection import BrokerTarget, Connection
from mqttbridge.devices.simulator.generators import OMIT, Context
from mqttbridge.devices.simulator.profiles import Command, Message, Profile, Spec, Template
from mqttbridge.devices.simulator.stats import Stats

__all__ = ["Device", "render_template"]

logger = logging.getLogger(__name__)

Render = Callable[["_Env"], Any]


class _Env:
    """What placeholders and generators read while one message is built."""

    __slots__ = ("command", "ctx", "device", "json")

    def __init__(self, device: Device, ctx: Context, command: str = "", json_: Any = None) -> None:
        self.device = device
        self.ctx = ctx
        self.command = command
        self.json = json_

    def lookup(self, name: str) -> Any:
        if name == "id":
            return self.device.id
        if name == "index":
            return self.device.index
        if name == "profile":
            return self.device.profile.name
        if name == "payload":
            return self.command
        prefix, _, rest = name.partition(".")
        if prefix == "state":
            return self.device.state.get(rest)
        if prefix == "json":
            # A key the command did not carry: left out of a reply, and sets nothing.
            return self.json.get(rest, OMIT) if isinstance(self.json, dict) else OMIT
        raise KeyError(name)


def render_template(template: Template, lookup: Callable[[str], Any]) -> str:
    parts = template.parts
    if len(parts) == 1:
        return parts[0]
    out = []
    for index, part in enumerate(parts):
        if not index % 2:
            out.append(part)
        elif ":" in part:  # {index:06X}: a format spec, as str.format has it
            name, _, spec = part.partition(":")
            out.append(format(lookup(name), spec))
        else:
            out.append(_text(lookup(part)))
    return "".join(out)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is OMIT:
        return ""
    return json.dumps(value)  # true, null and numbers as JSON writes them


def _bind(spec: Spec, rng: random.Random) -> Render:
    """One device's renderer for a compiled payload: generators get their own state here."""
    kind, value = spec
    if kind == "lit":
        return lambda env: value
    if kind == "gen":
        generate = value(rng)
        return lambda env: generate(env.ctx)
    if kind == "tpl":
        template: Template = value
        single = template.single
        if single is not None and ":" not in single:
            return lambda env: env.lookup(single)
        return lambda env: render_template(template, env.lookup)
    if kind == "obj":
        items = [(key, _bind(item, rng)) for key, item in value]

        def obj(env: _Env) -> dict[str, Any]:
            out = {}
            for key, render in items:
                rendered = render(env)
                if rendered is not OMIT:
                    out[key] = rendered
            return out

        return obj
    renders = [_bind(item, rng) for item in value]
    return lambda env: [render(env) for render in renders]


def _encoder(spec: Spec, render: Render) -> Callable[[_Env], bytes]:
    if spec[0] in ("obj", "arr"):
        dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        return lambda env: dumps(render(env)).encode()
    return lambda env: _text(render(env)).encode()


class _Outgoing:
    """A message of the profile bound to this device: topic resolved, payload renderer ready."""

    __slots__ = ("encode", "every", "jitter", "qos", "retain", "sequence", "topic")

    def __init__(self, device: Device, message: Message, rng: random.Random) -> None:
        self.topic = render_template(message.topic, device.static_lookup).encode()
        self.encode = _encoder(message.payload, _bind(message.payload, rng))
        self.qos = message.qos
        self.retain = message.retain
        self.every = getattr(message, "every", 0.0)
        self.jitter = getattr(message, "jitter", 0.0)
        self.sequence = 0


class Device:
    def __init__(
        self,
        profile: Profile,
        index: int,
        seed: int,
        target: BrokerTarget,
        gate: asyncio.Semaphore,
        stats: Stats,
        *,
        qos: int | None = None,
        round_trip: bool = False,
        log_commands: bool = False,
    ) -> None:
        self.log_commands = log_commands
        self.profile = profile
        self.index = index
        self.stats = stats
        self.round_trip = round_trip
        self.rng = random.Random(f"{seed}:{profile.name}:{index}")
        self.id = render_template(profile.id, self.static_lookup)
        self.state: dict[str, Any] = dict(profile.state)
        self.started = time.monotonic()
        self.streams = [_Outgoing(self, stream, self.rng) for stream in profile.telemetry]
        if qos is not None:
            for stream in self.streams:
                stream.qos = qos
        self.birth = [_Outgoing(self, message, self.rng) for message in profile.birth]
        self.will_message = (
            _Outgoing(self, profile.will, self.rng) if profile.will is not None else None
        )
        self.commands = {
            render_template(command.topic, self.static_lookup): (
                command,
                [_Outgoing(self, reply, self.rng) for reply in command.reply],
            )
            for command in profile.commands
        }
        will = None
        if self.will_message is not None:
            payload = self.will_message.encode(self._env())
            will = codec.Will(
                self.will_message.topic.decode(), payload,
                self.will_message.qos, self.will_message.retain,
            )  # fmt: skip
        client_id = render_template(profile.client_id, self.static_lookup)
        subscriptions = [(topic, command.qos) for topic, (command, _) in self.commands.items()]
        self.connection = Connection(target, client_id, will, subscriptions, self, gate, self.rng)
        # Set by the fleet: starts the telemetry schedule when the device first comes online.
        self.on_first_online: Callable[[Device], None] = lambda device: None

    def static_lookup(self, name: str) -> Any:
        return {"id": getattr(self, "id", ""), "index": self.index, "profile": self.profile.name}[
            name
        ]

    def _env(self, stream: _Outgoing | None = None, command: str = "", json_: Any = None) -> _Env:
        elapsed = time.monotonic() - self.started
        sequence = stream.sequence if stream is not None else 0
        ref = str(time.perf_counter_ns()) if self.round_trip else None
        return _Env(self, Context(elapsed, sequence, self.id, ref), command, json_)

    # -- publishing -----------------------------------------------------------------------------

    def publish_stream(self, index: int) -> None:
        """Publish telemetry stream ``index`` now (if connected)."""
        stream = self.streams[index]
        payload = stream.encode(self._env(stream))
        if self.connection.publish(stream.topic, payload, stream.qos, stream.retain):
            stream.sequence += 1
            self.stats.published += 1
        else:
            self.stats.skipped_offline += 1

    def _send(self, message: _Outgoing, env: _Env) -> None:
        self.connection.publish(message.topic, message.encode(env), message.qos, message.retain)
        self.stats.other_published += 1

    def stop(self) -> None:
        """Go offline as firmware does on a clean shutdown: say so, then disconnect."""
        if self.will_message is not None and self.connection.online:
            self._send(self.will_message, self._env())
        self.connection.close()

    # -- ConnectionEvents -----------------------------------------------------------------------

    def on_online(self) -> None:
        self.stats.device_online(self.connection.connects > 1)
        env = self._env()
        for message in self.birth:
            self._send(message, env)
        if self.connection.connects == 1:
            self.started = time.monotonic()
            self.on_first_online(self)

    def on_offline(self, reason: str, was_online: bool) -> None:
        if was_online:
            self.stats.connected -= 1
        if reason:  # empty when we closed the connection ourselves
            self.stats.errors[reason] += 1

    def on_puback(self) -> None:
        self.stats.acked += 1

    def on_message(self, topic: str, payload: bytes) -> None:
        entry = self.commands.get(topic)
        if entry is None:
            return
        command, replies = entry
        text = payload.decode("utf-8", "replace")
        decoded = _json_or_none(text)
        if isinstance(decoded, dict) and "ref" in decoded:
            self.stats.round_trip(decoded["ref"])
        env = self._env(command=text, json_=decoded)
        if self._apply(command, env):
            self.stats.commands += 1
            if self.log_commands:
                logger.info("device %s obeyed %s %s", self.id, topic, text)
        else:
            self.stats.commands_rejected += 1
        for reply in replies:
            self._send(reply, env)

    def _apply(self, command: Command, env: _Env) -> bool:
        changes = {}
        for name, template in command.set:
            single = template.single
            if single and ":" not in single:
                value = env.lookup(single)
            else:
                value = render_template(template, env.lookup)
            if value is OMIT:
                continue
            if command.values is not None:
                key = _text(value).lower()
                if key not in command.values:
                    return False
                value = command.values[key]
            changes[name] = value
        self.state.update(changes)
        return True


def _json_or_none(text: str) -> Any:
    if not text.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
