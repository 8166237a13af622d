"""What applications send: ``mqtt.pub`` becomes a publish, ``mqtt.sub``/``mqtt.usub`` change
the instance's subscriptions, ``mqtt.dead_letter`` records the message being handled, and
mqttasgi's worker events go to ``mqttasgi``. Each event is checked first, by the code
``MqttCommunicator`` checks with (``protocol.events.validate_event``), so ``send()`` raises in
the application that made the mistake.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from mqttbridge.protocol.events import validate_event
from mqttbridge.server.deadletter import DeadLetters
from mqttbridge.server.instances import Instance
from mqttbridge.server.link import BrokerLink
from mqttbridge.server.logfields import instance_fields, instance_params
from mqttbridge.server.mqttasgi import MqttasgiWorkers
from mqttbridge.server.registry import InstanceRegistry
from mqttbridge.server.subscriptions import DynamicSubscriptions

__all__ = ["Outbound"]

logger = logging.getLogger(__name__)


class Outbound:
    def __init__(
        self,
        link: BrokerLink,
        subscriptions: DynamicSubscriptions,
        dead_letters: DeadLetters,
        workers: MqttasgiWorkers,
        registry: InstanceRegistry,
        max_payload_bytes: int,
        stats: collections.Counter[str],
    ) -> None:
        self._link = link
        self._subscriptions = subscriptions
        self._dead_letters = dead_letters
        self._workers = workers
        self._registry = registry
        self._max_payload = max_payload_bytes
        self._stats = stats

    def handle_send(self, inst: Instance, event: dict[str, Any]) -> None:
        """Carry out what ``inst`` sent, or raise ``InvalidEvent`` saying why not."""
        client = self._link.client
        assert client is not None
        current = inst.current
        kind, checked = validate_event(event, current[0] if current else None, self._max_payload)
        if kind == "mqtt.pub":
            client.publish(
                checked.topic, checked.payload, checked.qos, checked.retain, checked.properties
            )
        elif kind == "mqtt.sub":
            self._subscriptions.add(client, inst, *checked)
        elif kind == "mqtt.usub":
            self._unsubscribe(inst, checked[0])
        elif kind == "mqtt.dead_letter":
            assert current is not None
            self._refused_by_app(inst, current[0]["mqtt"], checked)
        elif kind == "mqttasgi.worker.spawn":
            self._workers.spawn(inst, checked)
        else:
            self._workers.kill(inst, checked)

    def forget(self, inst: Instance) -> None:
        """The instance ended: drop its subscriptions."""
        for topic_filter in list(inst.subscriptions):
            self._unsubscribe(inst, topic_filter)

    def _unsubscribe(self, inst: Instance, topic_filter: str) -> None:
        # While stopping, the broker keeps the session's subscriptions for the next start.
        client = None if self._registry.stopping else self._link.client
        self._subscriptions.drop(client, inst, topic_filter)

    def _refused_by_app(self, inst: Instance, message: dict[str, Any], error: str) -> None:
        """The application refused the message it is handling as bad input (mqtt.dead_letter):
        record it; it is acknowledged once the handler returns, and the instance lives on."""
        self._stats["dead_lettered_by_app"] += 1
        topic = message["topic"]
        params = instance_params(inst)
        logger.warning(
            "dead-lettered message on %s for %s%s: %s",
            topic,
            inst.label,
            f" ({params})" if params else "",
            error,
            extra=instance_fields(inst, topic),
        )
        self._dead_letters.publish(topic, message["payload"], error, consumer=inst.label)
