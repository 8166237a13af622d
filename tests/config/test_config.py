"""Tests for mqttbridge.config: every value, default and error message, to the letter."""

from __future__ import annotations

import dataclasses
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqttbridge.broker.passwords import PasswordHash, hash_password
from mqttbridge.config.schema import (
    BrokerConfig,
    ChannelLayerConfig,
    Config,
    ConfigError,
    LimitsConfig,
    ReconnectConfig,
    RouteConfig,
    TLSConfig,
    default_config,
    import_string,
    load_config,
    parse_config,
)
from mqttbridge.protocol.topics import TopicError, compile_pattern
from tests import config_targets

CLIENT_ID = re.compile(r"mqttbridge-[0-9A-Za-z-]+-[0-9a-f]{8}")


def yaml_text(text: str) -> str:
    """The YAML as written in the test, first line being line 1."""
    return textwrap.dedent(text).lstrip("\n")


def load(text: str, **environ: str) -> Config:
    return parse_config(yaml_text(text), "config.yaml", environ=environ)


def error(text: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, **environ)
    return str(info.value)


def broker(text: str, **environ: str) -> BrokerConfig:
    return load(text, **environ).broker


# --- the error format --------------------------------------------------------------------------


def test_error_reads_file_line_key_and_message() -> None:
    exc = ConfigError("expected an integer, got 'abc'", source="c.yaml", line=3, key="a.b")
    assert str(exc) == "c.yaml:3: a.b: expected an integer, got 'abc'"
    assert (exc.source, exc.line, exc.key, exc.message) == (
        "c.yaml",
        3,
        "a.b",
        "expected an integer, got 'abc'",
    )


def test_error_leaves_out_line_and_key_when_there_are_none() -> None:
    assert str(ConfigError("file not found", source="config.yaml")) == "config.yaml: file not found"


def test_error_survives_pickling() -> None:
    exc = ConfigError("bad", source="c.yaml", line=2, key="broker.url")
    copy = pickle.loads(pickle.dumps(exc))
    assert (str(copy), copy.line, copy.key) == (str(exc), 2, "broker.url")


def test_missing_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("config.yaml")
    assert str(info.value) == "config.yaml: file not found"


def test_load_config_names_the_path_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("broker:\n  keepalive: abc\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:2: broker.keepalive: expected an integer, got 'abc'"


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("broker:\n  url: mqtt://broker.example\n")
    config = load_config(str(path))
    assert config.broker.host == "broker.example"
    assert config.source == str(path)


def test_yaml_syntax_error_names_file_and_line() -> None:
    text = """
        broker:
         url: mqtt://h
          keepalive: 5
    """
    assert error(text) == "config.yaml:3: invalid YAML: mapping values are not allowed here"


def test_unclosed_quote_is_a_syntax_error_with_its_line() -> None:
    message = error('broker:\n  url: "mqtt://h\n')
    assert message.startswith("config.yaml:3: invalid YAML: found unexpected end of stream")


def test_more_than_one_document_is_refused() -> None:
    assert error("broker: {}\n---\nlimits: {}\n") == (
        "config.yaml:2: invalid YAML: but found another document "
        "(expected a single document in the stream)"
    )


@pytest.mark.parametrize(
    ("text", "got"), [("- a\n- b\n", "a list"), ("hello\n", "'hello'"), ("42\n", "42")]
)
def test_top_level_must_be_a_mapping(text: str, got: str) -> None:
    assert error(text) == f"config.yaml:1: expected a mapping, got {got}"


# --- defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_file_gives_all_defaults(text: str) -> None:
    config = parse_config(text, "config.yaml")
    assert config == Config(broker=config.broker, source="config.yaml")
    assert dataclasses.replace(config.broker, client_id=None) == BrokerConfig(protocol="3.1.1")


def test_default_values() -> None:
    config = default_config()
    b = config.broker
    assert (b.url, b.scheme, b.host, b.port, b.path) == (
        "embedded",
        "embedded",
        "127.0.0.1",
        1883,
        "",
    )
    assert b.listen == "127.0.0.1:1883"
    assert b.allow_anonymous is None
    assert b.username is None and b.password is None
    assert b.protocol == "3.1.1"  # the embedded broker's only protocol
    assert (b.keepalive, b.clean_start, b.session_expiry) == (30, True, 0)
    assert b.shared_group is None
    assert b.tls == TLSConfig(ca_file=None, cert_file=None, key_file=None, insecure=False)
    assert b.reconnect == ReconnectConfig(min_delay=0.5, max_delay=30.0)
    assert b.outbound_queue == 10000
    assert config.channel_layer == ChannelLayerConfig("memory://", "mqtt.publish", 86400)
    assert config.routes == ()
    assert config.limits == LimitsConfig(
        max_payload_bytes=262144,
        max_instances=10000,
        idle_timeout=300.0,
        queue_size=1000,
        shutdown_timeout=10.0,
    )
    assert config.dead_letter_topic == "mqttbridge/dead-letter"
    assert config.warnings == ()


def test_remote_broker_defaults_to_mqtt_5() -> None:
    assert broker("broker:\n  url: mqtt://h\n").protocol == "5"


def test_null_sections_take_their_defaults() -> None:
    config = load("broker:\nchannel_layer:\nroutes:\nlimits:\n")
    assert config.routes == ()
    assert config.limits == LimitsConfig()
    assert config.channel_layer == ChannelLayerConfig()


def test_every_config_class_is_frozen() -> None:
    config = default_config()
    objects: list[Any] = [config, config.broker, config.broker.tls, config.broker.reconnect]
    objects += [config.channel_layer, config.limits, RouteConfig("a", "m:C")]
    for obj in objects:
        field = dataclasses.fields(obj)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)


# --- unknown and duplicate keys ----------------------------------------------------------------


def test_unknown_key_suggests_the_closest_known_key() -> None:
    text = """
        # the broker
        broker:
          urll: mqtt://h
    """
    assert error(text) == "config.yaml:3: broker.urll: unknown key; did you mean 'url'?"


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    assert error("broker:\n  reconnect:\n    backoff: 2\n") == (
        "config.yaml:3: broker.reconnect.backoff: unknown key; "
        "expected one of 'min_delay', 'max_delay'"
    )


def test_unknown_top_level_key_is_refused() -> None:
    assert error("brokers: {}\n") == "config.yaml:1: brokers: unknown key; did you mean 'broker'?"


def test_unknown_key_in_a_route_names_the_route() -> None:
    text = """
        routes:
          - topic: a/b
            consumer: tests.config_targets:ExampleConsumer
          - topic: a/c
            consumer: tests.config_targets:ExampleConsumer
            qso: 2
    """
    assert error(text) == "config.yaml:6: routes[1].qso: unknown key; did you mean 'qos'?"


