"""One application for the three protocols the dashboard speaks, served by one process:

    python manage.py mqttbridge run --http 127.0.0.1:8000
    (or: mqttbridge run --asgi dashboard.asgi:application --http 127.0.0.1:8000)

HTTP (the page, the JSON views, the admin) and WebSocket (the page's live feed) go to uvicorn,
run by mqttbridge on its own event loop; MQTT (the devices) to the TopicRouter. All three share
the in-memory channel layer, so a device's reading reaches a browser through a group.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from mqttbridge.routing import TopicRouter  # noqa: E402
from telemetry.routing import mqtt_routes, websocket_routes  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Another site's page must not open the socket with this browser's cookies.
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_routes)),
        "mqtt": TopicRouter(mqtt_routes),
    }
)
