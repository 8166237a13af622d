"""A real Django project on disk, laid out as ``django-admin startproject`` and ``startapp`` do,
for tests that run ``mqttbridge`` the way a user does: from the project directory, with a clean
environment (no ``DJANGO_SETTINGS_MODULE``, no ``PYTHONPATH``).

    myproject/                  <- the working directory
        manage.py
        config.yaml             (written by each test)
        myproject/settings.py   SQLite database, in-memory channel layer, mqttbridge.django
                                installed (``add_settings`` appends MQTTBRIDGE = ... per test)
        myproject/asgi.py       the standard one: setdefault, get_asgi_application, routers
        telemetry/models.py     Device(name, readings); Reading(device, seq)
        telemetry/consumers.py  imports the model; counts readings, replies with the count
        telemetry/batched.py    stores each message's number as a Reading through a BatchWriter
                                (routed from config.yaml by the tests that use it)
        telemetry/live.py       a WebSocket consumer in group "live", and an MQTT consumer
                                that tells the group about each message (one in-memory layer)
        myproject/urls.py       GET /hello/ answers "hello" (HTTP served by --http);
                                POST /devices/<name>/command/ publishes the body to
                                devices/<name>/commands with mqttbridge.publish(confirm=True)
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from harness.children import clean_env
from tests.services import PahoClient

__all__ = [
    "MANAGE",
    "MQTTBRIDGE",
    "ProjectProcess",
    "add_settings",
    "clean_env",
    "exchange",
    "make_project",
    "mqttbridge",
    "project_python",
    "readings",
    "stop",
]

# The console script users run: unlike ``python -m mqttbridge`` it does not put the working
# directory on sys.path by itself.
MQTTBRIDGE = str(Path(sys.executable).with_name("mqttbridge"))
# `python manage.py ...`, as the launcher of ProjectProcess or mqttbridge(): the Django command.
MANAGE = (sys.executable, "manage.py")

_FILES = {
    "manage.py": """
        import os
        import sys

        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
            from django.core.management import execute_from_command_line

            execute_from_command_line(sys.argv)
    """,
    "myproject/__init__.py": "",
    "myproject/settings.py": """
        import os
        from pathlib import Path
        from urllib.parse import urlsplit

        BASE_DIR = Path(__file__).resolve().parent.parent
        SECRET_KEY = "test-only"
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
        ROOT_URLCONF = "myproject.urls"
        INSTALLED_APPS = ["channels", "mqttbridge.django", "telemetry"]
        DATABASES = {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
        }
        if os.environ.get("DATABASE_URL"):  # postgres://user@host:port/name
            url = urlsplit(os.environ["DATABASE_URL"])
            DATABASES["default"] = {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": url.path.lstrip("/"),
                "USER": url.username,
                "HOST": url.hostname,
                "PORT": str(url.port),
                "CONN_MAX_AGE": 60,
            }
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        USE_TZ = True
        ASGI_APPLICATION = "myproject.asgi.application"
        CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    """,
    "myproject/asgi.py": """
        import os

        from django.core.asgi import get_asgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
        django_asgi_app = get_asgi_application()

        from channels.routing import ProtocolTypeRouter  # noqa: E402

        from django.urls import path  # noqa: E402
        from channels.routing import URLRouter  # noqa: E402

        from mqttbridge.routing import TopicRouter, topic  # noqa: E402
        from telemetry.consumers import DeviceConsumer  # noqa: E402
        from telemetry.live import LiveRelay, LiveSocket  # noqa: E402

        application = ProtocolTypeRouter({
            "http": django_asgi_app,
            "websocket": URLRouter([path("ws/live/", LiveSocket.as_asgi())]),
            "mqtt": TopicRouter([
                topic("sensors/{device_id}/reading", DeviceConsumer.as_asgi()),
                topic("sensors/{device_id}/live", LiveRelay.as_asgi()),
            ]),
        })
    """,
    # The asgi.py of many projects: HTTP only, the devices routed by the config or settings.
    "myproject/web_asgi.py": """
        import os

        from django.core.asgi import get_asgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
        django_asgi_app = get_asgi_application()

        from channels.routing import ProtocolTypeRouter  # noqa: E402

        application = ProtocolTypeRouter({"http": django_asgi_app})
    """,
    "myproject/urls.py": """
        from django.http import HttpResponse
        from django.urls import path

        import mqttbridge


        def hello(request):
            return HttpResponse("hello")


        def command(request, name):
            mqttbridge.publish(f"devices/{name}/commands", request.body, confirm=True)
            return HttpResponse("sent")


        urlpatterns = [path("hello/", hello), path("devices/<name>/command/", command)]
    """,
    "telemetry/live.py": """
        import asyncio

        from channels.generic.websocket import AsyncJsonWebsocketConsumer

        from mqttbridge.consumers import MqttConsumer


        class LiveSocket(AsyncJsonWebsocketConsumer):
            async def connect(self):
                await self.channel_layer.group_add("live", self.channel_name)
                await self.accept()
                await self.send_json({"joined": "live"})

            async def disconnect(self, code):
                await self.channel_layer.group_discard("live", self.channel_name)

            async def live_message(self, event):
                await self.send_json({"device": event["device"], "text": event["text"]})


        class LiveRelay(MqttConsumer):
            \"\"\"Tells the WebSocket group about each message; a "slow:<seconds>" message
            holds its handler that long first, then acknowledges over MQTT.\"\"\"

            async def receive(self, message):
                name = self.topic_kwargs["device_id"]
                text = message["payload"].decode()
                event = {"type": "live.message", "device": name, "text": text}
                await self.channel_layer.group_send("live", event)
                if text.startswith("slow:"):
                    await asyncio.sleep(float(text.removeprefix("slow:")))
                    await self.publish(f"devices/{name}/ack", "done")
    """,
    "telemetry/__init__.py": "",
    "telemetry/apps.py": """
        from django.apps import AppConfig


        class TelemetryConfig(AppConfig):
            default_auto_field = "django.db.models.BigAutoField"
            name = "telemetry"
    """,
    "telemetry/models.py": """
        from django.db import models


        class Device(models.Model):
            name = models.CharField(max_length=64, unique=True)
            readings = models.IntegerField(default=0)


        class Reading(models.Model):
            device = models.CharField(max_length=64)
            seq = models.IntegerField()  # the publisher's number; repeats are redeliveries
    """,
    "telemetry/batched.py": """
        from mqttbridge.consumers import MqttConsumer
        from mqttbridge.django.batch import BatchWriter

        from .models import Reading

        # One writer for every device: batches fill from all of them at once.
        readings = BatchWriter(Reading, max_batch=200, max_delay=0.05, retry_max=1.0)


        class BatchedReadings(MqttConsumer):
            async def receive(self, message):
                device = self.topic_kwargs["device_id"]
                # Returns once committed: the message is acknowledged after its row is stored.
                await readings.save(Reading(device=device, seq=int(message["payload"])))
    """,
    "telemetry/consumers.py": """
        from channels.db import database_sync_to_async

        from mqttbridge.consumers import MqttConsumer

        from .models import Device


        class DeviceConsumer(MqttConsumer):
            async def receive(self, message):
                name = self.topic_kwargs["device_id"]
                count = await self.count_reading(name)
                await self.publish(f"devices/{name}/ack", str(count))

            @database_sync_to_async
            def count_reading(self, name):
                device, _ = Device.objects.get_or_create(name=name)
                device.readings += 1
                device.save()
                return device.readings
    """,
}


def make_project(
    root: Path, files: dict[str, str] | None = None, env: dict[str, str] | None = None
) -> Path:
    """Write the project under ``root/myproject``, create its database (``env`` may name
    another with ``DATABASE_URL=postgres://...``); return the directory."""
    project = root / "myproject"
    for name, text in {**_FILES, **(files or {})}.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--run-syncdb", "-v", "0"],
        cwd=project,
        env=env or clean_env(),
        check=True,
        timeout=120,
    )
    return project