def test_duplicate_key_is_refused_naming_the_first() -> None:
    text = """
        broker:
          url: mqtt://a
          keepalive: 10
          url: mqtt://b
    """
    assert error(text) == "config.yaml:4: broker.url: duplicate key (first on line 2)"


def test_x_keys_at_the_top_level_hold_anchors_for_merge_keys() -> None:
    text = """
        x-route: &route
          consumer: tests.config_targets:ExampleConsumer
          qos: 2
        routes:
          - <<: *route
            topic: a/b
          - <<: *route
            topic: a/c
            qos: 0
    """
    routes = load(text).routes
    assert [(r.topic, r.qos, r.consumer_class) for r in routes] == [
        ("a/b", 2, config_targets.ExampleConsumer),
        ("a/c", 0, config_targets.ExampleConsumer),
    ]


def test_x_keys_are_only_ignored_at_the_top_level() -> None:
    assert error("broker:\n  x-note: hi\n") == (
        "config.yaml:2: broker.x-note: unknown key; expected one of 'url', 'listen', "
        "'allow_anonymous', 'users', 'client_id', 'username', 'password', 'protocol', "
        "'keepalive', 'clean_start', 'session_expiry', 'shared_group', 'tls', 'reconnect', "
        "'outbound_queue'"
    )


def test_non_scalar_key_is_refused() -> None:
    assert error("broker:\n  ? [a, b]\n  : 1\n") == (
        "config.yaml:2: broker: keys must be plain words, not mappings or lists"
    )


# --- types -------------------------------------------------------------------------------------


def test_wrong_type_names_the_expected_type() -> None:
    assert error("broker:\n  keepalive: abc\n") == (
        "config.yaml:2: broker.keepalive: expected an integer, got 'abc'"
    )


@pytest.mark.parametrize("value", ["true", "yes", "false"])
def test_booleans_are_not_integers(value: str) -> None:
    got = "false" if value == "false" else "true"
    assert error(f"limits:\n  queue_size: {value}\n") == (
        f"config.yaml:2: limits.queue_size: expected an integer, got {got}"
    )


def test_floats_are_not_integers() -> None:
    assert error("limits:\n  max_instances: 10.5\n") == (
        "config.yaml:2: limits.max_instances: expected an integer, got 10.5"
    )


def test_quoted_number_is_a_string_not_an_integer() -> None:
    assert error('broker:\n  keepalive: "30"\n') == (
        "config.yaml:2: broker.keepalive: expected an integer, got '30'"
    )


@pytest.mark.parametrize(("value", "got"), [("{a: 1}", "a mapping"), ("[1]", "a list")])
def test_collection_where_a_value_belongs_is_named(value: str, got: str) -> None:
    assert error(f"broker:\n  url: mqtt://h\n  keepalive: {value}\n") == (
        f"config.yaml:3: broker.keepalive: expected an integer, got {got}"
    )
    assert error(f"broker:\n  client_id: {value}\n") == (
        f"config.yaml:2: broker.client_id: expected a string, got {got}"
    )


def test_scalar_where_a_section_belongs_is_named() -> None:
    assert error("broker: mqtt://h\n") == (
        "config.yaml:1: broker: expected a mapping, got 'mqtt://h'"
    )
    assert error("routes: a/b\n") == "config.yaml:1: routes: expected a list, got 'a/b'"


def test_boolean_settings_take_only_booleans() -> None:
    assert error("broker:\n  clean_start: 1\n") == (
        "config.yaml:2: broker.clean_start: expected true or false, got 1"
    )


def test_string_settings_take_unquoted_numbers_and_words_as_written() -> None:
    # YAML 1.1 reads 12345 as an integer and `no` as false; string settings want the text.
    b = broker("broker:\n  url: mqtts://h\n  username: no\n  password: 012345\n")
    assert (b.username, b.password) == ("no", "012345")


def test_null_string_setting_is_none_but_quoted_null_is_text() -> None:
    assert broker("broker:\n  url: mqtt://h\n  username: null\n").username is None
    assert broker("broker:\n  url: mqtt://h\n  username: ~\n").username is None
    assert broker('broker:\n  url: mqtt://h\n  username: "null"\n').username == "null"


def test_required_string_setting_refuses_null() -> None:
    assert error("broker:\n  url:\n") == "config.yaml:2: broker.url: expected a string, got null"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be greater than 0, got 0"),
        ("-1.5", "must be greater than 0, got -1.5"),
        (".nan", "expected a finite number of seconds, got nan"),
        (".inf", "expected a finite number of seconds, got inf"),
        ("soon", "expected a number of seconds, got 'soon'"),
        ("false", "expected a number of seconds, got false"),
    ],
)
def test_seconds_must_be_finite_and_positive(value: str, message: str) -> None:
    assert error(f"limits:\n  idle_timeout: {value}\n") == (
        f"config.yaml:2: limits.idle_timeout: {message}"
    )


def test_seconds_take_integers_as_floats() -> None:
    limits = load("limits:\n  idle_timeout: 60\n  shutdown_timeout: 0\n").limits
    assert (limits.idle_timeout, limits.shutdown_timeout) == (60.0, 0.0)
    assert isinstance(limits.idle_timeout, float)


def test_explicit_tag_that_cannot_be_read_is_an_error() -> None:
    assert error("broker:\n  keepalive: !!int abc\n") == (
        "config.yaml:2: broker.keepalive: cannot read 'abc' as !!int"
    )


# --- tags that would construct Python objects --------------------------------------------------


def test_python_object_tag_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"""
        broker:
          url: !!python/object/apply:os.system ["touch {marker}"]
    """
    assert error(text) == (
        "config.yaml:2: broker.url: tag '!!python/object/apply:os.system' is not allowed; "
        "use plain YAML values"
    )
    assert not marker.exists()


def test_python_tag_on_a_section_is_refused() -> None:
    assert error("broker: !!python/object:collections.OrderedDict {}\n") == (
        "config.yaml:1: broker: tag '!!python/object:collections.OrderedDict' is not allowed; "
        "use plain YAML values"
    )


def test_python_name_tag_on_a_scalar_is_refused() -> None:
    assert error("dead_letter_topic: !!python/name:os.system\n") == (
        "config.yaml:1: dead_letter_topic: tag '!!python/name:os.system' is not allowed; "
        "use plain YAML values"
    )


def test_python_tag_on_the_whole_document_is_refused() -> None:
    assert error("!!python/object/new:os.system [ls]\n") == (
        "config.yaml:1: tag '!!python/object/new:os.system' is not allowed; use plain YAML values"
    )


def test_local_tag_is_refused() -> None:
    assert error("limits:\n  queue_size: !secret 5\n") == (
        "config.yaml:2: limits.queue_size: tag '!secret' is not allowed; use plain YAML values"
    )


# --- environment substitution ------------------------------------------------------------------


