"""`check` and `run` refuse at once, exit 2, one line naming the culprit and the fix, what would
otherwise fail only at run time: two routes on one filter, a consumer that is not an MQTT
consumer, a consumer class where an ASGI application is expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mqttbridge.routing import topic
from tests.apps import RecordingConsumer
from tests.check_targets import ChatConsumer
from tests.cli_helpers import ROOT, run_cli

BROKER = "broker:\n  url: mqtt://127.0.0.1:9\n"  # never reached: the checks come first


def route(pattern: str, consumer: str) -> str:
    return f"  - topic: {pattern}\n    consumer: {consumer}\n"


def config(tmp_path: Path, *routes: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(BROKER + "routes:\n" + "".join(routes))
    return str(path)


def refused(argv: list[str]) -> str:
    """``check`` with ``argv``: the one error line it printed (after asserting exit 2)."""
    status, out, err = run_cli("check", *argv)
    assert (status, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    return err.strip().removeprefix("error: ")


def test_two_yaml_routes_on_one_filter(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        route("sensors/{device_id}/data", "tests.apps:RecordingConsumer"),
        route("sensors/+/data", "tests.apps:JsonRecorder"),
    )
    assert refused(["--config", path]) == (
        f"{path}:6: routes[1].topic: subscribes to 'sensors/+/data' like routes[0] (line 4); "
        "only the first would ever get messages: remove one, or give them different patterns"
    )


def test_a_yaml_route_on_the_filter_of_an_asgi_route(tmp_path: Path) -> None:
    path = config(tmp_path, route("sensors/{id}/data", "tests.apps:RecordingConsumer"))
    assert refused(["--config", path, "--asgi", "tests.check_targets:sensors"]) == (
        f"{path}:4: routes[0].topic: subscribes to 'sensors/+/data' like route "
        "'sensors/{device_id}/data' of --asgi tests.check_targets:sensors; only one of them "
        "would get messages: remove one"
    )


def test_a_websocket_consumer_on_a_yaml_route(tmp_path: Path) -> None:
    path = config(tmp_path, route("chat/{room}", "tests.check_targets:ChatConsumer"))
    assert refused(["--config", path]) == (
        f"{path}:5: routes[0].consumer: tests.check_targets.ChatConsumer is not an MQTT "
        "consumer (it has no mqtt_connect and mqtt_msg handlers; a WebSocket consumer?): "
        "subclass mqttbridge.consumers.MqttConsumer"
    )


def test_a_class_that_is_no_channels_consumer_on_a_yaml_route(tmp_path: Path) -> None:
    path = config(tmp_path, route("a/{x}", "tests.config_targets:ExampleConsumer"))
    assert refused(["--config", path]) == (
        f"{path}:5: routes[0].consumer: 'tests.config_targets:ExampleConsumer' is not a "
        "Channels consumer (it has no as_asgi()): subclass mqttbridge.consumers.MqttConsumer"
    )


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        (
            "tests.apps:MqttasgiEcho",
            "MqttasgiEcho is a consumer class, not an ASGI application: use MqttasgiEcho.as_asgi()",
        ),
        (
            "tests.check_targets:mqtt_is_a_class",
            "RecordingConsumer is a consumer class, not an ASGI application: use "
            "RecordingConsumer.as_asgi()",
        ),
        (
            "tests.check_targets:chat_app",
            "tests.check_targets.ChatConsumer is not an MQTT consumer (it has no mqtt_connect "
            "and mqtt_msg handlers; a WebSocket consumer?): "
            "subclass mqttbridge.consumers.MqttConsumer",
        ),
        (
            "tests.check_targets:websocket_only",
            "the ProtocolTypeRouter has no 'mqtt' entry: add \"mqtt\": TopicRouter([...]) or an "
            "mqttasgi consumer's .as_asgi()",
        ),
    ],
)
def test_an_asgi_application_that_cannot_serve_mqtt(
    tmp_path: Path, target: str, problem: str
) -> None:
    # A config with no routes: the application is all there is to serve MQTT.
    assert refused(["--config", config(tmp_path), "--asgi", target]) == (
        f"--asgi {target}: {problem}"
    )


def test_an_application_without_mqtt_beside_yaml_routes_serves_only_http(tmp_path: Path) -> None:
    path = config(tmp_path, route("sensors/{device_id}/data", "tests.apps:RecordingConsumer"))
    status, out, err = run_cli(
        "check", "--config", path, "--asgi", "tests.check_targets:websocket_only"
    )
    assert (status, err) == (0, "")
    assert "OK" in out and "1 route," in out


@pytest.mark.parametrize(
    ("app", "problem"),
    [
        (
            "RecordingConsumer",
            "RecordingConsumer is a consumer class, not an ASGI application: use "
            "RecordingConsumer.as_asgi()",
        ),
        (
            "ChatConsumer.as_asgi()",
            "tests.check_targets.ChatConsumer is not an MQTT consumer (it has no mqtt_connect "
            "and mqtt_msg handlers; a WebSocket consumer?): "
            "subclass mqttbridge.consumers.MqttConsumer",
        ),
    ],
)
def test_a_topic_router_route_that_cannot_serve_mqtt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app: str, problem: str
) -> None:
    module = f"routing_{abs(hash(app))}"
    (tmp_path / f"{module}.py").write_text(
        "from mqttbridge.routing import TopicRouter, topic\n"
        "from tests.apps import RecordingConsumer\n"
        "from tests.check_targets import ChatConsumer\n"
        f"router = TopicRouter([topic('a/{{x}}', {app})])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert refused(["--asgi", f"{module}:router"]) == (
        f"--asgi {module}:router: cannot import module '{module}': TypeError: route 'a/{{x}}': "
        f"{problem}"
    )


@pytest.mark.parametrize("app", [RecordingConsumer, ChatConsumer.as_asgi()])
def test_topic_refuses_what_cannot_serve_mqtt(app: object) -> None:
    with pytest.raises(TypeError, match=r"^route 'a/\{x\}': "):
        topic("a/{x}", app)


# The same refusals from the real `run`: at once, exit 2, one line, no traceback, no restarts.
@pytest.mark.parametrize(
    ("routes", "asgi", "culprit"),
    [
        (
            route("s/{a}", "tests.apps:RecordingConsumer")
            + route("s/+", "tests.apps:JsonRecorder"),
            None,
            "routes[1].topic: subscribes to 's/+' like routes[0]",
        ),
        (
            route("chat/{room}", "tests.check_targets:ChatConsumer"),
            None,
            "routes[0].consumer: tests.check_targets.ChatConsumer is not an MQTT consumer",
        ),
        ("", "tests.apps:MqttasgiEcho", "use MqttasgiEcho.as_asgi()"),
    ],
    ids=["same-filter", "websocket-consumer", "consumer-class"],
)
def test_run_refuses_at_once(tmp_path: Path, routes: str, asgi: str | None, culprit: str) -> None:
    path = config(tmp_path, routes) if routes else str(tmp_path / "none.yaml")
    if not routes:
        Path(path).write_text(BROKER)
    argv = [sys.executable, "-m", "mqttbridge", "run", "--config", path]
    argv += ["--asgi", asgi] if asgi else []
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and culprit in result.stderr


# --- the config API the checks build on ------------------------------------------------------


def test_consumers_are_imported_after_parsing_when_asked() -> None:
    from mqttbridge.config.schema import ConfigError, parse_config, resolve_consumers

    text = "routes:\n  - topic: a/b\n    consumer: tests.config_targets:ExampleConsume\n"
    config = parse_config(text, "config.yaml", import_consumers=False)
    assert config.routes[0].consumer_class is None
    with pytest.raises(ConfigError) as info:
        resolve_consumers(config)
    assert str(info.value) == (
        "config.yaml:3: routes[0].consumer: module 'tests.config_targets' has no attribute "
        "'ExampleConsume'"
    )


def test_an_asgi_module_that_reads_settings_at_import_gets_the_minimal_ones(
    tmp_path: Path,
) -> None:
    """No Django project, nothing exported: an application module that reads settings when
    imported works, as it did when the bridge configured Django before importing it."""
    from tests.django_project import clean_env

    (tmp_path / "layer_at_import.py").write_text(
        "from channels.layers import get_channel_layer\n"
        "from mqttasgi.consumers import MqttConsumer\n"
        "LAYER = get_channel_layer()  # reads CHANNEL_LAYERS\n"
        "application = MqttConsumer.as_asgi()\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mqttbridge", "check", "--asgi", "layer_at_import:application"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "<default>: OK — broker embedded, 0 routes, channel layer memory://\n"


def test_routes_lists_the_applications_routes_then_the_files(tmp_path: Path) -> None:
    path = config(tmp_path, route("alerts/{id}", "tests.apps:RecordingConsumer"))
    status, out, err = run_cli("routes", "--config", path, "--asgi", "tests.check_targets:sensors")
    assert status == 0, err
    assert [line.split() for line in out.splitlines()] == [
        ["PATTERN", "SUBSCRIBES", "TO", "QOS", "CONSUMER"],
        ["sensors/{device_id}/data", "sensors/+/data", "1", "tests.apps.RecordingConsumer"],
        ["alerts/{id}", "alerts/+", "1", "tests.apps:RecordingConsumer"],
    ]


@pytest.mark.parametrize(
    ("hosts", "shown"),
    [
        (["redis://:hunter2@10.0.0.5:6379/1"], "redis://:***@10.0.0.5:6379/1"),
        ([("10.0.0.5", 6379)], "redis://10.0.0.5:6379"),
        ([{"address": "redis://:hunter2@10.0.0.5:6379"}], "redis://:***@10.0.0.5:6379"),
    ],
)
def test_a_projects_redis_layer_is_named_without_its_password(
    monkeypatch: pytest.MonkeyPatch, hosts: list[object], shown: str
) -> None:
    from django.test import override_settings

    from mqttbridge import django_setup
    from mqttbridge.config.schema import parse_config

    monkeypatch.setitem(django_setup._state, "minimal", False)  # as if a project's settings
    backend = "channels_redis.core.RedisChannelLayer"
    layer = parse_config("channel_layer:\n  url: memory://\n").channel_layer
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": backend, "CONFIG": {"hosts": hosts}}}
    ):
        used, warning = django_setup.channel_layer_in_use(layer)
    assert used == f"{shown} ({backend}, from Django settings)"
    assert warning == (
        "channel_layer.url memory:// is ignored: the Django settings' CHANNEL_LAYERS['default'] "
        f"is used ({shown}, {backend})"
    )
