"""A real Django project run as its docs say: ``cd myproject && mqttbridge run --asgi
myproject.asgi:application``, nothing exported; YAML routes into its apps; ``bridge.configure``
in its processes. Every command is a subprocess with a clean environment, against a private
Mosquitto, and the consumer writes to the project's SQLite database."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.django_project import (
    MQTTBRIDGE,
    ProjectProcess,
    add_settings,
    clean_env,
    exchange,
    mqttbridge,
    project_python,
    readings,
    stop,
)
from tests.services import MosquittoProcess

ASGI = "myproject.asgi:application"
# A Redis nobody listens on: if the bridge used it instead of the project's layer, the log
# would fill with connection errors and publish-from-Django would be off.
UNUSED_REDIS = "redis://:s3cret@127.0.0.1:9/0"
YAML_ROUTE = (
    "routes:\n"
    "  - topic: sensors/{device_id}/status\n"
    "    consumer: telemetry.consumers:DeviceConsumer\n"
)


def write_config(django_project: Path, text: str) -> None:
    (django_project / "config.yaml").write_text(text)


# --- mqttbridge run --asgi from the project directory -----------------------------------------


# `python -m mqttbridge` has the working directory on sys.path already: it shows the order of
# start-up on its own (the project's asgi.py must run before any settings are configured).
@pytest.mark.parametrize(
    "launcher",
    [(MQTTBRIDGE,), (sys.executable, "-m", "mqttbridge")],
    ids=["mqttbridge", "python-m"],
)
def test_run_asgi_from_the_project_directory_with_nothing_exported(
    mosquitto: MosquittoProcess,
    django_project: Path,
    start_project: Callable[..., ProjectProcess],
    launcher: tuple[str, ...],
) -> None:
    write_config(django_project, f"broker:\n  url: {mosquitto.url}\n")
    bridge = start_project(django_project, "run", "--asgi", ASGI, launcher=launcher)
    bridge.wait_for("bridge ready")
    assert exchange(mosquitto, "sensors/d1/reading", "d1", 2) == [b"1", b"2"]
    assert readings(django_project, "d1") == 2
    stop(bridge)


def test_run_logs_the_projects_channel_layer_and_that_the_configs_is_ignored(
    mosquitto: MosquittoProcess, django_project: Path, start_project: Callable[..., ProjectProcess]
) -> None:
    write_config(
        django_project, f"broker:\n  url: {mosquitto.url}\nchannel_layer:\n  url: {UNUSED_REDIS}\n"
    )
    bridge = start_project(django_project, "run", "--asgi", ASGI)
    bridge.wait_for("bridge ready")
    bridge.wait_for("accepting publish requests")
    log = bridge.output
    assert (
        "channel_layer.url redis://:***@127.0.0.1:9/0 is ignored: the Django settings' "
        "CHANNEL_LAYERS['default'] is used (memory://, channels.layers.InMemoryChannelLayer)"
    ) in log
    assert (
        "channel layer: memory:// (channels.layers.InMemoryChannelLayer, from Django settings)"
        in log
    )
    assert "s3cret" not in log
    stop(bridge)


def test_check_says_which_channel_layer_is_used(django_project: Path) -> None:
    write_config(django_project, f"channel_layer:\n  url: {UNUSED_REDIS}\n")
    result = mqttbridge(django_project, "check", "--asgi", ASGI)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        "warning: channel_layer.url redis://:***@127.0.0.1:9/0 is ignored: the Django settings' "
        "CHANNEL_LAYERS['default'] is used (memory://, channels.layers.InMemoryChannelLayer)",
        "config.yaml: OK — broker embedded, 2 routes, channel layer memory:// "
        "(channels.layers.InMemoryChannelLayer, from Django settings)",
    ]


# --- YAML routes to a consumer that imports the app's models -----------------------------------


# asgi.py sets DJANGO_SETTINGS_MODULE with setdefault: exported beforehand, it is the same.
@pytest.mark.parametrize("exported", [False, True], ids=["nothing-exported", "settings-exported"])
def test_yaml_route_to_an_app_consumer_next_to_the_asgi_application(
    mosquitto: MosquittoProcess,
    django_project: Path,
    start_project: Callable[..., ProjectProcess],
    exported: bool,
) -> None:
    write_config(django_project, f"broker:\n  url: {mosquitto.url}\n" + YAML_ROUTE)
    env = clean_env(DJANGO_SETTINGS_MODULE="myproject.settings") if exported else None
    check = mqttbridge(django_project, "check", "--asgi", ASGI, env=env)
    assert check.returncode == 0, check.stderr
    assert "3 routes" in check.stdout
    bridge = start_project(django_project, "run", "--asgi", ASGI, env=env)
    bridge.wait_for("bridge ready")
    assert exchange(mosquitto, "sensors/d2/status", "d2", 1) == [b"1"]
    assert exchange(mosquitto, "sensors/d2/reading", "d2", 1) == [b"2"]
    stop(bridge)


def test_an_asgi_application_without_mqtt_beside_yaml_routes(
    mosquitto: MosquittoProcess, django_project: Path, start_project: Callable[..., ProjectProcess]
) -> None:
    # It sets Django up and is what --http would serve; the YAML routes carry the devices.
    write_config(django_project, f"broker:\n  url: {mosquitto.url}\n" + YAML_ROUTE)
    check = mqttbridge(django_project, "check", "--asgi", "myproject.web_asgi:application")
    assert (check.returncode, check.stderr) == (0, "")
    bridge = start_project(django_project, "run", "--asgi", "myproject.web_asgi:application")
    bridge.wait_for("bridge ready: 1 route")
    assert exchange(mosquitto, "sensors/d5/status", "d5", 1) == [b"1"]
    stop(bridge)


def test_yaml_route_to_an_app_consumer_with_the_settings_module_exported(
    mosquitto: MosquittoProcess, django_project: Path, start_project: Callable[..., ProjectProcess]
) -> None:
    layer = f"channel_layer:\n  url: {UNUSED_REDIS}\n"
    write_config(django_project, f"broker:\n  url: {mosquitto.url}\n{layer}" + YAML_ROUTE)
    env = clean_env(DJANGO_SETTINGS_MODULE="myproject.settings")
    check = mqttbridge(django_project, "check", env=env)
    assert check.returncode == 0, check.stderr
    assert "channel_layer.url redis://:***@127.0.0.1:9/0 is ignored" in check.stdout
    assert check.stdout.rstrip().endswith(
        "1 route, channel layer memory:// (channels.layers.InMemoryChannelLayer, from Django "
        "settings)"
    )
    bridge = start_project(django_project, "run", env=env)
    bridge.wait_for("bridge ready")
    assert exchange(mosquitto, "sensors/d3/status", "d3", 1) == [b"1"]
    assert "s3cret" not in bridge.output
    assert readings(django_project, "d3") == 1
    stop(bridge)


@pytest.mark.parametrize("command", ["check", "run"])
def test_yaml_route_to_an_app_consumer_without_django_settings_says_how_to_fix(
    django_project: Path, command: str
) -> None:
    write_config(django_project, "broker:\n  url: mqtt://127.0.0.1:9\n" + YAML_ROUTE)
    result = mqttbridge(django_project, command)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: config.yaml:5: routes[0].consumer: cannot import module 'telemetry.consumers': "
    )
    assert result.stderr.rstrip().endswith(
        "in INSTALLED_APPS; Django is not set up for a project: give --asgi "
        "<project>.asgi:application or set DJANGO_SETTINGS_MODULE"
    )
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("command", ["check", "run"])
def test_settings_module_that_cannot_be_imported_is_one_line(
    django_project: Path, command: str
) -> None:
    write_config(django_project, "broker:\n  url: mqtt://127.0.0.1:9\n" + YAML_ROUTE)
    # Exported, but run from the wrong directory: `myproject` is not importable from there.
    env = clean_env(DJANGO_SETTINGS_MODULE="myproject.settings")
    elsewhere = django_project.parent / "elsewhere"
    elsewhere.mkdir()
    result = mqttbridge(
        elsewhere, command, "--config", str(django_project / "config.yaml"), env=env
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: DJANGO_SETTINGS_MODULE: cannot import 'myproject.settings': No module named "
        "'myproject'; run mqttbridge from the directory that holds the project (where manage.py "
        "is), or fix DJANGO_SETTINGS_MODULE\n"
    )


# --- settings.MQTTBRIDGE read by the standalone command -----------------------------------------


def settings_route(django_project: Path, broker: str) -> None:
    add_settings(
        django_project,
        f"""
        MQTTBRIDGE = {{
            "broker": {{"url": "{broker}"}},
            "routes": [{{
                "topic": "sensors/{{device_id}}/status",
                "consumer": "telemetry.consumers:DeviceConsumer",
            }}],
        }}
        """,
    )


def test_without_a_config_file_the_projects_settings_mqttbridge_is_read(
    mosquitto: MosquittoProcess, django_project: Path, start_project: Callable[..., ProjectProcess]
) -> None:
    settings_route(django_project, mosquitto.url)
    env = clean_env(DJANGO_SETTINGS_MODULE="myproject.settings")
    check = mqttbridge(django_project, "check", env=env)
    assert check.stdout.startswith(f"settings.MQTTBRIDGE: OK — broker {mosquitto.url}, 1 route,")
    bridge = start_project(
        django_project, "run", "--asgi", ASGI
    )  # asgi.py puts the settings in charge
    bridge.wait_for("bridge ready")
    assert exchange(mosquitto, "sensors/d4/status", "d4", 1) == [b"1"]
    assert exchange(mosquitto, "sensors/d4/reading", "d4", 1) == [b"2"]
    stop(bridge)


def test_a_config_file_wins_over_settings_mqttbridge_with_a_warning(django_project: Path) -> None:
    settings_route(django_project, "mqtt://127.0.0.1:9")
    write_config(django_project, "broker:\n  url: mqtt://127.0.0.1:10\n")
    result = mqttbridge(django_project, "check", "--asgi", ASGI)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "warning: settings.MQTTBRIDGE is ignored: config.yaml is read instead"
    )
    assert "broker mqtt://127.0.0.1:10, 2 routes" in result.stdout


def test_bad_settings_mqttbridge_fails_the_standalone_check_with_its_path(
    django_project: Path,
) -> None:
    add_settings(django_project, 'MQTTBRIDGE = {"routes": [{"topic": "a/b", "consumer": "x"}]}')
    result = mqttbridge(django_project, "check", "--asgi", ASGI)
    assert (result.returncode, result.stderr) == (
        2,
        'error: settings.MQTTBRIDGE["routes"][0]["consumer"]: expected \'module:Class\' or '
        "'module.Class', got 'x'\n",
    )


# --- mqttbridge.configure() in a Django process ------------------------------------------------


def test_configure_in_a_django_process_with_a_yaml_route_to_an_app_consumer(
    django_project: Path,
) -> None:
    write_config(django_project, f"channel_layer:\n  url: {UNUSED_REDIS}\n" + YAML_ROUTE)
    # A worker or script of the project: DJANGO_SETTINGS_MODULE set, django.setup() not called.
    script = (
        "import mqttbridge\n"
        "config = mqttbridge.configure('config.yaml')\n"
        "print(config.routes[0].consumer_class.__name__)\n"
        "from channels.layers import get_channel_layer\n"
        "print(type(get_channel_layer()).__module__)\n"
    )
    result = project_python(django_project, script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["DeviceConsumer", "channels.layers"]
    assert "channel_layer.url redis://:***@127.0.0.1:9/0 is ignored" in result.stderr