def test_environment_variable_is_substituted() -> None:
    b = broker("broker:\n  url: mqtt://${HOST}:${PORT}\n", HOST="mq.example", PORT="1884")
    assert (b.url, b.host, b.port) == ("mqtt://mq.example:1884", "mq.example", 1884)


def test_unset_variable_is_an_error_naming_it_and_the_line() -> None:
    text = """
        broker:
          url: mqtt://h
          password: ${MQTT_PASSWORD}
    """
    assert error(text) == (
        "config.yaml:3: broker.password: environment variable 'MQTT_PASSWORD' is not set"
    )


def test_default_is_used_when_variable_is_unset_or_empty() -> None:
    text = "broker:\n  url: mqtt://${HOST:-localhost}\n"
    assert broker(text).host == "localhost"
    assert broker(text, HOST="").host == "localhost"
    assert broker(text, HOST="mq").host == "mq"


def test_variable_set_to_empty_without_default_is_empty() -> None:
    assert broker("broker:\n  url: mqtt://h\n  username: u${SUFFIX}\n", SUFFIX="").username == "u"


def test_substitution_happens_before_type_conversion() -> None:
    assert broker("broker:\n  keepalive: ${KA:-30}\n").keepalive == 30
    assert broker("broker:\n  keepalive: ${KA}\n", KA="45").keepalive == 45
    assert (
        broker("broker:\n  clean_start: ${CLEAN}\n  client_id: c\n", CLEAN="false").clean_start
        is False
    )
    assert load("limits:\n  idle_timeout: ${IDLE}\n", IDLE="2.5").limits.idle_timeout == 2.5


def test_substituted_value_of_the_wrong_type_is_reported_as_substituted() -> None:
    assert error("broker:\n  keepalive: ${KA}\n", KA="soon") == (
        "config.yaml:2: broker.keepalive: expected an integer, got 'soon'"
    )


def test_substituted_value_is_not_parsed_as_yaml() -> None:
    b = broker("broker:\n  url: mqtt://h\n  username: ${USER}\n", USER="[a, {b: c}] # x")
    assert b.username == "[a, {b: c}] # x"


def test_quoted_reference_stays_a_string() -> None:
    assert error('broker:\n  keepalive: "${KA}"\n', KA="45") == (
        "config.yaml:2: broker.keepalive: expected an integer, got '45'"
    )


def test_empty_substitution_in_an_optional_setting_means_null() -> None:
    # Lets one file leave a setting out through an unset variable.
    assert broker("broker:\n  url: mqtt://h\n  username: ${MQTT_USER:-}\n").username is None


def test_dollar_dollar_brace_is_a_literal_reference() -> None:
    b = broker("broker:\n  url: mqtt://h\n  username: u\n  password: p$${NOT}\n")
    assert b.password == "p${NOT}"


@pytest.mark.parametrize("value", ["${HOST", "${1HOST}", "${HOST:default}", "${}"])
def test_malformed_reference_is_refused(value: str) -> None:
    assert error(f"broker:\n  url: mqtt://{value}\n") == (
        f"config.yaml:2: broker.url: invalid reference in 'mqtt://{value}': write ${{NAME}} or "
        "${NAME:-default}, or $${ for a literal ${"
    )


def test_variables_come_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTTBRIDGE_TEST_HOST", "from-env")
    text = "broker:\n  url: mqtt://${MQTTBRIDGE_TEST_HOST}\n"
    assert parse_config(text).broker.host == "from-env"


def test_keys_are_not_substituted() -> None:
    assert error("broker:\n  ${KEY}: x\n", KEY="url") == (
        "config.yaml:2: broker.${KEY}: unknown key; expected one of 'url', 'listen', "
        "'allow_anonymous', 'users', 'client_id', 'username', 'password', 'protocol', "
        "'keepalive', 'clean_start', 'session_expiry', 'shared_group', 'tls', 'reconnect', "
        "'outbound_queue'"
    )


# --- broker ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "path"),
    [
        ("mqtt://broker.example", "mqtt", "broker.example", 1883, ""),
        ("mqtt://broker.example:1884", "mqtt", "broker.example", 1884, ""),
        ("mqtt://broker.example/", "mqtt", "broker.example", 1883, ""),
        ("mqtts://broker.example", "mqtts", "broker.example", 8883, ""),
        ("ws://broker.example", "ws", "broker.example", 80, "/"),
        ("ws://broker.example:8080/mqtt", "ws", "broker.example", 8080, "/mqtt"),
        ("wss://broker.example", "wss", "broker.example", 443, "/"),
        ("wss://broker.example/mqtt?token=x", "wss", "broker.example", 443, "/mqtt?token=x"),
        ("mqtt://[::1]:1884", "mqtt", "::1", 1884, ""),
        ("mqtt://10.0.0.7", "mqtt", "10.0.0.7", 1883, ""),
    ],
)
def test_broker_url_gives_scheme_host_port_and_path(
    url: str, scheme: str, host: str, port: int, path: str
) -> None:
    b = broker(f"broker:\n  url: {url}\n")
    assert (b.scheme, b.host, b.port, b.path) == (scheme, host, port, path)
    assert b.uses_tls is (scheme in ("mqtts", "wss"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://h",
            "expected 'embedded' or an mqtt://, mqtts://, ws:// or wss:// URL, got 'http://h'",
        ),
        (
            "localhost",
            "expected 'embedded' or an mqtt://, mqtts://, ws:// or wss:// URL, got 'localhost'",
        ),
        (
            "mqtt:///x",
            "expected 'embedded' or an mqtt://, mqtts://, ws:// or wss:// URL, got 'mqtt:///x'",
        ),
        ("mqtt://h:99999", "invalid port in 'mqtt://h:99999'; expected a number from 1 to 65535"),
        ("mqtt://h:0", "invalid port in 'mqtt://h:0'; expected a number from 1 to 65535"),
        ("mqtt://h:x", "invalid port in 'mqtt://h:x'; expected a number from 1 to 65535"),
        ("mqtt://u:p@h", "credentials do not belong in the URL; use broker.username and password"),
        ("mqtt://h/topic", "mqtt:// URLs take no path, got 'mqtt://h/topic'"),
        ("mqtts://h?x=1", "mqtts:// URLs take no path, got 'mqtts://h?x=1'"),
        ("mqtt://h#x", "unexpected '#' fragment in 'mqtt://h#x'"),
        ("mqtt://b%ad", "invalid host 'b%ad' in 'mqtt://b%ad'"),
    ],
)
def test_bad_broker_url_is_explained(url: str, message: str) -> None:
    assert error(f"broker:\n  url: '{url}'\n") == f"config.yaml:2: broker.url: {message}"


