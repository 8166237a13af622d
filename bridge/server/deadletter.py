"""The dead-letter topic: the record of a message the bridge could not deliver or handle
(docs/guarantees.md), and ``DeadLetters``, which publishes it.

A JSON object: ``topic`` (None if it was not valid UTF-8), ``error``, ``consumer``, ``time``,
and the payload as ``payload`` (UTF-8 text) or ``payload_base64``; ``payload_size`` when the
payload is left out, with ``payload_omitted`` when it was left out to stay within the limit.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

from mqttbridge.mqtt.client import OutboundQueueFull
from mqttbridge.server.link import BrokerLink
from mqttbridge.server.logfields import log_fields

__all__ = ["DeadLetters", "dead_letter_record"]

logger = logging.getLogger(__name__)


class DeadLetters:
    """Publishes dead-letter records (QoS 1) to ``topic``."""

    def __init__(self, link: BrokerLink, topic: str, max_bytes: int) -> None:
        self._link = link
        self.topic = topic
        self._max_bytes = max_bytes

    def publish(
        self,
        topic: str | None,
        payload: bytes | None,
        error: str,
        *,
        consumer: str | None = None,
        payload_size: int | None = None,
    ) -> None:
        """Record a message that could not be handled; logged if even that cannot be sent."""
        client = self._link.client
        if client is None:
            return
        data = dead_letter_record(
            topic,
            payload,
            error,
            consumer=consumer,
            payload_size=payload_size,
            max_bytes=self._max_bytes,
        )
        try:
            client.publish(self.topic, data, 1, False)
        except OutboundQueueFull:
            logger.error(
                "dead-letter record lost, outbound queue full: %s",
                data.decode(),
                extra=log_fields(topic=topic, consumer=consumer),
            )


def dead_letter_record(
    topic: str | None,
    payload: bytes | None,
    error: str,
    *,
    consumer: str | None,
    payload_size: int | None,
    max_bytes: int,
) -> bytes:
    record: dict[str, Any] = {
        "topic": topic,
        "error": error,
        "consumer": consumer,
        "time": time.time(),
    }
    if payload is not None:
        try:
            record["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:
            record["payload_base64"] = base64.b64encode(payload).decode("ascii")
    if payload_size is not None:
        record["payload_size"] = payload_size
    data = json.dumps(record).encode()
    if len(data) > max_bytes and payload is not None:
        # Keep the record within the payload limit; say what was left out.
        record.pop("payload", None)
        record.pop("payload_base64", None)
        record["payload_size"] = len(payload)
        record["payload_omitted"] = True
        data = json.dumps(record).encode()
    return data