def add_settings(project: Path, text: str) -> None:
    """Append ``text`` (Python, e.g. ``MQTTBRIDGE = {...}``) to the project's settings.py."""
    with (project / "myproject" / "settings.py").open("a") as settings:
        settings.write("\n" + textwrap.dedent(text).strip() + "\n")


def readings(project: Path, name: str) -> int | None:
    """How many readings the project's database holds for device ``name``."""
    with sqlite3.connect(project / "db.sqlite3") as db:
        row = db.execute("SELECT readings FROM telemetry_device WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def mqttbridge(
    project: Path,
    *args: str,
    env: dict[str, str] | None = None,
    launcher: tuple[str, ...] = (MQTTBRIDGE,),
) -> subprocess.CompletedProcess[str]:
    """Run a short ``mqttbridge`` command (``check``, or ``run`` that should refuse at once);
    ``launcher=MANAGE`` runs ``python manage.py <args>``."""
    return subprocess.run(
        [*launcher, *args],
        cwd=project,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def project_python(project: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c script`` as a process of the project would: in its directory, with
    ``DJANGO_SETTINGS_MODULE`` set and ``django.setup()`` left to the script."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env=clean_env(DJANGO_SETTINGS_MODULE="myproject.settings"),
        capture_output=True,
        text=True,
        timeout=60,
    )


class ProjectProcess:
    """``mqttbridge <args>`` running in the project directory, its output collected."""

    def __init__(
        self,
        project: Path,
        *args: str,
        env: dict[str, str] | None = None,
        launcher: tuple[str, ...] = (MQTTBRIDGE,),
    ) -> None:
        self.proc = subprocess.Popen(
            [*launcher, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=project,
            env=env or clean_env(),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reader.join(1)
                raise AssertionError(f"{text!r} not logged; output:\n{self.output}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def exchange(broker: Any, topic: str, device: str, times: int = 1) -> list[bytes]:
    """Publish ``times`` readings for ``device`` to ``broker`` (a Mosquitto fixture); return the
    acknowledgements the project's consumers sent back on ``devices/<device>/ack``."""
    with PahoClient(broker.host, broker.port) as client:
        client.subscribe(f"devices/{device}/ack", qos=1)
        for _ in range(times):
            client.publish(topic, b"{}", qos=1)
        return [bytes(client.next_message(timeout=20).payload) for _ in range(times)]


def stop(process: ProjectProcess) -> None:
    """SIGTERM; the process must exit 0 with no traceback."""
    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(20) == 0, process.output
    assert "Traceback" not in process.output