_ANY_URL = "expected 'embedded' or an mqtt://, mqtts://, ws:// or wss:// URL"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt//user:PASS@host", f"{_ANY_URL}, got 'mqtt//user:***@host'"),
        ("mqtt:/user:PASS@host", f"{_ANY_URL}, got 'mqtt:***@host'"),
        ("user:PASS@host:1883", f"{_ANY_URL}, got 'user:***@host:1883'"),
        ("mqtt:user:PASS@host", f"{_ANY_URL}, got 'mqtt:***@host'"),
        # A '/', '?' or '#' in the password ends the host part where urlsplit looks for it.
        ("mqtt://user:PA/SS@host", "invalid port in 'mqtt://user:***@host'; expected a number"),
        ("mqtt://user:PA?SS@host", "invalid port in 'mqtt://user:***@host'; expected a number"),
        ("mqtt://user:PA#SS@host", "invalid port in 'mqtt://user:***@host'; expected a number"),
        ("mqtt://user:PA@SS@host", "credentials do not belong in the URL"),
    ],
)
def test_a_malformed_broker_url_is_echoed_without_its_password(url: str, message: str) -> None:
    text = error(f"broker:\n  url: '{url}'\n")
    assert "PA" not in text  # neither the password nor any piece of it
    assert text.startswith(f"config.yaml:2: broker.url: {message}")


def test_a_malformed_broker_url_built_in_code_is_echoed_without_its_password() -> None:
    with pytest.raises(ValueError) as caught:
        BrokerConfig(url="mqtt//user:PASS@host")
    assert "PASS" not in str(caught.value) and "'mqtt//user:***@host'" in str(caught.value)


def test_broker_config_checks_its_url_when_built_directly() -> None:
    with pytest.raises(ValueError, match="got 'tcp://h'"):
        BrokerConfig(url="tcp://h")
    assert BrokerConfig(url="mqtts://h").port == 8883


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.2:1884", "127.0.0.2", 1884),
        ("[::1]:0", "::1", 0),
        ("localhost:65535", "localhost", 65535),
    ],
)
def test_embedded_host_and_port_come_from_listen(listen: str, host: str, port: int) -> None:
    b = broker(f"broker:\n  listen: '{listen}'\n")
    assert (b.scheme, b.host, b.port, b.listen) == ("embedded", host, port, listen)


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("1883", "expected host:port, got '1883'"),
        (":1883", "expected host:port, got ':1883'"),
        ("localhost:", "expected host:port, got 'localhost:'"),
        ("::1:1883", "write an IPv6 address in brackets, e.g. '[::1]:1883', got '::1:1883'"),
        ("localhost:65536", "port must be between 0 and 65535, got 65536"),
    ],
)
def test_bad_listen_is_explained(listen: str, message: str) -> None:
    assert error(f"broker:\n  listen: '{listen}'\n") == f"config.yaml:2: broker.listen: {message}"


def test_listen_and_allow_anonymous_are_ignored_for_a_remote_broker() -> None:
    # One file may switch brokers with url: ${MQTTBRIDGE_BROKER:-embedded}.
    text = "broker:\n  url: mqtt://h\n  listen: 0.0.0.0:1884\n  allow_anonymous: true\n"
    b = broker(text)
    assert (b.scheme, b.host, b.port) == ("mqtt", "h", 1883)


def test_allow_anonymous_is_kept_for_the_embedded_broker() -> None:
    users = f"  users:\n    alice: {ALICE}\n"
    assert broker("broker:\n  allow_anonymous: false\n" + users).allow_anonymous is False
    assert broker("broker:\n  allow_anonymous: true\n").allow_anonymous is True


# --- the embedded broker's users ----------------------------------------------------------------

ALICE = hash_password("s3cret", iterations=1)


def test_users_map_usernames_to_password_hashes() -> None:
    mosquitto = (  # from mosquitto_passwd 2.0.11
        "$7$101$uOdVwLAhFK6nZgFf$kmho4/HagiNPaUwJORQdiTYp80DzdOZM/WfVKIRTb30LHFJyhOnLN+A0fV3U3eo8"
        "CaCFihEjidvERh15oL4BKg=="
    )
    b = broker(
        f"broker:\n  listen: 0.0.0.0:1883\n  users:\n    alice: {ALICE}\n"
        f"    '007': ${{BOB_HASH}}\n    carol: {mosquitto}\n",
        BOB_HASH=ALICE,
    )
    assert b.users == {"alice": ALICE, "007": ALICE, "carol": mosquitto}
    assert ALICE not in repr(b)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("s3cret", "expected a password hash ($7$...), not a password; make one with "
         "`mqttbridge passwd alice`"),
        ("$6$salt$hash", "Mosquitto 1.x hashes ($6$, one round of SHA-512) are too weak to "
         "accept; make one with `mqttbridge passwd alice`"),
        ("$7$many$c2FsdA==$aGFzaA==", "malformed $7$ password hash; make one with "
         "`mqttbridge passwd alice`"),
        ("", "expected a password hash ($7$...); make one with `mqttbridge passwd alice`"),
    ],
)  # fmt: skip
def test_a_user_without_a_password_hash_is_refused_without_showing_the_value(
    value: str, message: str
) -> None:
    text = (
        f"broker:\n  users:\n    alice: '{value}'\n" if value else "broker:\n  users:\n    alice:\n"
    )
    assert error(text) == f"config.yaml:3: broker.users.alice: {message}"


def test_embedded_broker_open_to_the_network_is_refused() -> None:
    assert error("broker:\n  url: embedded\n  listen: 0.0.0.0:18830\n") == (
        "config.yaml:3: broker.listen: 0.0.0.0:18830 is not a loopback address, and without "
        "broker.users the embedded broker would accept anonymous clients from the network; add "
        "broker.users (`mqttbridge passwd <username>` makes an entry), listen on "
        "127.0.0.1:18830, or set broker.allow_anonymous: true if that is intended"
    )
    assert broker("broker:\n  listen: 0.0.0.0:18830\n  allow_anonymous: true\n").port == 18830
    assert broker("broker:\n  listen: '[::]:1883'\n  allow_anonymous: true\n").host == "::"
    assert "listen on [::1]:1883" in error("broker:\n  listen: '[::]:1883'\n")


def test_embedded_broker_closed_to_every_device_is_refused() -> None:
    assert error("broker:\n  listen: 0.0.0.0:18830\n  allow_anonymous: false\n") == (
        "config.yaml:3: broker.allow_anonymous: false without broker.users admits no device; "
        "add broker.users (`mqttbridge passwd <username>` makes an entry) or leave "
        "allow_anonymous out"
    )


def test_users_are_not_required_for_a_remote_broker() -> None:
    b = broker("broker:\n  url: mqtt://h\n  listen: 0.0.0.0:1883\n  allow_anonymous: false\n")
    assert b.scheme == "mqtt"


def test_embedded_broker_listens_on_the_mqtt_port_of_loopback_by_default() -> None:
    assert (BrokerConfig().listen, broker("").listen) == ("127.0.0.1:1883", "127.0.0.1:1883")
    docs = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    assert "| `listen` | string | `127.0.0.1:1883` |" in docs


