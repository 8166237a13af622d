import pytest

from mqttbridge.protocol.topics import (
    TopicError,
    compile_pattern,
    validate_filter,
    validate_publish_topic,
)


@pytest.mark.parametrize(
    ("pattern", "topic_filter", "topic", "kwargs"),
    [
        (
            "sensors/{device_id}/temperature",
            "sensors/+/temperature",
            "sensors/t1/temperature",
            {"device_id": "t1"},
        ),
        ("sensors/+/status", "sensors/+/status", "sensors/x/status", {}),
        ("devices/{id}/{rest:path}", "devices/+/#", "devices/d/a/b", {"id": "d", "rest": "a/b"}),
        ("devices/{id}/{rest:path}", "devices/+/#", "devices/d", {"id": "d", "rest": ""}),
        ("logs/#", "logs/#", "logs", {}),
        ("a/{x}/{y}", "a/+/+", "a//", {"x": "", "y": ""}),
    ],
)
def test_patterns_compile_to_filter_and_match(pattern, topic_filter, topic, kwargs):
    compiled = compile_pattern(pattern)
    assert compiled.filter == topic_filter
    assert compiled.match(topic) == kwargs


@pytest.mark.parametrize(
    ("pattern", "topic"),
    [
        ("sensors/{id}/temperature", "sensors/a/b/temperature"),
        ("sensors/{id}/temperature", "sensors/a/humidity"),
        ("+/status", "$SYS/status"),
        ("#", "$SYS/broker/uptime"),
        ("{device}/x", "$share/x"),
    ],
)
def test_patterns_reject_other_topics_and_dollar_topics(pattern, topic):
    assert compile_pattern(pattern).match(topic) is None


def test_dollar_topics_match_literal_patterns():
    assert compile_pattern("$SYS/{name}").match("$SYS/uptime") == {"name": "uptime"}


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a/{x}/{x}", "parameter 'x' is used twice"),
        ("a/{rest:path}/b", "must be the last level"),
        ("a/{x:int}", "unknown parameter type 'int'"),
        ("a/b{x}", "is not a valid parameter"),
        ("a/#/b", "'#' must be the last level"),
        ("a/b+", "wildcards must be whole levels"),
        ("", "must not be empty"),
        ("$share/g/a", "set broker.shared_group"),
    ],
)
def test_bad_patterns_say_what_is_wrong(pattern, message):
    with pytest.raises(TopicError, match=message.replace("(", r"\(").replace("+", r"\+")):
        compile_pattern(pattern)


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("a/+/b", "wildcards are only allowed in subscriptions"),
        ("a/#", "wildcards are only allowed in subscriptions"),
        ("", "must not be empty"),
        ("a\x00b", r"contains U\+0000"),
        ("bad\udcff", "is not valid UTF-8"),
        ("x" * 65536, "MQTT allows at most 65535"),
    ],
)
def test_publish_topics_are_validated(topic, message):
    with pytest.raises(TopicError, match=message):
        validate_publish_topic(topic)


def test_non_str_topic_is_rejected():
    with pytest.raises(TopicError, match="must be a str, got bytes"):
        validate_publish_topic(b"a/b")  # type: ignore[arg-type]


@pytest.mark.parametrize("topic_filter", ["a/+/b", "a/#", "#", "+", "$share/g/a/#", "$SYS/#"])
def test_valid_filters(topic_filter):
    assert validate_filter(topic_filter) == topic_filter


@pytest.mark.parametrize(
    "topic_filter", ["a/b#", "a/#/b", "a+/b", "$share/g", "$share//a", "$share/g+/a"]
)
def test_invalid_filters(topic_filter):
    with pytest.raises(TopicError):
        validate_filter(topic_filter)


@pytest.mark.parametrize(
    ("pattern", "suggestion"),
    [
        ("home/<room>/temp", "did you mean 'home/{room}/temp'?"),
        ("a/<int:pk>/b", "did you mean 'a/{pk}/b'?"),
        ("logs/<path:rest>", "did you mean 'logs/{rest:path}'?"),
        ("/sensors/{device_id}/temp", "did you mean 'sensors/{device_id}/temp'?"),
    ],
)
def test_django_style_and_leading_slash_patterns_get_a_suggestion(pattern, suggestion):
    with pytest.raises(TopicError) as info:
        compile_pattern(pattern)
    assert str(info.value).startswith(f"route pattern {pattern!r}: ")
    assert suggestion in str(info.value)


def test_topics_that_really_begin_with_a_slash_can_still_be_routed():
    # The leading-slash message offers '+/...' for devices that do publish such topics.
    pattern = compile_pattern("+/sensors/{device_id}")
    assert pattern.match("/sensors/t1") == {"device_id": "t1"}
