"""Consumer base classes for the "mqtt" scope; example consumers live in
``mqttbridge.consumers.examples``."""

from .base import InvalidPayload, JsonMqttConsumer, MqttConsumer, SyncMqttConsumer

__all__ = ["InvalidPayload", "JsonMqttConsumer", "MqttConsumer", "SyncMqttConsumer"]