@pytest.mark.parametrize(
    ("value", "protocol"),
    [
        ("5", "5"),
        ("5.0", "5"),
        ("'5'", "5"),
        ("3.1.1", "3.1.1"),
        ("'3.1.1'", "3.1.1"),
        ("311", "3.1.1"),
        ("'311'", "3.1.1"),
    ],
)
def test_protocol_is_normalised(value: str, protocol: str) -> None:
    assert broker(f"broker:\n  url: mqtt://h\n  protocol: {value}\n").protocol == protocol


@pytest.mark.parametrize(
    ("value", "got"), [("4", "4"), ("'3'", "'3'"), ("true", "true"), ("v5", "'v5'")]
)
def test_unknown_protocol_is_refused(value: str, got: str) -> None:
    assert error(f"broker:\n  url: mqtt://h\n  protocol: {value}\n") == (
        f"config.yaml:3: broker.protocol: expected '3.1.1' or '5', got {got}"
    )


def test_embedded_broker_refuses_mqtt_5() -> None:
    assert error("broker:\n  protocol: 5\n") == (
        "config.yaml:2: broker.protocol: the embedded broker speaks MQTT 3.1.1 only; use '3.1.1'"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("keepalive", "4", "must be between 5 and 65535, got 4"),
        ("keepalive", "65536", "must be between 5 and 65535, got 65536"),
        ("session_expiry", "-1", "must be between 0 and 4294967295, got -1"),
        ("session_expiry", "4294967296", "must be between 0 and 4294967295, got 4294967296"),
        ("outbound_queue", "0", "must be at least 1, got 0"),
    ],
)
def test_broker_numbers_out_of_range_are_refused(key: str, value: str, message: str) -> None:
    assert error(f"broker:\n  url: mqtt://h\n  {key}: {value}\n") == (
        f"config.yaml:3: broker.{key}: {message}"
    )


def test_session_expiry_needs_mqtt_5() -> None:
    assert error("broker:\n  url: mqtt://h\n  protocol: 3.1.1\n  session_expiry: 60\n") == (
        "config.yaml:4: broker.session_expiry: only MQTT 5 has a session expiry; set protocol: '5'"
    )


def test_client_id_is_generated_when_left_out() -> None:
    first = broker("broker:\n  url: mqtt://h\n").client_id
    second = broker("broker:\n  url: mqtt://h\n").client_id
    assert first is not None and CLIENT_ID.fullmatch(first), first
    assert first != second


def test_given_client_id_is_kept() -> None:
    assert broker("broker:\n  client_id: plant-7\n").client_id == "plant-7"


def test_client_id_is_required_when_clean_start_is_false() -> None:
    text = """
        broker:
          url: mqtt://h
          clean_start: false
          session_expiry: 3600
    """
    assert error(text) == (
        "config.yaml:3: broker.clean_start: false needs a broker.client_id: the broker keeps the "
        "session under that id, and a generated one would differ on every start"
    )


def test_persistent_session_with_client_id_loads_without_warnings() -> None:
    text = (
        "broker:\n  url: mqtt://h\n  client_id: c1\n  clean_start: false\n  session_expiry: 3600\n"
    )
    config = load(text)
    assert (config.broker.client_id, config.broker.clean_start) == ("c1", False)
    assert config.warnings == ()


def test_persistent_session_without_expiry_warns_on_mqtt_5() -> None:
    config = load("broker:\n  url: mqtt://h\n  client_id: c1\n  clean_start: false\n")
    assert config.warnings == (
        "broker.clean_start is false but broker.session_expiry is 0: with MQTT 5 the broker drops "
        "the session when the connection closes; set session_expiry",
    )


def test_empty_client_id_is_refused() -> None:
    assert error("broker:\n  client_id: ''\n") == (
        "config.yaml:2: broker.client_id: must not be empty; leave it out to have one generated"
    )


def test_password_never_appears_in_repr() -> None:
    config = load("broker:\n  url: mqtts://h\n  username: u\n  password: hunter2-secret\n")
    assert config.broker.password == "hunter2-secret"
    assert "hunter2-secret" not in repr(config)
    assert "hunter2-secret" not in repr(config.broker)
    assert "hunter2-secret" not in str(config)


@pytest.mark.parametrize(
    ("url", "secure"), [("mqtt://broker.example", "mqtts"), ("ws://broker.example/mqtt", "wss")]
)
def test_password_in_clear_text_to_a_remote_host_warns(url: str, secure: str) -> None:
    config = load(f"broker:\n  url: {url}\n  username: u\n  password: p\n")
    assert config.warnings == (f"password sent in clear text to broker.example; use {secure}://",)


def test_username_alone_in_clear_text_warns_about_the_username() -> None:
    config = load("broker:\n  url: mqtt://10.1.2.3\n  username: u\n")
    assert config.warnings == ("username sent in clear text to 10.1.2.3; use mqtts://",)


@pytest.mark.parametrize(
    "url",
    [
        "mqtts://broker.example",
        "wss://broker.example",
        "mqtt://localhost",
        "mqtt://127.0.0.1",
        "mqtt://[::1]",
    ],
)
def test_credentials_over_tls_or_loopback_do_not_warn(url: str) -> None:
    assert load(f"broker:\n  url: '{url}'\n  username: u\n  password: p\n").warnings == ()


@pytest.mark.parametrize(
    ("url", "warning"),
    [
        (
            "mqtt://h:8883",
            "broker.url: port 8883 is the port for mqtts://, not mqtt://; use mqtts:// unless "
            "the broker is set up otherwise",
        ),
        (
            "mqtts://h:1883",
            "broker.url: port 1883 is the port for mqtt://, not mqtts://; use mqtt:// unless "
            "the broker is set up otherwise",
        ),
    ],
)
def test_a_scheme_that_does_not_fit_the_well_known_port_warns(url: str, warning: str) -> None:
    assert load(f"broker:\n  url: '{url}'\n").warnings == (warning,)


@pytest.mark.parametrize("url", ["mqtt://h:1883", "mqtts://h:8883", "mqtt://h:8884", "ws://h:8883"])
def test_a_scheme_that_fits_its_port_does_not_warn(url: str) -> None:
    assert load(f"broker:\n  url: '{url}'\n").warnings == ()


def test_password_without_username_is_refused_on_mqtt_3() -> None:
    assert error("broker:\n  url: mqtts://h\n  protocol: 3.1.1\n  password: p\n") == (
        "config.yaml:4: broker.password: MQTT 3.1.1 sends a password only with a broker.username"
    )
    assert broker("broker:\n  url: mqtts://h\n  password: p\n").password == "p"


def test_shared_group_is_kept() -> None:
    assert broker("broker:\n  shared_group: bridges\n").shared_group == "bridges"


