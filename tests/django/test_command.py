"""``python manage.py mqttbridge run|check|routes`` in a real Django project on disk
(``tests.django_project``), configured by its settings.py alone: ``MQTTBRIDGE``,
``ASGI_APPLICATION`` and ``CHANNEL_LAYERS``. Every command is a subprocess with a clean
environment, against a private Mosquitto; the consumers write to the project's SQLite database."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from mqttbridge.config import ConfigError
from mqttbridge.django.command import asgi_import_path
from tests.django_project import (
    MANAGE,
    ProjectProcess,
    add_settings,
    exchange,
    mqttbridge,
    project_python,
    readings,
    stop,
)
from tests.services import MosquittoProcess, PahoClient, free_port

STATUS_ROUTE = (
    '{"topic": "sensors/{device_id}/status", "consumer": "telemetry.consumers:DeviceConsumer"}'
)
# `python manage.py mqttbridge run ...` through the start_project fixture.
RUN = ("mqttbridge", "run")
NO_SUCH_CONSUMER = '{"topic": "a/b", "consumer": "telemetry.consumers:Nope"}'


def manage(django_project: Path, *args: str) -> tuple[int, str, str]:
    result = mqttbridge(django_project, "mqttbridge", *args, launcher=MANAGE)
    return result.returncode, result.stdout, result.stderr


def bridge_settings(django_project: Path, broker: str, *, routes: str = STATUS_ROUTE) -> None:
    add_settings(
        django_project,
        f"""
        MQTTBRIDGE = {{
            "broker": {{"url": "{broker}"}},
            "routes": [{routes}],
            "limits": {{"shutdown_timeout": 5}},
        }}
        """,
    )


# --- run -----------------------------------------------------------------------------------------


def test_run_carries_a_message_to_the_model_and_back(
    mosquitto: MosquittoProcess, django_project: Path, start_project: Callable[..., ProjectProcess]
) -> None:
    bridge_settings(django_project, mosquitto.url)
    bridge = start_project(django_project, *RUN, launcher=MANAGE)
    bridge.wait_for("bridge ready")
    # A route of settings.MQTTBRIDGE, then one of ASGI_APPLICATION's TopicRouter: one model.
    assert exchange(mosquitto, "sensors/d1/status", "d1") == [b"1"]
    assert exchange(mosquitto, "sensors/d1/reading", "d1") == [b"2"]
    assert readings(django_project, "d1") == 2
    assert "config settings.MQTTBRIDGE" in bridge.output
    assert "channel layer: memory:// (channels.layers.InMemoryChannelLayer, from Django" in (
        bridge.output
    )
    stop(bridge)


def test_run_with_http_serves_the_views_and_mqtt_in_one_process(
    mosquitto: MosquittoProcess, django_project: Path, start_project: Callable[..., ProjectProcess]
) -> None:
    bridge_settings(django_project, mosquitto.url)
    # Read by the app's ready() too: the view's mqttbridge.publish() must use this channel.
    add_settings(
        django_project, 'MQTTBRIDGE["channel_layer"] = {"publish_channel": "site.publish"}'
    )
    port = free_port()
    bridge = start_project(django_project, *RUN, "--http", f"127.0.0.1:{port}", launcher=MANAGE)
    bridge.wait_for("bridge ready")
    bridge.wait_for("serving HTTP and WebSocket on")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/", timeout=20) as response:
        assert (response.status, response.read()) == (200, b"hello")
    assert exchange(mosquitto, "sensors/d2/reading", "d2") == [b"1"]
    with PahoClient(mosquitto.host, mosquitto.port) as device:
        device.subscribe("devices/d2/commands", qos=1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/devices/d2/command/", data=b"fan on", method="POST"
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            assert (response.status, response.read()) == (200, b"sent")
        assert device.next_message(timeout=20).payload == b"fan on"
    stop(bridge)


def test_an_asgi_application_without_mqtt_serves_http_beside_the_settings_routes(
    mosquitto: MosquittoProcess, django_project: Path, start_project: Callable[..., ProjectProcess]
) -> None:
    bridge_settings(django_project, mosquitto.url)
    add_settings(django_project, 'ASGI_APPLICATION = "myproject.web_asgi.application"')
    assert manage(django_project, "check")[0] == 0
    port = free_port()
    bridge = start_project(django_project, *RUN, "--http", f"127.0.0.1:{port}", launcher=MANAGE)
    bridge.wait_for("bridge ready")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/", timeout=20) as response:
        assert response.read() == b"hello"
    assert exchange(mosquitto, "sensors/d4/status", "d4") == [b"1"]
    assert "bridge ready: 1 route" in bridge.output
    stop(bridge)


def test_an_asgi_application_without_mqtt_and_no_routes_is_refused(django_project: Path) -> None:
    add_settings(django_project, 'ASGI_APPLICATION = "myproject.web_asgi.application"')
    status, _, stderr = manage(django_project, "check")
    assert (status, stderr) == (
        2,
        "error: settings.ASGI_APPLICATION: the ProtocolTypeRouter has no 'mqtt' entry: add "
        '"mqtt": TopicRouter([...]) or an mqttasgi consumer\'s .as_asgi()\n',
    )


def test_run_options_override_the_settings(
    mosquitto: MosquittoProcess, django_project: Path, start_project: Callable[..., ProjectProcess]
) -> None:
    bridge_settings(django_project, "mqtt://127.0.0.1:9")  # nobody listens there
    bridge = start_project(
        django_project, *RUN, "--broker", mosquitto.url, "--log-format", "json", launcher=MANAGE
    )
    bridge.wait_for('"bridge ready')
    assert exchange(mosquitto, "sensors/d3/status", "d3") == [b"1"]
    stop(bridge)


# --- check ---------------------------------------------------------------------------------------


def test_check_says_what_it_read(django_project: Path) -> None:
    bridge_settings(django_project, "mqtt://127.0.0.1:9")
    assert manage(django_project, "check") == (
        0,
        "settings.MQTTBRIDGE: OK — broker mqtt://127.0.0.1:9, 3 routes, channel layer memory:// "
        "(channels.layers.InMemoryChannelLayer, from Django settings)\n",
        "",
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            'MQTTBRIDGE = {"brokr": {"url": "mqtt://127.0.0.1:9"}}',
            ["settings.MQTTBRIDGE[\"brokr\"]: unknown key; did you mean 'broker'?"],
        ),
        (
            'MQTTBRIDGE = {"broker": {"keepalive": "30"}, "limits": {"queue_size": 0}}',
            [
                'settings.MQTTBRIDGE["broker"]["keepalive"]: expected an integer, got \'30\'',
                'settings.MQTTBRIDGE["limits"]["queue_size"]: must be at least 1, got 0',
            ],
        ),
        (
            f'MQTTBRIDGE = {{"routes": [{STATUS_ROUTE}, {NO_SUCH_CONSUMER}]}}',
            [
                'settings.MQTTBRIDGE["routes"][1]["consumer"]: module \'telemetry.consumers\' has '
                "no attribute 'Nope'"
            ],
        ),
        (
            f'MQTTBRIDGE = {{"routes": {STATUS_ROUTE}}}',
            ['settings.MQTTBRIDGE["routes"]: expected a list, got a mapping'],
        ),
        (
            "import datetime\n"
            'MQTTBRIDGE = {"limits": {"idle_timeout": datetime.timedelta(minutes=5)}}',
            [
                'settings.MQTTBRIDGE["limits"]["idle_timeout"]: got a datetime.timedelta object; '
                "use a string, number, boolean, None, dict or list"
            ],
        ),
        (
            'ASGI_APPLICATION = "myproject.asgi.app"',
            ["settings.ASGI_APPLICATION: module 'myproject.asgi' has no attribute 'app'"],
        ),
    ],
    ids=["unknown-key", "bad-types", "consumer-path", "routes-not-a-list", "timedelta", "asgi"],
)
def test_check_with_bad_settings_names_each_setting_exit_2(
    django_project: Path, settings: str, expected: list[str]
) -> None:
    add_settings(django_project, settings)
    status, out, err = manage(django_project, "check")
    assert (status, out) == (2, ""), err
    assert err.splitlines() == [f"error: {line}" for line in expected]


def test_a_bad_mqttbridge_leaves_djangos_own_commands_working(django_project: Path) -> None:
    # The app reads the settings when Django starts (for publish()); it must not refuse.
    add_settings(django_project, 'MQTTBRIDGE = {"brokr": {}}')
    result = mqttbridge(django_project, "check", launcher=MANAGE)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert "System check identified no issues" in result.stdout


def test_call_command_raises_command_error_with_the_exit_status(django_project: Path) -> None:
    add_settings(django_project, 'MQTTBRIDGE = {"brokr": {}}')
    script = (
        "import django, io\n"
        "django.setup()\n"
        "from django.core.management import CommandError, call_command\n"
        "err = io.StringIO()\n"
        "try:\n"
        "    call_command('mqttbridge', 'check', stderr=err)\n"
        "except CommandError as exc:\n"
        "    print(exc.returncode, err.getvalue(), end='')\n"
    )
    result = project_python(django_project, script)
    assert (result.stdout, result.stderr) == (
        "2 error: settings.MQTTBRIDGE[\"brokr\"]: unknown key; did you mean 'broker'?\n",
        "",
    )


def test_nothing_to_run_says_which_setting_is_missing(django_project: Path) -> None:
    add_settings(django_project, "del ASGI_APPLICATION")
    status, _, err = manage(django_project, "run")
    assert (status, err) == (
        2,
        "error: nothing to run: settings.MQTTBRIDGE (not set) has no routes and "
        "settings.ASGI_APPLICATION is not set\n",
    )


# --- routes --------------------------------------------------------------------------------------


def test_routes_lists_the_asgi_applications_routes_then_the_settings(django_project: Path) -> None:
    bridge_settings(django_project, "mqtt://127.0.0.1:9")
    add_settings(django_project, 'MQTTBRIDGE["broker"]["shared_group"] = "bridges"')
    status, out, err = manage(django_project, "routes")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "PATTERN                      SUBSCRIBES TO                     QOS  CONSUMER",
        "sensors/{device_id}/reading  $share/bridges/sensors/+/reading  1    "
        "telemetry.consumers.DeviceConsumer",
        "sensors/{device_id}/live     $share/bridges/sensors/+/live     1    "
        "telemetry.live.LiveRelay",
        "sensors/{device_id}/status   $share/bridges/sensors/+/status   1    "
        "telemetry.consumers:DeviceConsumer",
    ]


# --- ASGI_APPLICATION as --asgi -----------------------------------------------------------------


def test_asgi_application_becomes_an_import_path() -> None:
    assert asgi_import_path("myproject.asgi.application", "x") == "myproject.asgi:application"
    assert asgi_import_path(None, "x") is None
    for wrong in ("application", "myproject.asgi:application", 3):
        with pytest.raises(ConfigError) as info:
            asgi_import_path(wrong, "settings.ASGI_APPLICATION")
        assert str(info.value) == (
            "settings.ASGI_APPLICATION: expected a dotted path such as "
            f'"myproject.asgi.application", got {wrong!r}'
        )
