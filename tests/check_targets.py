"""Applications and consumers that `check` and `run` must refuse (tests/cli/test_checks.py)."""

from __future__ import annotations

from channels.generic.websocket import WebsocketConsumer
from channels.routing import ProtocolTypeRouter

from mqttbridge.routing import TopicRouter, topic
from tests.apps import RecordingConsumer


class ChatConsumer(WebsocketConsumer):
    """A WebSocket consumer: it has no handler for "mqtt.connect" or "mqtt.msg"."""


chat_app = ChatConsumer.as_asgi()
websocket_only = ProtocolTypeRouter({"websocket": chat_app})
mqtt_is_a_class = ProtocolTypeRouter({"mqtt": RecordingConsumer})
sensors = ProtocolTypeRouter(
    {"mqtt": TopicRouter([topic("sensors/{device_id}/data", RecordingConsumer.as_asgi())])}
)