@pytest.mark.parametrize("group", ["a/b", "a+", "#", ""])
def test_shared_group_with_topic_characters_is_refused(group: str) -> None:
    assert error(f"broker:\n  shared_group: '{group}'\n") == (
        f"config.yaml:2: broker.shared_group: must be non-empty and contain no '/', '+' or '#', "
        f"got {group!r}"
    )


def test_reconnect_delays_are_read() -> None:
    reconnect = broker("broker:\n  reconnect:\n    min_delay: 1\n    max_delay: 5.5\n").reconnect
    assert reconnect == ReconnectConfig(min_delay=1.0, max_delay=5.5)


def test_max_delay_below_min_delay_is_reported_at_max_delay() -> None:
    assert error("broker:\n  reconnect:\n    min_delay: 2\n    max_delay: 1\n") == (
        "config.yaml:4: broker.reconnect.max_delay: must be at least min_delay (2)"
    )


def test_min_delay_above_default_max_delay_is_reported_at_min_delay() -> None:
    assert error("broker:\n  reconnect:\n    min_delay: 60\n") == (
        "config.yaml:3: broker.reconnect.min_delay: must be at most max_delay (30)"
    )


def test_min_delay_must_be_positive() -> None:
    assert error("broker:\n  reconnect:\n    min_delay: 0\n") == (
        "config.yaml:3: broker.reconnect.min_delay: must be greater than 0, got 0"
    )


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two self-signed certificates with keys, an encrypted key, and a file that is not PEM."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    for name in ("a", "b"):
        run(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt",
        )  # fmt: skip
    run("rsa", "-in", "a.key", "-aes256", "-passout", "pass:x", "-out", "encrypted.key")
    (directory / "junk.pem").write_text("not a certificate\n")
    yield directory


def tls_yaml(url: str = "mqtts://h", **settings: str) -> str:
    lines = [f"    {key}: '{value}'" for key, value in settings.items()]
    return "\n".join(["broker:", f"  url: {url}", "  tls:", *lines]) + "\n"


def test_tls_files_are_loaded_and_kept(pki: Path) -> None:
    text = tls_yaml(ca_file=f"{pki}/a.crt", cert_file=f"{pki}/b.crt", key_file=f"{pki}/b.key")
    tls = broker(text).tls
    assert tls == TLSConfig(f"{pki}/a.crt", f"{pki}/b.crt", f"{pki}/b.key", insecure=False)


def test_tls_defaults_verify_against_the_system_store() -> None:
    assert broker("broker:\n  url: wss://h\n").tls == TLSConfig()


def test_tls_settings_are_refused_without_a_tls_url() -> None:
    assert error(tls_yaml("mqtt://h", ca_file="/ca.pem")) == (
        "config.yaml:4: broker.tls.ca_file: only used with mqtts:// or wss:// URLs"
    )
    assert error(tls_yaml("ws://h", insecure="true").replace("'true'", "true")) == (
        "config.yaml:4: broker.tls.insecure: only used with mqtts:// or wss:// URLs"
    )


def test_null_tls_settings_are_allowed_without_a_tls_url() -> None:
    text = "broker:\n  url: mqtt://h\n  tls:\n    ca_file: ${CA_FILE:-}\n    insecure: false\n"
    assert broker(text).tls == TLSConfig()


def test_missing_tls_file_is_named(pki: Path) -> None:
    assert error(tls_yaml(ca_file=f"{pki}/nope.crt")) == (
        f"config.yaml:4: broker.tls.ca_file: file not found: '{pki}/nope.crt'"
    )


def test_key_file_needs_cert_file(pki: Path) -> None:
    assert error(tls_yaml(key_file=f"{pki}/a.key")) == (
        "config.yaml:4: broker.tls.key_file: needs broker.tls.cert_file"
    )


def test_ca_file_that_is_not_a_certificate_is_refused(pki: Path) -> None:
    assert error(tls_yaml(ca_file=f"{pki}/junk.pem")) == (
        "config.yaml:4: broker.tls.ca_file: cannot load CA certificates: "
        "no certificate or crl found"
    )


def test_key_that_does_not_match_the_certificate_is_refused(pki: Path) -> None:
    assert error(tls_yaml(cert_file=f"{pki}/a.crt", key_file=f"{pki}/b.key")) == (
        "config.yaml:5: broker.tls.key_file: cannot use this key: key values mismatch"
    )


def test_encrypted_key_is_refused_without_prompting(pki: Path) -> None:
    assert error(tls_yaml(cert_file=f"{pki}/a.crt", key_file=f"{pki}/encrypted.key")) == (
        "config.yaml:5: broker.tls.key_file: cannot use this key: the private key is encrypted; "
        "give an unencrypted key file"
    )


def test_cert_file_that_is_not_pem_is_refused(pki: Path) -> None:
    assert error(tls_yaml(cert_file=f"{pki}/junk.pem")) == (
        "config.yaml:4: broker.tls.cert_file: cannot load certificate: not a PEM file"
    )


def test_insecure_tls_is_kept_and_warned_about() -> None:
    config = load("broker:\n  url: mqtts://broker.example\n  tls:\n    insecure: true\n")
    assert config.broker.tls.insecure is True
    assert config.warnings == (
        "TLS certificate verification is disabled for broker.example (broker.tls.insecure)",
    )


# --- channel layer -----------------------------------------------------------------------------


def test_memory_layer_settings() -> None:
    layer = load("channel_layer:\n  url: memory://\n").channel_layer
    assert layer.channels_settings() == {"BACKEND": "mqttbridge.layers.memory.InMemoryChannelLayer"}


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://cache.example:6380/2", "redis://:pw@h/1", "redis://h"],
)
def test_redis_layer_settings(url: str) -> None:
    layer = load(f"channel_layer:\n  url: '{url}'\n  group_expiry: 600\n").channel_layer
    assert layer.channels_settings() == {
        "BACKEND": "mqttbridge.layers.redis.RedisChannelLayer",
        "CONFIG": {"hosts": [url], "group_expiry": 600},
    }


def test_redis_group_expiry_defaults_to_a_day() -> None:
    layer = load("channel_layer:\n  url: redis://h:6379/0\n").channel_layer
    assert layer.channels_settings()["CONFIG"]["group_expiry"] == 86400


