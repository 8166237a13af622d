"""Tests for mqttbridge.config.settings: each key declared once, read generically."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
import yaml

from mqttbridge.config.schema import (
    BrokerConfig,
    ChannelLayerConfig,
    Config,
    ConfigError,
    LimitsConfig,
    ReconnectConfig,
    RouteConfig,
    TLSConfig,
    _Reader,
    default_config,
    parse_config,
)
from mqttbridge.config.settings import Flag, Kind, flags, keys_of, settings_of, text, value
from mqttbridge.config.values import _check_shared_group
from mqttbridge.config.yaml_reader import _boolean, _Integer, _Seconds, _Section

SECTIONS = [Config, BrokerConfig, TLSConfig, ReconnectConfig, ChannelLayerConfig, RouteConfig,
            LimitsConfig]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Sample:
    """A section no one has written a reader for."""

    count: int = value(3, _Integer(1, 9), doc="how many")
    wait: float = value(0.5, _Seconds(0), doc="how long")
    group: str | None = text(None, check=_check_shared_group, doc="a group")
    name: str = text("x", doc="a name")
    internal: int = 0  # not a key


def read_sample(yaml_text: str) -> tuple[dict[str, object], list[str]]:
    reader = _Reader("sample.yaml", {})
    root = yaml.compose(textwrap.dedent(yaml_text), Loader=yaml.SafeLoader)
    values = reader.read_settings(_Section(reader, root, "", keys_of(Sample)), Sample)
    return values, [str(error) for error in reader.errors]


def test_the_walker_reads_any_declared_dataclass_with_defaults_for_missing_keys() -> None:
    values, errors = read_sample("count: 7\ngroup: g1\n")
    assert errors == []
    assert values == {"count": 7, "wait": 0.5, "group": "g1", "name": "x"}
    assert Sample(**values) == Sample(count=7, group="g1")  # type: ignore[arg-type]


def test_the_walker_reports_every_wrong_key_with_its_line_and_the_declared_bounds() -> None:
    values, errors = read_sample("""\
        count: 10
        wait: -1
        group: a/b
        nmae: y
    """)
    assert errors == [
        "sample.yaml:4: nmae: unknown key; did you mean 'name'?",
        "sample.yaml:1: count: must be between 1 and 9, got 10",
        "sample.yaml:2: wait: must be at least 0, got -1",
        "sample.yaml:3: group: must be non-empty and contain no '/', '+' or '#', got 'a/b'",
    ]
    assert (values["count"], values["wait"]) == (3, 0.5)  # the defaults stand in


def test_a_section_accepts_exactly_its_declared_keys() -> None:
    assert keys_of(Sample) == ("count", "wait", "group", "name")
    assert keys_of(LimitsConfig) == (
        "max_payload_bytes", "max_instances", "idle_timeout", "queue_size", "shutdown_timeout",
    )  # fmt: skip
    # Derived fields and bookkeeping are no keys: the file cannot set them.
    assert "scheme" not in keys_of(BrokerConfig) and "url_given" not in keys_of(ChannelLayerConfig)
    assert "line" not in keys_of(RouteConfig) and "source" not in keys_of(Config)


def test_unknown_key_lists_the_declared_keys_when_none_is_close() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("limits:\n  zzz: 1\n", "c.yaml", environ={})
    listed = ", ".join(repr(key) for key in keys_of(LimitsConfig))
    assert str(info.value) == f"c.yaml:2: limits.zzz: unknown key; expected one of {listed}"


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda cls: cls.__name__)
def test_the_declared_defaults_are_what_an_empty_file_gives(cls: type) -> None:
    config = default_config()
    section = {
        Config: config, BrokerConfig: config.broker, TLSConfig: config.broker.tls,
        ReconnectConfig: config.broker.reconnect, ChannelLayerConfig: config.channel_layer,
        LimitsConfig: config.limits,
    }.get(cls)  # fmt: skip
    for field, declared in settings_of(cls):
        if section is None or declared.kind not in (Kind.VALUE, Kind.TEXT):
            continue
        if (cls, field.name) in {(BrokerConfig, "client_id"), (BrokerConfig, "protocol")}:
            continue  # generated, and 3.1.1 for the embedded broker: rules, not defaults
        assert getattr(section, field.name) == field.default, field.name


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda cls: cls.__name__)
def test_every_key_has_a_type_and_documentation(cls: type) -> None:
    for field, declared in settings_of(cls):
        assert declared.type_doc and declared.doc, field.name
        assert declared.doc == declared.doc.strip() and "|" not in declared.doc, field.name


def test_bounds_are_described_from_the_converter() -> None:
    assert _Integer(5, 65535).description == "integer, 5–65535"
    assert _Integer(1).description == "integer, ≥ 1"
    assert _Seconds(0, exclusive=True).description == "seconds, > 0"
    assert _Seconds(0).description == "seconds, ≥ 0"


def test_a_converter_that_cannot_describe_itself_needs_a_type() -> None:
    with pytest.raises(TypeError, match="give type="):
        value(False, _boolean, doc="on or off")


def test_command_line_flags_come_from_the_declarations() -> None:
    assert list(flags(Config)) == [
        (
            "broker.url",
            Flag(
                "--broker",
                "URL",
                "override broker.url (mqtt://host:port, mqtts://, ws://, wss:// or embedded)",
            ),
        ),
        ("broker.client_id", Flag("--client-id", "ID", "override broker.client_id")),
        (
            "http.listen",
            Flag(
                "--http",
                "HOST:PORT",
                "also serve the --asgi application's HTTP and WebSocket on HOST:PORT (http.listen)",
            ),
        ),
    ]


def test_an_override_without_a_flag_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match=r"no command-line option overrides 'limits\.queue_size'"):
        parse_config("", overrides={"limits.queue_size": "5"})
