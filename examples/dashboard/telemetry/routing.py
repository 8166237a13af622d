from django.urls import path

from mqttbridge.routing import topic

from .consumers import AckConsumer, PresenceConsumer, TelemetryConsumer
from .sockets import DashboardSocket

# The simulator's generic profile (devices/profiles/generic.yaml).
mqtt_routes = [
    topic("sensors/{device_id}/temperature", TelemetryConsumer.as_asgi(), qos=1),
    topic("devices/{device_id}/status", PresenceConsumer.as_asgi(), qos=1),
    topic("devices/{device_id}/ack", AckConsumer.as_asgi(), qos=1),
]

websocket_routes = [path("ws/dashboard/", DashboardSocket.as_asgi())]
