"""Checks across the config file and the ``--asgi`` application, run by ``check`` and ``run``.

Each of these would otherwise pass ``check`` and then fail at run time: two routes on one
filter make ``run`` refuse to start; a WebSocket consumer on an MQTT route or a consumer class
given without ``.as_asgi()`` crashes (and is restarted) for every message while the bridge
reports itself ready. Each is a :class:`ConfigError` naming the culprit and the fix.
"""

from __future__ import annotations

from typing import Any

from mqttbridge.config.schema import Config, ConfigError
from mqttbridge.protocol.topics import compile_pattern
from mqttbridge.routing import (
    Route,
    consumer_problem,
    find_topic_router,
    handles_mqtt,
    not_mqtt_consumer,
)

__all__ = ["check_application", "check_route_consumers", "check_route_filters"]


def check_route_consumers(config: Config) -> None:
    """Every YAML route's consumer must be a Channels consumer class for "mqtt" scopes."""
    for index, route in enumerate(config.routes):
        consumer = route.consumer_class
        if consumer is None:
            continue
        problem = None
        if not callable(getattr(consumer, "as_asgi", None)):
            problem = (
                f"{route.consumer!r} is not a Channels consumer (it has no as_asgi()): "
                "subclass mqttbridge.consumers.MqttConsumer"
            )
        elif not handles_mqtt(consumer):
            problem = not_mqtt_consumer(consumer)
        if problem is not None:
            raise config.error(
                problem, key=f"routes[{index}].consumer", line=route.consumer_line or route.line
            )


def serves_no_mqtt(application: Any) -> bool:
    """Whether ``application`` is a ``ProtocolTypeRouter`` without an "mqtt" entry: a project's
    HTTP and WebSocket application, whose devices are routed by the config instead."""
    mapping = getattr(application, "application_mapping", None)
    return isinstance(mapping, dict) and "mqtt" not in mapping and not find_topic_router(
        application
    )


def check_application(application: Any, where: str) -> list[Route]:
    """Refuse an ``--asgi`` application that cannot serve "mqtt" scopes; return its routes.

    Routes inside a ``TopicRouter`` were checked when they were made (``topic()``); here the
    application itself: a consumer class instead of ``.as_asgi()``, a non-MQTT consumer, or a
    ``ProtocolTypeRouter`` without an "mqtt" entry. ``where`` names the application in errors
    (``--asgi proj.asgi:application``, ``settings.ASGI_APPLICATION``).
    """
    router = find_topic_router(application)
    if router is not None:
        return list(router.routes)
    node = application
    mapping = getattr(node, "application_mapping", None)
    if isinstance(mapping, dict):
        if "mqtt" not in mapping:
            raise ConfigError(
                "the ProtocolTypeRouter has no 'mqtt' entry: add "
                '"mqtt": TopicRouter([...]) or an mqttasgi consumer\'s .as_asgi()',
                source=where,
            )
        node = mapping["mqtt"]
    problem = consumer_problem(node)
    if problem is not None:
        raise ConfigError(problem, source=where)
    return []


def check_route_filters(config: Config, python_routes: list[Route], where: str) -> None:
    """No two routes may subscribe to the same filter: only one could get its messages."""
    python_claims = {route.pattern.filter: route.pattern.pattern for route in python_routes}
    yaml_claims: dict[str, tuple[int, int]] = {}
    for index, route in enumerate(config.routes):
        topic_filter = compile_pattern(route.topic).filter
        line = route.topic_line or route.line
        problem = None
        if topic_filter in yaml_claims:
            other, other_line = yaml_claims[topic_filter]
            first = config.name_key(f"routes[{other}]", other_line)
            problem = (
                f"subscribes to {topic_filter!r} like {first}; "
                "only the first would ever get messages: remove one, or give them different "
                "patterns"
            )
        elif topic_filter in python_claims:
            problem = (
                f"subscribes to {topic_filter!r} like route {python_claims[topic_filter]!r} of "
                f"{where}; only one of them would get messages: remove one"
            )
        if problem is not None:
            raise config.error(problem, key=f"routes[{index}].topic", line=line)
        yaml_claims[topic_filter] = (index, line)
