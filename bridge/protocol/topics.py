"""MQTT topic names, topic filters and the route patterns that compile to them.

A route pattern is a topic filter whose wildcard levels may carry names, in the spirit of
Starlette's path patterns::

    sensors/{device_id}/temperature    -> filter sensors/+/temperature, kwargs {"device_id": ...}
    sensors/+/status                   -> filter sensors/+/status, no kwargs
    devices/{device_id}/{rest:path}    -> filter devices/+/#, kwargs {"device_id", "rest"}
    logs/#                             -> filter logs/#

Patterns are compiled once, at startup; matching a topic is one regular-expression call.
Rules from MQTT 3.1.1 section 4.7 and MQTT 5 section 4.7.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "MAX_TOPIC_BYTES",
    "TopicError",
    "TopicPattern",
    "compile_pattern",
    "shared_filter",
    "validate_filter",
    "validate_publish_topic",
]

# A topic is a UTF-8 string prefixed by a 16-bit length (MQTT 5 section 1.5.4).
MAX_TOPIC_BYTES = 65535

_PARAM = re.compile(r"^\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<conv>[A-Za-z]+))?\}$")
# Django's path syntax, <name> or <conv:name>, which people write here from habit.
_DJANGO_PARAM = re.compile(r"^<(?:(?P<conv>[A-Za-z]+):)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)>$")


class TopicError(ValueError):
    """A topic name, topic filter or route pattern is not valid; the message says why."""


def _check_common(topic: str, what: str) -> None:
    if not isinstance(topic, str):
        raise TopicError(f"{what} must be a str, got {type(topic).__name__}")
    if not topic:
        raise TopicError(f"{what} must not be empty")
    if "\x00" in topic:
        raise TopicError(f"{what} {topic!r} contains U+0000, which MQTT forbids")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise TopicError(f"{what} {topic!r} is not valid UTF-8: {exc.reason}") from None
    if size > MAX_TOPIC_BYTES:
        raise TopicError(f"{what} is {size} bytes long; MQTT allows at most {MAX_TOPIC_BYTES}")


def validate_publish_topic(topic: str) -> str:
    """Return ``topic`` if a client may publish to it, else raise :class:`TopicError`."""
    _check_common(topic, "topic")
    if "+" in topic or "#" in topic:
        raise TopicError(
            f"topic {topic!r} contains a wildcard ('+' or '#'); wildcards are only allowed "
            "in subscriptions, not in publishes"
        )
    return topic


def validate_filter(topic_filter: str) -> str:
    """Return ``topic_filter`` if a client may subscribe to it, else raise :class:`TopicError`.

    Accepts shared subscriptions (``$share/<group>/<filter>``).
    """
    _check_common(topic_filter, "topic filter")
    inner = topic_filter
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) < 3 or not parts[1] or not parts[2]:
            raise TopicError(
                f"shared subscription {topic_filter!r} must look like $share/<group>/<filter>"
            )
        if "+" in parts[1] or "#" in parts[1]:
            raise TopicError(f"share group name {parts[1]!r} must not contain '+' or '#'")
        inner = parts[2]
    levels = inner.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise TopicError(
                f"topic filter {topic_filter!r}: '#' must be a whole level and the last one"
            )
        if "+" in level and level != "+":
            raise TopicError(f"topic filter {topic_filter!r}: '+' must be a whole level")
    return topic_filter


def shared_filter(topic_filter: str, group: str | None) -> str:
    """The filter to subscribe to: ``$share/<group>/<filter>`` when ``group`` is set."""
    if not group:
        return topic_filter
    if any(c in group for c in "/+#"):
        raise TopicError(f"shared group {group!r} must be non-empty and contain no '/', '+', '#'")
    return f"$share/{group}/{topic_filter}"


@dataclass(frozen=True)
class TopicPattern:
    """A compiled route pattern: the MQTT filter to subscribe to and a matcher for topics."""

    pattern: str
    filter: str
    param_names: tuple[str, ...]
    regex: re.Pattern[str] = field(repr=False, compare=False)

    def match(self, topic: str) -> dict[str, str] | None:
        """The named parameters if ``topic`` matches this pattern, else ``None``."""
        m = self.regex.fullmatch(topic)
        # An absent {rest:path} (topic "a" for pattern "a/{rest:path}") is "".
        return None if m is None else m.groupdict("")


def _refuse_common_mistakes(pattern: str) -> None:
    """Patterns that are valid filters but almost never what was meant: say what was."""
    if pattern.startswith("/") and pattern != "/":
        raise TopicError(
            f"route pattern {pattern!r}: a leading '/' makes an empty first level, which "
            f"topics rarely have; did you mean {pattern.lstrip('/')!r}? (for topics that do "
            f"begin with '/', write '+{pattern}')"
        )
    levels = pattern.split("/")
    fixed = []
    for level in levels:
        django = _DJANGO_PARAM.match(level)
        if django is None:
            fixed.append(level)
        elif django["conv"] == "path":
            fixed.append(f"{{{django['name']}:path}}")
        else:
            fixed.append(f"{{{django['name']}}}")
    if fixed != levels:
        raise TopicError(
            f"route pattern {pattern!r}: parameters are written in braces here, not in angle "
            f"brackets as in Django URLs; did you mean {'/'.join(fixed)!r}?"
        )


def compile_pattern(pattern: str) -> TopicPattern:
    """Compile a route pattern; raise :class:`TopicError` naming what is wrong."""
    _check_common(pattern, "route pattern")
    if pattern.startswith("$share/"):
        raise TopicError(
            f"route pattern {pattern!r}: write the plain filter and set broker.shared_group "
            "to share routes across bridges"
        )
    _refuse_common_mistakes(pattern)
    levels = pattern.split("/")
    filter_levels: list[str] = []
    regex_parts: list[str] = []
    names: list[str] = []
    last = len(levels) - 1
    for index, level in enumerate(levels):
        param = _PARAM.match(level)
        if param is not None:
            name, conv = param["name"], param["conv"]
            if name in names:
                raise TopicError(f"route pattern {pattern!r}: parameter {name!r} is used twice")
            names.append(name)
            if conv is None:
                filter_levels.append("+")
                regex_parts.append(f"(?P<{name}>[^/]*)")
            elif conv == "path":
                if index != last:
                    raise TopicError(
                        f"route pattern {pattern!r}: {{{name}:path}} matches several levels "
                        "and must be the last level"
                    )
                filter_levels.append("#")
                regex_parts.append(f"(?P<{name}>.*)")
            else:
                raise TopicError(
                    f"route pattern {pattern!r}: unknown parameter type {conv!r} in {level!r}; "
                    "use {name} for one level or {name:path} for the rest of the topic"
                )
        elif level == "+":
            filter_levels.append("+")
            regex_parts.append("[^/]*")
        elif level == "#":
            if index != last:
                raise TopicError(f"route pattern {pattern!r}: '#' must be the last level")
            filter_levels.append("#")
            regex_parts.append(".*")
        elif "{" in level or "}" in level:
            raise TopicError(
                f"route pattern {pattern!r}: level {level!r} is not a valid parameter; "
                "a parameter is a whole level such as {device_id}"
            )
        elif "+" in level or "#" in level:
            raise TopicError(f"route pattern {pattern!r}: wildcards must be whole levels")
        else:
            filter_levels.append(level)
            regex_parts.append(re.escape(level))

    # A trailing multi-level wildcard also matches the parent level: "a/#" matches "a".
    body = "/".join(regex_parts[:-1])
    tail = regex_parts[-1]
    if filter_levels[-1] == "#":
        regex = f"{body}(?:/{tail})?" if body else f"(?:{tail})"
    else:
        regex = f"{body}/{tail}" if body else tail
    # Topics starting with "$" are not matched by a leading wildcard (MQTT 4.7.2).
    if filter_levels[0] in ("+", "#"):
        regex = r"(?!\$)" + regex
    topic_filter = "/".join(filter_levels)
    validate_filter(topic_filter)
    return TopicPattern(pattern, topic_filter, tuple(names), re.compile(regex))
