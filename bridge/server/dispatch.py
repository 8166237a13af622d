"""Inbound dispatch: each PUBLISH from the broker becomes an ``mqtt.msg`` event in the queues of
the instances it is for, and what becomes of an ended instance's messages.

``on_message`` is the per-message path: paho calls it on the event-loop thread. It validates,
matches the routes once, finds or starts the routed instance (one per route and parameter
values), adds the instances holding a matching ``mqtt.sub``, and queues the same event for each.
A queue at ``limits.queue_size`` pauses reading from the broker until it is half empty again
(backpressure through TCP). Rejected messages go to the dead-letter topic and are acknowledged.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import paho.mqtt.client as paho

from mqttbridge.config.schema import LimitsConfig
from mqttbridge.mqtt.paho_private import raw_topic
from mqttbridge.protocol.build import message_event, routed_scope
from mqttbridge.protocol.properties import from_paho
from mqttbridge.routing import Route, TopicRouter
from mqttbridge.server.acks import AckToken, AckTracker
from mqttbridge.server.deadletter import DeadLetters
from mqttbridge.server.instances import Ending, Instance
from mqttbridge.server.link import BrokerLink
from mqttbridge.server.logfields import log_fields
from mqttbridge.server.registry import InstanceRegistry
from mqttbridge.server.subscriptions import DynamicSubscriptions

__all__ = ["Dispatcher"]

logger = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        link: BrokerLink,
        router: TopicRouter | None,
        apps: dict[Route, Any],
        registry: InstanceRegistry,
        acks: AckTracker,
        subscriptions: DynamicSubscriptions,
        dead_letters: DeadLetters,
        limits: LimitsConfig,
        stats: collections.Counter[str],
        *,
        v5: bool,
    ) -> None:
        self._link = link
        self.router = router
        # The application each route's instances run: the user's whole application (its
        # middleware, then its TopicRouter) for Python routes, the route's own for YAML ones.
        self._apps = apps
        self._registry = registry
        self._acks = acks
        self._subscriptions = subscriptions
        self._dead_letters = dead_letters
        self._max_payload = limits.max_payload_bytes
        self._queue_size = limits.queue_size
        self._stats = stats
        self._v5 = v5
        #: Instances whose full queue holds reads from the broker back.
        self.paused_by: set[Instance] = set()

    # -- the per-message path -----------------------------------------------------------------

    def on_message(self, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError as exc:
            self._reject(message, None, f"topic is not valid UTF-8: {exc}")
            return
        payload: bytes = message.payload  # type: ignore[assignment]  # paho reads bytes
        if len(payload) > self._max_payload:
            self._reject(
                message,
                topic,
                f"payload is {len(payload)} bytes, "
                f"over limits.max_payload_bytes={self._max_payload}",
            )
            return
        qos = message.qos
        acks = self._acks
        token = acks.track(message.mid, qos) if qos else None
        event = message_event(
            topic,
            payload,
            qos,
            bool(message.retain),
            bool(message.dup),
            from_paho(message.properties) if self._v5 else {},
        )
        routed: Instance | None = None
        router = self.router
        if router is not None:
            matched = router.match(topic)
            if matched is not None:
                route, kwargs = matched
                routed = self._registry.lookup(
                    (route.pattern.pattern, *kwargs.values())
                ) or self._spawn_routed(route, kwargs)
                self._deliver(routed, event, token)
        delivered = routed is not None
        if self._subscriptions:
            for targets in self._subscriptions.instances_for(topic):
                for inst in targets:
                    if inst is not routed:
                        self._deliver(inst, event, token)
                        delivered = True
        if not delivered:
            self._stats["unrouted"] += 1
            if logger.isEnabledFor(logging.DEBUG):  # no fields dict per message otherwise
                logger.debug(
                    "no route or subscription for topic %r; acknowledged",
                    topic,
                    extra={"topic": topic},
                )
        if token is not None and not delivered:
            # A delivered message is held until its instances release it; this one is not.
            acks.settle(token)

    def _spawn_routed(self, route: Route, kwargs: dict[str, str]) -> Instance:
        link = self._link
        scope = routed_scope(link.client_id, link.broker_url, route.pattern, kwargs)
        key = (route.pattern.pattern, *kwargs.values())
        return self._registry.spawn(key, route.name, self._apps[route], scope)

    def _deliver(self, inst: Instance, event: dict[str, Any], token: AckToken | None) -> None:
        if token is not None:
            self._acks.hold(token)
        inst.put(event, token)
        if len(inst.items) >= self._queue_size:
            self._backpressure(inst)

    def _reject(self, message: paho.MQTTMessage, topic: str | None, reason: str) -> None:
        """Refuse a message: log, record it on the dead-letter topic, acknowledge it."""
        self._stats["rejected"] += 1
        shown = topic if topic is not None else repr(raw_topic(message))
        logger.warning(
            "rejected and dead-lettered message on %s: %s",
            shown,
            reason,
            extra=self._route_fields(topic),
        )
        self._dead_letters.publish(topic, None, reason, payload_size=len(message.payload))
        if message.qos:
            # Through the tracker: acknowledgements keep arrival order (MQTT 4.6).
            self._acks.settle(self._acks.track(message.mid, message.qos))

    def _route_fields(self, topic: str | None) -> dict[str, Any]:
        """Log fields for a message no instance holds: the route it would have gone to."""
        matched = self.router.match(topic) if self.router is not None and topic else None
        if matched is None:
            return log_fields(topic=topic)
        route, kwargs = matched
        return log_fields(
            topic=topic, route=route.pattern.pattern, route_kwargs=kwargs, consumer=route.name
        )

    # -- backpressure -------------------------------------------------------------------------

    def _backpressure(self, inst: Instance) -> None:
        client = self._link.client
        assert client is not None
        inst.paused = True
        self.paused_by.add(inst)
        self._stats["backpressure"] += 1
        client.pause_reading()

    def queue_drained(self, inst: Instance) -> None:
        """An instance that held reads back took an event: resume once it is half empty."""
        if len(inst.items) <= self._queue_size // 2:
            self._unpause(inst)

    def _unpause(self, inst: Instance) -> None:
        inst.paused = False
        self.paused_by.discard(inst)
        client = self._link.client
        if not self.paused_by and client is not None and not self._registry.stopping:
            client.resume_reading()

    # -- an instance ended --------------------------------------------------------------------

    def instance_ended(self, inst: Instance, ending: Ending, error: BaseException | None) -> None:
        """Settle the message it was handling and hand on (or record) the ones queued for it."""
        if inst.paused:
            self._unpause(inst)
        current = inst.current
        leftovers = inst.take_queued_messages()
        if ending is Ending.CANCELLED:
            # Cut off mid-handler: not handled, so not acknowledged; the broker redelivers it
            # to a persistent session.
            inst.current = None
        else:
            if ending is Ending.CRASHED_ON_MESSAGE:
                assert current is not None
                message = current[0]["mqtt"]
                self._dead_letters.publish(
                    message["topic"],
                    message["payload"],
                    f"{type(error).__name__}: {error}",
                    consumer=inst.label,
                )
            # A poison message is dead-lettered above and acknowledged here: once, not forever.
            inst.finish_current()
        if self._registry.stopping:
            return  # queued, never handled, never acknowledged: the broker redelivers them
        if ending.retries_queued:
            # Messages queued behind the one that ended the instance go to a fresh instance.
            why = "not handled: the application instance ended"
        else:
            why = f"not handled: the instance failed ({type(error).__name__}: {error})"
        for event, token in leftovers:
            if not (ending.retries_queued and self._redeliver(inst, event, token)):
                message = event["mqtt"]
                self._dead_letters.publish(
                    message["topic"], message["payload"], why, consumer=inst.label
                )
            if token is not None:
                self._acks.release(token)  # the old instance's hold on it

    def _redeliver(self, old: Instance, event: dict[str, Any], token: AckToken | None) -> bool:
        """Queue ``event`` for a fresh instance of ``old``'s route, if it came by that route
        (not by ``old``'s own ``mqtt.sub``)."""
        route_info = old.scope.get("topic_route")
        if self.router is None or route_info is None:
            return False
        matched = self.router.match(event["mqtt"]["topic"])
        if matched is None:
            return False
        route, kwargs = matched
        if (route.pattern.pattern, *kwargs.values()) != old.key:
            return False
        if token is not None:
            self._acks.hold(token)
        (self._registry.lookup(old.key) or self._spawn_routed(route, kwargs)).put(event, token)
        return True
