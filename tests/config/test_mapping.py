"""Tests for mqttbridge.config.mapping: ``settings.MQTTBRIDGE`` read with config.yaml's rules,
its errors naming the setting as Python reaches it, to the letter."""

from __future__ import annotations

import enum
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mqttbridge.cli.checks import check_route_filters
from mqttbridge.config import ConfigError, parse_config, parse_settings
from mqttbridge.config.schema import subscripted
from tests.apps import RecordingConsumer

SETTING = "settings.MQTTBRIDGE"


def errors(mapping: Any, **options: Any) -> list[str]:
    """One line per error, as ``manage.py mqttbridge check`` prints them."""
    with pytest.raises(ConfigError) as info:
        parse_settings(mapping, **options)
    return str(info.value).splitlines()


def error(mapping: Any, **options: Any) -> str:
    (line,) = errors(mapping, **options)
    return line


# --- the same configuration as the file ---------------------------------------------------------


def test_a_mapping_gives_the_config_its_yaml_gives() -> None:
    yaml = textwrap.dedent(
        """
        broker:
          url: mqtts://broker.example:8883
          client_id: gateway-1
          keepalive: 60
          reconnect: {min_delay: 0.25, max_delay: 5}
        channel_layer: {url: "redis://127.0.0.1:6379/2", group_expiry: 600}
        routes:
          - topic: sensors/{device_id}/data
            consumer: tests.apps:RecordingConsumer
            qos: 0
        limits: {max_instances: 50, idle_timeout: 1.5}
        http: {listen: "127.0.0.1:8000", proxy_headers: false}
        dead_letter_topic: bridge/rejected
        """
    )
    mapping = {
        "broker": {
            "url": "mqtts://broker.example:8883",
            "client_id": "gateway-1",
            "keepalive": 60,
            "reconnect": {"min_delay": 0.25, "max_delay": 5},
        },
        "channel_layer": {"url": "redis://127.0.0.1:6379/2", "group_expiry": 600},
        "routes": [
            {
                "topic": "sensors/{device_id}/data",
                "consumer": "tests.apps:RecordingConsumer",
                "qos": 0,
            }
        ],
        "limits": {"max_instances": 50, "idle_timeout": 1.5},
        "http": {"listen": "127.0.0.1:8000", "proxy_headers": False},
        "dead_letter_topic": "bridge/rejected",
    }
    from_file = parse_config(yaml, "config.yaml")
    config = parse_settings(mapping)
    assert (config.source, config.from_mapping, from_file.from_mapping) == (SETTING, True, False)
    for section in ("broker", "channel_layer", "limits", "http", "dead_letter_topic"):
        assert getattr(config, section) == getattr(from_file, section), section
    (route,) = config.routes
    assert (route.topic, route.consumer, route.qos) == (
        "sensors/{device_id}/data",
        "tests.apps:RecordingConsumer",
        0,
    )
    assert route.consumer_class is RecordingConsumer


@pytest.mark.parametrize("empty", [{}, None], ids=["empty-dict", "None"])
def test_empty_settings_give_the_defaults(empty: Any) -> None:
    config = parse_settings(empty)
    assert (config.broker.url, config.routes, config.channel_layer.url) == (
        "embedded",
        (),
        "memory://",
    )


def test_paths_subclasses_and_tuples_read_as_their_plain_values(tmp_path: Path) -> None:
    class Level(enum.IntEnum):
        ONE = 1

    class Text(str):  # as Django's SafeString
        pass

    ca = tmp_path / "ca.pem"
    ca.write_text("not read: the URL is plain mqtt")
    config = parse_settings(
        {
            "broker": {"url": Text("mqtt://127.0.0.1:1883"), "keepalive": Level.ONE * 60},
            "routes": ({"topic": "a/{x}", "consumer": "tests.apps:RecordingConsumer"},),
            "http": {"listen": "127.0.0.1:8000", "cert_file": None},
        }
    )
    assert (config.broker.url, config.broker.keepalive, len(config.routes)) == (
        "mqtt://127.0.0.1:1883",
        60,
        1,
    )
    path_error = error({"broker": {"url": "mqtt://h", "tls": {"ca_file": tmp_path / "no.pem"}}})
    assert path_error == (
        f'{SETTING}["broker"]["tls"]["ca_file"]: only used with mqtts:// or wss:// URLs'
    )


