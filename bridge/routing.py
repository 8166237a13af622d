"""Topic routing: ``TopicRouter`` is to MQTT topics what Channels' ``URLRouter`` is to paths.

    application = ProtocolTypeRouter({
        "mqtt": TopicRouter([
            topic("sensors/{device_id}/temperature", TemperatureConsumer.as_asgi()),
        ]),
    })

The bridge subscribes to every route's filter and keeps one application instance per route and
parameter values (per device). Each instance's scope carries ``topic_route`` =
``{"pattern", "filter", "kwargs"}``; the router is an ordinary ASGI app that reads it and calls
the route's application, so middleware may wrap it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mqttbridge.protocol.events import validate_qos
from mqttbridge.protocol.topics import TopicPattern, compile_pattern

__all__ = [
    "Route",
    "TopicRouter",
    "as_application",
    "consumer_problem",
    "find_topic_router",
    "handles_mqtt",
    "label",
    "not_mqtt_consumer",
    "topic",
]


class Route:
    """One topic pattern and the ASGI application that serves it."""

    __slots__ = ("app", "name", "pattern", "qos")

    def __init__(self, pattern: str, app: Any, *, qos: int = 1, name: str | None = None) -> None:
        validate_qos(qos, f"route {pattern!r}: qos")
        # Caught here, at import of the routing module, rather than by an instance that
        # crashes and restarts for every message while the bridge reports itself ready.
        problem = consumer_problem(app)
        if problem is not None:
            raise TypeError(f"route {pattern!r}: {problem}")
        self.pattern: TopicPattern = compile_pattern(pattern)
        self.app = app
        self.qos = qos
        self.name = name or label(app)

    def __repr__(self) -> str:
        return f"<Route {self.pattern.pattern!r} -> {self.name} qos={self.qos}>"


def topic(pattern: str, app: Any, *, qos: int = 1, name: str | None = None) -> Route:
    """Route topics matching ``pattern`` to ``app`` (like Django's ``path()``)."""
    return Route(pattern, app, qos=qos, name=name)


class TopicRouter:
    """An ASGI application that dispatches "mqtt" instances to the route they were made for."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: list[Route] = list(routes)
        seen: dict[str, Route] = {}
        for route in self.routes:
            if not isinstance(route, Route):
                raise TypeError(f"TopicRouter expects topic(...) routes, got {route!r}")
            other = seen.get(route.pattern.filter)
            if other is not None:
                raise ValueError(
                    f"routes {other.pattern.pattern!r} and {route.pattern.pattern!r} subscribe to "
                    f"the same filter {route.pattern.filter!r}; only the first would ever match"
                )
            seen[route.pattern.filter] = route
        self._by_pattern = {route.pattern.pattern: route for route in self.routes}

    def match(self, topic_name: str) -> tuple[Route, dict[str, str]] | None:
        """The first route whose pattern matches ``topic_name``, and its parameters."""
        for route in self.routes:
            kwargs = route.pattern.match(topic_name)
            if kwargs is not None:
                return route, kwargs
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "mqtt":
            raise ValueError(f"TopicRouter got a scope of type {scope.get('type')!r}, not 'mqtt'")
        route_info = scope.get("topic_route")
        if route_info is None:
            raise ValueError(
                "TopicRouter needs scope['topic_route'], which the bridge sets for routed "
                "instances; a master (app_id 0) instance cannot be routed by topic (is the "
                "TopicRouter wrapped by middleware that does not keep it as `.inner`?)"
            )
        route = self._by_pattern.get(route_info["pattern"])
        if route is None:
            raise ValueError(f"no route with pattern {route_info['pattern']!r} in this TopicRouter")
        return await route.app(scope, receive, send)


def find_topic_router(application: Any) -> TopicRouter | None:
    """The TopicRouter that serves the application's "mqtt" scopes, or None (an mqttasgi
    application, a single consumer).

    Follows only what Channels documents: a ``ProtocolTypeRouter``'s "mqtt" entry, and
    middleware's ``inner`` application (Channels' middleware keep what they wrap there).
    Middleware that keeps it under another name hides the router; the application then runs
    as an mqttasgi master, and its TopicRouter says so on start-up.
    """
    from channels.routing import ProtocolTypeRouter

    node = application
    for _ in range(_MAX_WRAPPERS):
        if isinstance(node, TopicRouter):
            return node
        if isinstance(node, ProtocolTypeRouter):
            node = node.application_mapping.get("mqtt")
        else:
            node = getattr(node, "inner", None)
        if node is None:
            return None
    return None


# Deeper than any middleware stack: a cycle of wrappers must not hang the start-up.
_MAX_WRAPPERS = 20


def consumer_problem(app: Any) -> str | None:
    """Why ``app`` cannot serve "mqtt" scopes, or None when it can (or it cannot be told)."""
    from channels.consumer import AsyncConsumer, SyncConsumer

    if isinstance(app, type) and issubclass(app, AsyncConsumer | SyncConsumer):
        return (
            f"{app.__qualname__} is a consumer class, not an ASGI application: "
            f"use {app.__qualname__}.as_asgi()"
        )
    consumer = getattr(app, "consumer_class", None)
    if isinstance(consumer, type) and not handles_mqtt(consumer):
        return not_mqtt_consumer(consumer)
    return None


def handles_mqtt(consumer: type) -> bool:
    """Whether a consumer class has handlers for the events every "mqtt" instance gets."""
    return all(callable(getattr(consumer, name, None)) for name in ("mqtt_connect", "mqtt_msg"))


def not_mqtt_consumer(consumer: type) -> str:
    return (
        f"{consumer.__module__}.{consumer.__qualname__} is not an MQTT consumer (it has no "
        "mqtt_connect and mqtt_msg handlers; a WebSocket consumer?): subclass "
        "mqttbridge.consumers.MqttConsumer"
    )


def as_application(target: Any) -> Any:
    """The ASGI application for ``target``: a consumer class's ``as_asgi()``, else itself."""
    as_asgi = getattr(target, "as_asgi", None) if isinstance(target, type) else None
    return as_asgi() if callable(as_asgi) else target


def label(app: Any) -> str:
    """The dotted name logs and dead-letter records give an application: its consumer class."""
    consumer = getattr(app, "consumer_class", None)
    target = consumer if consumer is not None else app
    module = getattr(target, "__module__", "")
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{name}" if module else name
