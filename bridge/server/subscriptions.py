"""Subscriptions that applications make themselves (``mqtt.sub``), next to the routes' own.

mqttasgi applications subscribe at run time; any instance may. Several instances may share a
filter, and a filter may equal a route's: the broker subscription stays while anyone needs it,
at the highest QoS asked, and a route's subscription is never dropped or lowered by an
application's ``mqtt.usub``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from paho.mqtt.matcher import MQTTMatcher

if TYPE_CHECKING:
    from mqttbridge.mqtt.client import MqttClient
    from mqttbridge.server.instances import Instance

__all__ = ["DynamicSubscriptions"]


def _match_filter(topic_filter: str) -> str:
    """What a topic is matched against: ``$share/<group>/a/+`` delivers topics of ``a/+``."""
    return topic_filter.split("/", 2)[2] if topic_filter.startswith("$share/") else topic_filter


class DynamicSubscriptions:
    """The instances each application-made filter delivers to, and the broker subscriptions
    they need."""

    def __init__(self) -> None:
        self._targets: dict[str, set[Instance]] = {}
        self._matcher = MQTTMatcher()
        #: The routes' own (static) subscriptions, broker filter -> QoS: they outlive any
        #: application's subscription to the same filter, at no lower a QoS.
        self.route_subscriptions: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._targets)

    def add_route(self, client: MqttClient, topic_filter: str, qos: int) -> None:
        """Subscribe for a route, for as long as the bridge runs."""
        self.route_subscriptions[topic_filter] = qos
        client.subscribe(topic_filter, qos)

    def instances_for(self, topic: str) -> Iterator[set[Instance]]:
        return self._matcher.iter_match(topic)  # type: ignore[no-any-return]

    def add(self, client: MqttClient, inst: Instance, topic_filter: str, qos: int) -> None:
        match_filter = _match_filter(topic_filter)
        targets = self._targets.get(match_filter)
        if targets is None:
            targets = self._targets[match_filter] = set()
            self._matcher[match_filter] = targets
        targets.add(inst)
        inst.subscriptions.add(topic_filter)
        client.subscribe(topic_filter, max(qos, self.route_subscriptions.get(topic_filter, 0)))

    def drop(self, client: MqttClient | None, inst: Instance, topic_filter: str) -> None:
        """Forget ``inst``'s subscription; unsubscribe at the broker when nobody needs it
        (``client`` None: the bridge is stopping, leave the broker alone)."""
        match_filter = _match_filter(topic_filter)
        inst.subscriptions.discard(topic_filter)
        targets = self._targets.get(match_filter)
        if targets is None:
            return
        targets.discard(inst)
        if targets:
            return
        del self._targets[match_filter]
        del self._matcher[match_filter]
        if client is None:
            return
        route_qos = self.route_subscriptions.get(topic_filter)
        if route_qos is None:
            client.unsubscribe(topic_filter)
        else:  # a route needs this filter too: keep it, at the route's QoS
            client.subscribe(topic_filter, route_qos)