def test_redis_password_is_masked_in_repr() -> None:
    layer = load("channel_layer:\n  url: redis://:s3cret@h:6379/0\n").channel_layer
    assert layer.url == "redis://:s3cret@h:6379/0"
    assert "s3cret" not in repr(layer)
    assert "redis://:***@h:6379/0" in repr(layer)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("amqp://h", "expected 'memory://' or a redis:// or rediss:// URL, got 'amqp://h'"),
        ("memory", "expected 'memory://' or a redis:// or rediss:// URL, got 'memory'"),
        (
            "amqp://u:secret@h",
            "expected 'memory://' or a redis:// or rediss:// URL, got 'amqp://u:***@h'",
        ),
        ("redis://", "no host in 'redis://'"),
        ("redis://h:port", "invalid port in 'redis://h:port'"),
        ("redis://h/cache", "the database after the host must be a number, got 'cache'"),
        (
            "redis//u:s3cret@h",
            "expected 'memory://' or a redis:// or rediss:// URL, got 'redis//u:***@h'",
        ),
        ("redis://u:s3/cret@h", "invalid port in 'redis://u:***@h'"),
    ],
)
def test_bad_channel_layer_url_is_explained(url: str, message: str) -> None:
    assert (
        error(f"channel_layer:\n  url: '{url}'\n") == f"config.yaml:2: channel_layer.url: {message}"
    )


def test_publish_channel_must_be_a_channel_name() -> None:
    assert (
        load("channel_layer:\n  publish_channel: iot.out\n").channel_layer.publish_channel
        == "iot.out"
    )
    assert error("channel_layer:\n  publish_channel: 'mqtt publish'\n") == (
        "config.yaml:2: channel_layer.publish_channel: a channel name is 1 to 99 ASCII letters, "
        "digits, '-', '_' or '.', got 'mqtt publish'"
    )


# --- routes ------------------------------------------------------------------------------------


def test_routes_are_read_with_their_lines_and_classes() -> None:
    text = """
        routes:
          - topic: sensors/{device_id}/temperature
            consumer: tests.config_targets:ExampleConsumer
          - topic: sensors/+/status
            consumer: tests.config_targets.ExampleConsumer
            qos: 0
          - topic: ota/{rest:path}
            consumer: tests.config_targets:Outer.Inner
            qos: 2
    """
    routes = load(text).routes
    assert routes == (
        RouteConfig(
            "sensors/{device_id}/temperature", "tests.config_targets:ExampleConsumer", 1, 2
        ),
        RouteConfig("sensors/+/status", "tests.config_targets.ExampleConsumer", 0, 4),
        RouteConfig("ota/{rest:path}", "tests.config_targets:Outer.Inner", 2, 7),
    )
    assert [route.consumer_class for route in routes] == [
        config_targets.ExampleConsumer,
        config_targets.ExampleConsumer,
        config_targets.Outer.Inner,
    ]


def test_consumer_attribute_error_names_module_and_attribute() -> None:
    lines = ["routes:"]
    for index in range(3):
        name = "ExampleConsume" if index == 2 else "ExampleConsumer"
        lines += [f"  - topic: t/{index}", f"    consumer: tests.config_targets:{name}"]
    lines[0:0] = ["# " + str(n) for n in range(7)]  # moves the bad consumer to line 14
    assert error("\n".join(lines) + "\n") == (
        "config.yaml:14: routes[2].consumer: module 'tests.config_targets' has no attribute "
        "'ExampleConsume'"
    )


def test_consumer_in_a_missing_module_is_reported() -> None:
    text = "routes:\n  - topic: a/b\n    consumer: consumers.nonexistent_xyz:Thing\n"
    assert error(text) == (
        "config.yaml:3: routes[0].consumer: cannot import module 'consumers.nonexistent_xyz': "
        "No module named 'consumers.nonexistent_xyz'"
    )


def test_consumer_module_that_fails_on_import_is_reported_with_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_consumers_mod.py").write_text(
        "raise RuntimeError('settings are not configured')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_consumers_mod", raising=False)
    text = "routes:\n  - topic: a/b\n    consumer: broken_consumers_mod:Thing\n"
    assert error(text) == (
        "config.yaml:3: routes[0].consumer: cannot import module 'broken_consumers_mod': "
        "RuntimeError: settings are not configured"
    )


def test_consumer_that_is_not_a_class_is_refused() -> None:
    text = "routes:\n  - topic: a/b\n    consumer: tests.config_targets:not_a_class\n"
    assert error(text) == (
        "config.yaml:3: routes[0].consumer: 'tests.config_targets:not_a_class' is not a class"
    )


def test_consumer_without_module_is_refused() -> None:
    text = "routes:\n  - topic: a/b\n    consumer: ExampleConsumer\n"
    assert error(text) == (
        "config.yaml:3: routes[0].consumer: expected 'module:Class' or 'module.Class', "
        "got 'ExampleConsumer'"
    )


@pytest.mark.parametrize("missing", ["topic", "consumer"])
def test_route_needs_topic_and_consumer(missing: str) -> None:
    route = {"topic": "a/b", "consumer": "tests.config_targets:ExampleConsumer", "qos": "1"}
    del route[missing]
    body = "\n    ".join(f"{key}: {value}" for key, value in route.items())
    assert error(f"routes:\n  - {body}\n") == (
        f"config.yaml:2: routes[0].{missing}: required key is missing"
    )


def test_invalid_topic_pattern_is_reported_at_the_topic_line() -> None:
    pattern = "sensors/{id}/{id}"
    with pytest.raises(TopicError) as topic_error:
        compile_pattern(pattern)
    text = f"routes:\n  - consumer: tests.config_targets:ExampleConsumer\n    topic: '{pattern}'\n"
    assert error(text) == f"config.yaml:3: routes[0].topic: {topic_error.value}"


@pytest.mark.parametrize(
    ("value", "got"),
    [("3", "3"), ("-1", "-1"), ("true", "true"), ("high", "'high'"), ("1.0", "1.0")],
)
def test_route_qos_must_be_0_1_or_2(value: str, got: str) -> None:
    text = "routes:\n  - topic: a/b\n    consumer: tests.config_targets:ExampleConsumer\n"
    text += f"    qos: {value}\n"
    assert error(text) == f"config.yaml:4: routes[0].qos: expected 0, 1 or 2, got {got}"


def test_route_that_is_not_a_mapping_is_refused() -> None:
    assert error("routes:\n  - a/b\n") == "config.yaml:2: routes[0]: expected a mapping, got 'a/b'"


# --- limits and dead letters -------------------------------------------------------------------


def test_limits_are_read() -> None:
    text = """
        limits:
          max_payload_bytes: 1024
          max_instances: 5
          idle_timeout: 1.5
          queue_size: 10
          shutdown_timeout: 0
    """
    assert load(text).limits == LimitsConfig(1024, 5, 1.5, 10, 0.0)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_payload_bytes", "0", "must be between 1 and 268435455, got 0"),
        ("max_payload_bytes", "268435456", "must be between 1 and 268435455, got 268435456"),
        ("max_instances", "0", "must be at least 1, got 0"),
        ("queue_size", "0", "must be at least 1, got 0"),
        ("shutdown_timeout", "-1", "must be at least 0, got -1"),
    ],
)
def test_limits_out_of_range_are_refused(key: str, value: str, message: str) -> None:
    assert error(f"limits:\n  {key}: {value}\n") == f"config.yaml:2: limits.{key}: {message}"