def test_dollar_braces_are_text_not_variables() -> None:
    # settings.py reads os.environ itself; "${X}" in a setting is what it says.
    config = parse_settings({"broker": {"url": "mqtt://h", "password": "a${X}b", "username": "u"}})
    assert config.broker.password == "a${X}b"


# --- errors: the setting's path, the file's message ---------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ({"brokr": {}}, "[\"brokr\"]: unknown key; did you mean 'broker'?"),
        (
            {"broker": {"keepalive": "30"}},
            '["broker"]["keepalive"]: expected an integer, got \'30\'',
        ),
        (
            {"broker": {"keepalive": True}},
            '["broker"]["keepalive"]: expected an integer, got true',
        ),
        ({"routes": {"topic": "a"}}, '["routes"]: expected a list, got a mapping'),
        ({"routes": "a/b"}, "[\"routes\"]: expected a list, got 'a/b'"),
        (
            {"routes": [{"topic": "a/b", "consumer": "tests.apps:Nope"}]},
            "[\"routes\"][0][\"consumer\"]: module 'tests.apps' has no attribute 'Nope'",
        ),
        (
            {"routes": [{"topic": "a/b"}]},
            '["routes"][0]["consumer"]: required key is missing',
        ),
        (
            {"limits": {"idle_timeout": float("nan")}},
            '["limits"]["idle_timeout"]: expected a finite number of seconds, got nan',
        ),
        ({"broker": ["mqtt://h"]}, '["broker"]: expected a mapping, got a list'),
        (
            {"broker": {("url",): "x"}},
            '["broker"]: keys must be plain words, not mappings or lists',
        ),
        (
            {"broker": {"url": "mqtt://h", "users": {"jane.doe": "secret"}}},
            '["broker"]["users"]["jane.doe"]: expected a password hash ($7$...), not a '
            "password; make one with `mqttbridge passwd jane.doe`",
        ),
    ],
    ids=[
        "unknown-key",
        "string-for-integer",
        "bool-for-integer",
        "routes-mapping",
        "routes-string",
        "consumer-path",
        "consumer-missing",
        "nan",
        "section-list",
        "tuple-key",
        "user-with-dots",
    ],
)
def test_errors_name_the_setting_by_its_path(mapping: dict[str, Any], expected: str) -> None:
    assert error(mapping) == SETTING + expected


