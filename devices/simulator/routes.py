"""Which simulated topics would reach no consumer: checked before the fleet starts."""

from __future__ import annotations

from mqttbridge.config.schema import Config
from mqttbridge.devices.simulator.device import render_template
from mqttbridge.devices.simulator.profiles import Profile
from mqttbridge.protocol.topics import compile_pattern

__all__ = ["published_topics", "unrouted_topics"]


def published_topics(profile: Profile) -> list[str]:
    """What the profile's first device publishes: telemetry, birth, will and replies."""
    device_id = render_template(profile.id, {"index": 0, "profile": profile.name}.__getitem__)
    names = {"id": device_id, "index": 0, "profile": profile.name}
    messages = [*profile.telemetry, *profile.birth]
    if profile.will is not None:
        messages.append(profile.will)
    for command in profile.commands:
        messages += command.reply
    topics = [render_template(message.topic, names.__getitem__) for message in messages]
    return list(dict.fromkeys(topics))


def unrouted_topics(config: Config, profiles: list[Profile]) -> list[tuple[str, str]]:
    """(topic, profile name) for every topic no route of ``config`` matches."""
    patterns = [compile_pattern(route.topic) for route in config.routes]
    return [
        (topic, profile.name)
        for profile in profiles
        for topic in published_topics(profile)
        if not any(pattern.match(topic) is not None for pattern in patterns)
    ]
