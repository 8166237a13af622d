"""Device profiles: YAML files saying what a kind of device publishes and which commands it obeys.

Read with the machinery under ``config.yaml`` (``mqttbridge.config.yaml_reader``), so a mistake
is reported as ``<file>:<line>: <key path>: <message>``, unknown keys get a did-you-mean, and
every mistake in a file is reported at once. The shipped profiles live in
``mqttbridge/devices/profiles/``; ``load_profile`` takes one of their names or a path.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Collection, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mqttbridge.config.schema import ConfigError
from mqttbridge.config.yaml_reader import _join, _line, _NodeReader, _Section
from mqttbridge.devices.simulator.generators import GeneratorError, make_generator

__all__ = [
    "Command",
    "Message",
    "Profile",
    "ProfileError",
    "Spec",
    "Stream",
    "Template",
    "load_profile",
    "parse_profile",
    "shipped_profiles",
]


class ProfileError(ConfigError):
    """A profile cannot be used; ``str()`` reads ``<file>:<line>: <key path>: <message>``."""


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


@dataclasses.dataclass(frozen=True)
class Template:
    """Text with ``{placeholders}``: ``parts`` alternate literal text and placeholder names."""

    text: str
    parts: tuple[str, ...]

    @property
    def single(self) -> str | None:
        """The placeholder when the text is nothing else: its value keeps its type in JSON."""
        return self.parts[1] if len(self.parts) == 3 and not self.parts[0] + self.parts[2] else None

    @property
    def names(self) -> tuple[str, ...]:
        return self.parts[1::2]


# What a payload is compiled to: ("lit", value) | ("tpl", Template) | ("gen", Factory)
# | ("obj", ((key, Spec), ...)) | ("arr", (Spec, ...)).
Spec = tuple[str, Any]


@dataclasses.dataclass(frozen=True)
class Message:
    topic: Template
    payload: Spec
    qos: int = 0
    retain: bool = False


@dataclasses.dataclass(frozen=True)
class Stream(Message):
    """Telemetry published every ``every`` seconds, each time shifted by up to ``jitter`` of it."""

    every: float = 1.0
    jitter: float = 0.0


@dataclasses.dataclass(frozen=True)
class Command:
    """A topic the device subscribes to; a message there sets state and publishes ``reply``."""

    topic: Template
    qos: int = 1
    set: tuple[tuple[str, Template], ...] = ()
    values: Mapping[str, Any] | None = None  # accepted values, case-insensitive → stored value
    reply: tuple[Message, ...] = ()


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    source: str
    description: str = ""
    id: Template = Template("{profile}-{index}", ("", "profile", "-", "index", ""))
    client_id: Template = Template("{id}", ("", "id", ""))
    state: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    birth: tuple[Message, ...] = ()
    will: Message | None = None
    telemetry: tuple[Stream, ...] = ()
    commands: tuple[Command, ...] = ()

    @property
    def rate(self) -> float:
        """Telemetry messages per second per device, as the profile has it."""
        return sum(1 / stream.every for stream in self.telemetry)


_TOP_KEYS = (
    "name",
    "description",
    "id",
    "client_id",
    "state",
    "birth",
    "will",
    "telemetry",
    "commands",
)
_MESSAGE_KEYS = ("topic", "payload", "qos", "retain")
_STREAM_KEYS = (*_MESSAGE_KEYS, "every", "jitter")
_COMMAND_KEYS = ("topic", "qos", "set", "values", "reply")
_DEVICE_NAMES = ("id", "index", "profile")


class _ProfileReader(_NodeReader):
    error_type = ConfigError

    def error(self, node: yaml.Node | None, key: str, message: str) -> ProfileError:
        return ProfileError(message, source=self.source, line=_line(node), key=key)

    def read(self, root: yaml.Node | None, default_name: str) -> Profile:
        top = _Section(self, root, "", _TOP_KEYS)
        name = top.text("name", default_name)
        self.state_names: Collection[str] = ()
        state = self.read_state(top)
        self.state_names = tuple(state)
        device = (*_DEVICE_NAMES, "state.*")
        fields: dict[str, Any] = {
            "name": name,
            "source": self.source,
            "description": top.text("description", ""),
            "state": state,
            "birth": tuple(self.read_list(top, "birth", self.read_message, device)),
            "telemetry": tuple(self.read_list(top, "telemetry", self.read_stream, device)),
            "commands": tuple(self.read_list(top, "commands", self.read_command, device)),
        }
        for key, names in (("id", ("index", "profile")), ("client_id", _DEVICE_NAMES)):
            if top.given(key):
                template = self.template_at(top, key, names)
                if template is not None:
                    fields[key] = template
        if top.given("will"):
            fields["will"] = self.recover(
                lambda: self.read_message(top.child("will", _MESSAGE_KEYS), device), None
            )
        if not top.given("telemetry") and not top.given("commands"):
            top.reject("telemetry", "a profile needs telemetry, commands, or both")
        return Profile(**fields)

    # -- sections -------------------------------------------------------------------------------

    def read_state(self, top: _Section) -> dict[str, Any]:
        node = top.nodes.get("state")
        state = {}
        for key, value in self.any_mapping(node, "state").items():
            state[key] = self.attempt(self.plain, value, _join("state", key))
        return state

    def any_mapping(self, node: yaml.Node | None, path: str) -> dict[str, yaml.Node]:
        """A mapping whose keys the user chooses; empty (error recorded) if it is none."""
        empty: dict[str, yaml.Node] = {}
        return self.recover(lambda: self.mapping(node, path, _AnyKey()), empty)

    def attempt(self, read: Callable[..., Any], *args: Any) -> Any:
        """``read(*args)``, or ``None`` after recording its error."""
        return self.recover(lambda: read(*args), None)

    def read_list(self, top: _Section, key: str, read: Any, names: Collection[str]) -> list[Any]:
        items = []
        empty: list[yaml.Node] = []
        nodes = self.recover(lambda: self.sequence(top.nodes.get(key), key), empty)
        for index, node in enumerate(nodes):
            keys = (
                _STREAM_KEYS
                if key == "telemetry"
                else _COMMAND_KEYS
                if key == "commands"
                else _MESSAGE_KEYS
            )
            section = _Section(self, node, f"{key}[{index}]", keys)
            item = self.attempt(read, section, names)
            if item is not None:
                items.append(item)
        return items

    def read_message(self, section: _Section, names: Collection[str]) -> Message:
        return Message(**self.message_fields(section, names))

    def message_fields(self, section: _Section, names: Collection[str]) -> dict[str, Any]:
        topic = self.template_at(section, "topic", ("id", "index", "profile"), required=True)
        payload: Spec = ("lit", "")
        if section.given("payload"):
            node = section.nodes["payload"]
            payload = self.recover(
                lambda: self.payload(node, _join(section.path, "payload"), names), ("lit", "")
            )
        return {
            "topic": topic or Template("", ("",)),
            "payload": payload,
            "qos": section.get("qos", 0, _qos),
            "retain": section.get("retain", False, _boolean),
        }

    def read_stream(self, section: _Section, names: Collection[str]) -> Stream:
        fields = self.message_fields(section, names)
        every = section.get("every", 1.0, _interval)
        jitter = section.get("jitter", 0.0, _fraction)
        return Stream(**fields, every=every, jitter=jitter)

    def read_command(self, section: _Section, names: Collection[str]) -> Command:
        topic = self.template_at(section, "topic", ("id", "index", "profile"), required=True)
        qos = section.get("qos", 1, _qos)
        reply_names = (*names, "payload", "json.*")
        assignments = []
        set_node = section.nodes.get("set")
        set_path = _join(section.path, "set")
        for key, value in self.any_mapping(set_node, set_path).items():
            path = _join(set_path, key)
            if key not in self.state_names:
                self.errors.append(
                    self.error(value, path, _unknown(key, self.state_names, "state variable"))
                )
                continue
            template = self.attempt(self.template, value, path, reply_names)
            if template is not None:
                assignments.append((key, template))
        values = None
        if section.given("values"):
            values_node = section.nodes["values"]
            path = _join(section.path, "values")
            read = self.attempt(self.plain, values_node, path)
            if not isinstance(read, dict):
                self.errors.append(
                    self.error(
                        values_node, path, "expected a mapping of received value to stored value"
                    )
                )
            else:
                values = {str(key).lower(): value for key, value in read.items()}
        replies = self.read_list(section, "reply", self.read_message, reply_names)
        return Command(
            topic or Template("", ("",)), qos, tuple(assignments), values, tuple(replies)
        )

    # -- values ---------------------------------------------------------------------------------

    def template_at(
        self, section: _Section, key: str, names: Collection[str], *, required: bool = False
    ) -> Template | None:
        if not section.given(key):
            if required:
                section.reject(key, "required key is missing")
            return None
        node = section.nodes[key]
        return self.recover(lambda: self.template(node, _join(section.path, key), names), None)

    def template(self, node: yaml.Node, path: str, names: Collection[str]) -> Template:
        self.check_tag(node, path)
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, path, f"expected a string, got {self.describe(node)}")
        scalar = self.scalar(node, path)
        text = scalar.text if scalar.value is not None else ""
        return self.compile_template(text, node, path, names)

    def compile_template(
        self, text: str, node: yaml.Node, path: str, names: Collection[str]
    ) -> Template:
        parts: list[str] = []
        literal: list[str] = []
        at = 0
        for match in _PLACEHOLDER.finditer(text):
            literal.append(text[at : match.start()])
            at = match.end()
            if match.group(0) in ("{{", "}}"):
                literal.append(match.group(0)[0])
                continue
            name = match.group(1).strip()
            self.check_placeholder(name, node, path, names)
            parts += ["".join(literal), name]
            literal = []
        literal.append(text[at:])
        parts.append("".join(literal))
        return Template(text, tuple(parts))

    def check_placeholder(
        self, name: str, node: yaml.Node, path: str, names: Collection[str]
    ) -> None:
        name, colon, spec = name.partition(":")
        if colon:
            try:
                format(0, spec)
            except ValueError:
                raise self.error(node, path, f"bad format {spec!r} in {{{name}:{spec}}}") from None
        prefix, dot, rest = name.partition(".")
        if dot and f"{prefix}.*" in names and rest:
            if prefix == "state" and rest not in self.state_names:
                raise self.error(
                    node, path, _unknown(rest, self.state_names, "state variable", "{state.%s}")
                )
            return
        if name in names:
            return
        shown = ", ".join("{" + n.replace("*", "<name>") + "}" for n in names)
        raise self.error(node, path, f"unknown placeholder {{{name}}}; expected one of {shown}")

    def payload(self, node: yaml.Node, path: str, names: Collection[str]) -> Spec:
        self.check_tag(node, path)
        if isinstance(node, yaml.MappingNode):
            keys = [key for key, _ in node.value]
            if any(isinstance(k, yaml.ScalarNode) and str(k.value).startswith("$") for k in keys):
                if len(keys) != 1:
                    raise self.error(node, path, "a $generator must be the only key of its mapping")
                return self.generator(keys[0], node.value[0][1], path)
            items = []
            for key, value in self.mapping(node, path, _AnyKey()).items():
                where = _join(path, key)
                # Each field on its own: one bad field does not hide the next one's mistake.
                item = self.attempt(self.payload, value, where, names)
                if item is not None:
                    items.append((key, item))
            return ("obj", tuple(items))
        if isinstance(node, yaml.SequenceNode):
            return (
                "arr",
                tuple(
                    self.payload(item, f"{path}[{i}]", names) for i, item in enumerate(node.value)
                ),
            )
        assert isinstance(node, yaml.ScalarNode)
        scalar = self.scalar(node, path)
        if isinstance(scalar.value, str):
            return ("tpl", self.compile_template(scalar.value, node, path, names))
        return ("lit", scalar.value)

    def generator(self, key: yaml.Node, value: yaml.Node, path: str) -> Spec:
        name = str(key.value)[1:]
        where = _join(path, f"${name}")
        params = self.plain(value, where)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise self.error(value, where, "expected a mapping of parameters, or nothing")
        try:
            return ("gen", make_generator(name, params))
        except GeneratorError as exc:
            node = _param_node(value, exc.key) or key
            raise self.error(node, _join(where, exc.key) if exc.key else where, str(exc)) from None

    def plain(self, node: yaml.Node, path: str) -> Any:
        """The node as plain Python values (str, numbers, bools, lists, dicts)."""
        self.check_tag(node, path)
        if isinstance(node, yaml.MappingNode):
            return {
                k: self.plain(v, _join(path, k))
                for k, v in self.mapping(node, path, _AnyKey()).items()
            }
        if isinstance(node, yaml.SequenceNode):
            return [self.plain(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self.scalar(node, path).value


class _AnyKey(Collection[str]):
    """Every key is known: for mappings whose keys the user chooses (state, JSON payloads)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def _qos(value: Any) -> int:
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise ValueError(f"must be 0, 1 or 2, got {value!r}")
    return int(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"expected a number of seconds greater than 0, got {value!r}")
    return float(value)


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"expected a fraction of the interval from 0 to 1, got {value!r}")
    return float(value)