def test_dead_letter_topic_is_read() -> None:
    assert load("dead_letter_topic: plant/dead\n").dead_letter_topic == "plant/dead"


@pytest.mark.parametrize("topic", ["dead/+", "dead/#", ""])
def test_dead_letter_topic_must_be_a_publish_topic(topic: str) -> None:
    message = error(f"dead_letter_topic: '{topic}'\n")
    assert message.startswith("config.yaml:1: dead_letter_topic: ")
    assert ("wildcard" in message) if topic else message.endswith("must not be empty")


# --- import_string -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests.config_targets:ExampleConsumer", config_targets.ExampleConsumer),
        ("tests.config_targets.ExampleConsumer", config_targets.ExampleConsumer),
        ("tests.config_targets:Outer.Inner", config_targets.Outer.Inner),
        ("tests.config_targets:not_a_class", 42),
    ],
)
def test_import_string_finds_the_object(path: str, expected: Any) -> None:
    assert import_string(path) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.config_targets:Nope", "module 'tests.config_targets' has no attribute 'Nope'"),
        (
            "tests.config_targets:Outer.Nope",
            "module 'tests.config_targets' has no attribute 'Outer.Nope'",
        ),
        (
            "no_such_module_xyz:app",
            "cannot import module 'no_such_module_xyz': No module named 'no_such_module_xyz'",
        ),
        ("app", "expected 'module:Class' or 'module.Class', got 'app'"),
        ("mod:", "expected 'module:Class' or 'module.Class', got 'mod:'"),
        (":app", "expected 'module:Class' or 'module.Class', got ':app'"),
    ],
)
def test_import_string_errors_say_what_failed(path: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        import_string(path)
    assert str(info.value) == message


# --- the documentation -------------------------------------------------------------------------


def test_yaml_examples_in_the_docs_load(pki: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "config.md"
    blocks = re.findall(r"```yaml\n(.*?)```", docs.read_text(), re.DOTALL)
    assert len(blocks) == 3
    full = blocks[0].replace("/etc/mqttbridge/ca.pem", str(pki / "a.crt"))
    config = parse_config(full, "config.md", environ={"MQTT_PASSWORD": "p"})
    assert (config.broker.scheme, config.broker.session_expiry) == ("mqtts", 3600)
    assert [route.consumer_class.__name__ for route in config.routes if route.consumer_class] == [
        "TemperatureConsumer",
        "StatusConsumer",
    ]
    assert [route.qos for route in parse_config(blocks[1], "config.md").routes] == [2, 0]
    hashed = hash_password("example", iterations=1)
    users = parse_config(blocks[2], "config.md", environ={"SENSOR_T2_HASH": hashed}).broker.users
    assert PasswordHash.parse(users["sensor-t1"]).verify(b"example")


# --- every mistake at once ---------------------------------------------------------------------


def test_every_mistake_in_a_file_is_reported_at_once_in_line_order() -> None:
    with pytest.raises(ConfigError) as info:
        load(
            """
            broker:
              urll: mqtt://localhost
              keepalive: abc
            routes:
              - topic: a/<id>
                consumer: tests.config_targets:ExampleConsumer
              - topic: b/{id}
                consumer: tests.config_targets:NoSuchConsumer
            limits:
              max_instances: 0
            """
        )
    lines = str(info.value).splitlines()
    assert lines == [
        "config.yaml:2: broker.urll: unknown key; did you mean 'url'?",
        "config.yaml:3: broker.keepalive: expected an integer, got 'abc'",
        "config.yaml:5: routes[0].topic: route pattern 'a/<id>': parameters are written in "
        "braces here, not in angle brackets as in Django URLs; did you mean 'a/{id}'?",
        "config.yaml:8: routes[1].consumer: module 'tests.config_targets' has no attribute "
        "'NoSuchConsumer'",
        "config.yaml:10: limits.max_instances: must be at least 1, got 0",
    ]
    # The first error still answers as a single one did.
    assert (info.value.line, info.value.key) == (2, "broker.urll")
    assert [e.line for e in info.value.errors] == [2, 3, 5, 8, 10]


def test_a_rule_over_several_keys_stays_quiet_about_a_key_that_was_already_wrong() -> None:
    # protocol is wrong, so session_expiry's "only MQTT 5" rule would judge a stand-in value.
    message = error(
        """
        broker:
          url: mqtt://localhost
          protocol: "7"
          session_expiry: 60
        """
    )
    assert message == "config.yaml:3: broker.protocol: expected '3.1.1' or '5', got '7'"


def test_several_errors_survive_pickling() -> None:
    with pytest.raises(ConfigError) as info:
        load("broker:\n  keepalive: x\n  clean_start: 3\n")
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value) and len(copy.errors) == 2


# --- command-line overrides --------------------------------------------------------------------


def test_an_override_is_read_as_the_file_s_value_and_wins() -> None:
    text = "broker:\n  url: mqtt://127.0.0.1:1883\n  client_id: from-file\n"
    config = parse_config(text, "c.yaml", overrides={"broker.client_id": "gw-7"})
    assert (config.broker.url, config.broker.client_id) == ("mqtt://127.0.0.1:1883", "gw-7")


def test_a_broker_override_picks_the_protocol_its_url_would_in_the_file() -> None:
    # The embedded broker speaks 3.1.1 only: replacing url alone kept a remote broker's "5".
    text = "broker:\n  url: mqtt://127.0.0.1:1883\n"
    config = parse_config(text, "c.yaml", overrides={"broker.url": "embedded"})
    assert (config.broker.scheme, config.broker.protocol) == ("embedded", "3.1.1")
    remote = parse_config("", overrides={"broker.url": "mqtt://127.0.0.1:1883"})
    assert remote.broker.protocol == "5"


def test_an_override_keeps_the_rules_that_span_keys() -> None:
    text = "broker:\n  url: mqtt://127.0.0.1:1883\n  listen: 0.0.0.0:1883\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml", overrides={"broker.url": "embedded"})
    assert str(info.value).startswith(
        "c.yaml:3: broker.listen: 0.0.0.0:1883 is not a loopback address"
    )


def test_an_override_error_names_the_flag_and_masks_a_password() -> None:
    overrides = {"broker.url": "mqtt//u:SECRET@h", "broker.client_id": "x" * 65536}
    with pytest.raises(ConfigError) as info:
        parse_config("", "c.yaml", overrides=overrides)
    assert [str(error) for error in info.value.errors] == [
        "command line: --broker: expected 'embedded' or an mqtt://, mqtts://, ws:// or wss:// "
        "URL, got 'mqtt//u:***@h'",
        "command line: --client-id: is longer than MQTT's 65535 bytes",
    ]


def test_an_override_is_taken_as_written_without_substitution() -> None:
    config = parse_config("", overrides={"broker.client_id": "a${B}c"}, environ={})
    assert config.broker.client_id == "a${B}c"
