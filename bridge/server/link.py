"""What the server's parts share about the broker connection, known only once it starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqttbridge.mqtt.client import MqttClient

__all__ = ["BrokerLink"]


@dataclass
class BrokerLink:
    """The bridge's client id, the broker URL instances see in their scope, and the client.

    ``broker_url`` changes at start-up with the embedded broker (the port it bound), and
    ``client`` exists from start-up on, after the parts that use it were made.
    """

    client_id: str
    broker_url: str
    client: MqttClient | None = None

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (``AckTracker`` decides when)."""
        if self.client is not None:
            self.client.ack(mid, qos)