def _unknown(name: str, known: Collection[str], what: str, form: str = "%s") -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {form % close[0]!r}?" if close else ""
    declared = ", ".join(known) or "none"
    return f"no {what} {name!r} (declared under state: {declared}){hint}"


def _param_node(node: yaml.Node, key: str) -> yaml.Node | None:
    if key and isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            if getattr(key_node, "value", None) == key:
                return value
    return None


# -- loading --------------------------------------------------------------------------------------


def shipped_profiles() -> dict[str, Path]:
    """The profiles that come with mqttbridge, by name."""
    folder = resources.files("mqttbridge.devices").joinpath("profiles")
    return {
        Path(str(entry)).stem: Path(str(entry))
        for entry in folder.iterdir()
        if str(entry).endswith((".yaml", ".yml"))
    }


def load_profile(name_or_path: str, environ: Mapping[str, str] | None = None) -> Profile:
    """A shipped profile by name (``tasmota``), or the profile file at a path."""
    shipped = shipped_profiles()
    if name_or_path in shipped:
        path = shipped[name_or_path]
    elif os.path.sep in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
    else:
        close = difflib.get_close_matches(name_or_path, shipped, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ProfileError(
            f"no such profile; {hint}shipped: {', '.join(sorted(shipped))}, "
            "or give a path to a .yaml file",
            source=name_or_path,
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError("file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read: {exc}", source=str(path)) from None
    return parse_profile(text, str(path), environ=environ)


def parse_profile(
    text: str, source: str = "<string>", *, environ: Mapping[str, str] | None = None
) -> Profile:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ProfileError(
            f"invalid YAML: {exc.problem or 'cannot parse'}", source=source, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"invalid YAML: {exc}", source=source) from None
    reader = _ProfileReader(source, os.environ if environ is None else environ)
    profile = reader.read(root, Path(source).stem)
    if reader.errors:
        raise ProfileError.combine(reader.errors)  # type: ignore[arg-type]
    return profile