@pytest.mark.parametrize(
    ("yaml", "mapping"),
    [
        ("broker:\n  keepalive: 3\n", {"broker": {"keepalive": 3}}),
        ("broker:\n  url: http://h\n", {"broker": {"url": "http://h"}}),
        ("broker:\n  clean_start: false\n", {"broker": {"clean_start": False}}),
        (
            "broker:\n  url: mqtt://h\n  protocol: '3.1.1'\n  password: p\n",
            {"broker": {"url": "mqtt://h", "protocol": "3.1.1", "password": "p"}},
        ),
        (
            "routes:\n  - topic: /a/b\n    consumer: x:Y\n",
            {"routes": [{"topic": "/a/b", "consumer": "x:Y"}]},
        ),
        ("limits:\n  queue_size: 0\n", {"limits": {"queue_size": 0}}),
        ("dead_letter_topic: a/+\n", {"dead_letter_topic": "a/+"}),
    ],
    ids=["range", "url", "clean-start", "password", "topic", "queue", "dead-letter"],
)
def test_the_message_is_the_files(yaml: str, mapping: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as from_file:
        parse_config(yaml, "config.yaml", import_consumers=False)
    with pytest.raises(ConfigError) as from_settings:
        parse_settings(mapping, import_consumers=False)
    assert from_settings.value.message == from_file.value.message
    assert from_settings.value.key == from_file.value.key
    assert str(from_settings.value) == (
        f"{SETTING}{subscripted(from_file.value.key)}: {from_file.value.message}"
    )


def test_every_mistake_is_reported_at_once_in_reading_order() -> None:
    assert errors(
        {
            "broker": {"keepalive": 1, "url": "mqtt://h"},
            "routes": [{"topic": "a", "consumer": "x:Y", "qos": 3}],
            "limits": {"queue_size": "many"},
        },
        import_consumers=False,
    ) == [
        f'{SETTING}["broker"]["keepalive"]: must be between 5 and 65535, got 1',
        f'{SETTING}["routes"][0]["qos"]: expected 0, 1 or 2, got 3',
        f'{SETTING}["limits"]["queue_size"]: expected an integer, got \'many\'',
    ]


def test_the_root_must_be_a_mapping() -> None:
    assert error(["broker"]) == f"{SETTING}: expected a mapping, got a list"
    assert error("mqtt://h", source="settings.BRIDGE") == (
        "settings.BRIDGE: expected a mapping, got 'mqtt://h'"
    )


# --- values YAML cannot hold --------------------------------------------------------------------


def test_a_class_where_an_import_path_belongs_says_which_string_to_write() -> None:
    mapping = {
        "routes": [
            {"topic": "a/b", "consumer": "tests.apps:RecordingConsumer"},
            {"topic": "c/d", "consumer": RecordingConsumer},
        ]
    }
    assert error(mapping) == (
        f'{SETTING}["routes"][1]["consumer"]: got the class tests.apps.RecordingConsumer; write '
        "its import path as a string: 'tests.apps:RecordingConsumer'"
    )


def test_an_object_is_an_error_at_its_key_and_reading_goes_on() -> None:
    import datetime

    assert errors(
        {
            "limits": {"idle_timeout": datetime.timedelta(seconds=5)},
            "broker": {"reconnect": object(), "keepalive": 2},
        }
    ) == [
        f'{SETTING}["broker"]["keepalive"]: must be between 5 and 65535, got 2',
        f'{SETTING}["broker"]["reconnect"]: got a builtins.object object; use a string, '
        "number, boolean, None, dict or list",
        f'{SETTING}["limits"]["idle_timeout"]: got a datetime.timedelta object; use a string, '
        "number, boolean, None, dict or list",
    ]


def test_a_set_or_a_mapping_that_contains_itself() -> None:
    looped: dict[str, Any] = {"url": "mqtt://h"}
    looped["tls"] = looped
    assert errors({"broker": looped, "routes": {"a/b"}}) == [
        f'{SETTING}["broker"]["tls"]: contains itself; give plain values',
        f'{SETTING}["routes"]: got a builtins.set object; use a string, number, boolean, '
        "None, dict or list",
    ]


# --- beyond the reader: the same naming everywhere ----------------------------------------------


def test_command_line_overrides_are_named_as_options() -> None:
    assert error({}, overrides={"broker.url": "ftp://h"}).startswith("command line: --broker: ")


def test_errors_survive_pickling() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"brokr": 1, "limits": {"queue_size": 0}})
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value)
    assert again.errors[0].subscripts


def test_two_routes_on_one_filter_name_both_settings() -> None:
    config = parse_settings(
        {
            "routes": [
                {"topic": "sensors/{id}/data", "consumer": "tests.apps:RecordingConsumer"},
                {"topic": "sensors/+/data", "consumer": "tests.apps:RecordingConsumer"},
            ]
        }
    )
    with pytest.raises(ConfigError) as info:
        check_route_filters(config, [], "settings.ASGI_APPLICATION")
    assert str(info.value) == (
        f'{SETTING}["routes"][1]["topic"]: subscribes to \'sensors/+/data\' like '
        f'{SETTING}["routes"][0]; only the first would ever get messages: remove one, or give '
        "them different patterns"
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("", ""),
        ("routes[12].consumer", '["routes"][12]["consumer"]'),
        ("broker.tls.ca_file", '["broker"]["tls"]["ca_file"]'),
        ("broker.users.jane.doe", '["broker"]["users"]["jane.doe"]'),
        ("broker.no.such", '["broker"]["no.such"]'),
        ('limits."x', '["limits"]["\\"x"]'),
    ],
)
def test_subscripted_follows_the_declarations(key: str, expected: str) -> None:
    assert subscripted(key) == expected
