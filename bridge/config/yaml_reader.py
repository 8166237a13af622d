"""Walking a composed YAML node tree: the machinery under ``mqttbridge.config``'s reader.

PyYAML's ``SafeLoader`` composes the file into nodes, which are read here one at a time, so that
every value keeps its line: only tags ``SafeLoader`` can construct are accepted, ``${VAR}``
references are substituted, mappings refuse unknown and duplicate keys, and scalars are
converted to typed values with messages in YAML's words. Nothing here knows the schema.
"""

from __future__ import annotations

import difflib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple, TypeVar

import yaml

T = TypeVar("T")


# --- typed values ------------------------------------------------------------------------------


def _render(value: Any) -> str:
    """A value as the error message shows it, in YAML's words for null and booleans."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str | _Shape):
        return repr(value)
    return repr(str(value))  # dates and binary: show what was written


class _Shape:
    """Stands in for a mapping or list where a single value was expected."""

    def __init__(self, node: yaml.Node) -> None:
        self.kind = "a mapping" if isinstance(node, yaml.MappingNode) else "a list"

    def __repr__(self) -> str:
        return self.kind


def _check_range(
    value: float, minimum: float, maximum: float | None = None, *, exclusive: bool = False
) -> None:
    # Written as "not (ok)" so that NaN fails every check.
    if maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"must be between {minimum} and {maximum}, got {_render(value)}")
    if exclusive and not value > minimum:
        raise ValueError(f"must be greater than {minimum}, got {_render(value)}")
    if not value >= minimum:
        raise ValueError(f"must be at least {minimum}, got {_render(value)}")


class _Integer:
    """An integer from ``minimum`` to ``maximum`` (no upper bound if ``None``)."""

    def __init__(self, minimum: int, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        if maximum is None:
            self.description = f"integer, ≥ {minimum}"
        else:
            self.description = f"integer, {minimum}–{maximum}"

    def __call__(self, value: Any) -> int:
        # bool is an int subclass, but `keepalive: true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_render(value)}")
        _check_range(value, self.minimum, self.maximum)
        return value


class _Seconds:
    """A finite number of seconds, at least ``minimum`` (greater, if ``exclusive``)."""

    def __init__(self, minimum: float, *, exclusive: bool = False) -> None:
        self.minimum = minimum
        self.exclusive = exclusive
        self.description = f"seconds, {'>' if exclusive else '≥'} {minimum:g}"

    def __call__(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number of seconds, got {_render(value)}")
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number of seconds, got {_render(value)}")
        _check_range(value, self.minimum, exclusive=self.exclusive)
        return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_render(value)}")
    return value


def _optional_boolean(value: Any) -> bool | None:
    return None if value is None else _boolean(value)


# --- the node walker ---------------------------------------------------------------------------

_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
# Every tag SafeLoader can construct; anything else (python/*, custom !tags) is refused.
_SAFE_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag) | {_MERGE}
# ${NAME}, ${NAME:-default}, $${ for a literal "${", or a bare "${" that is none of these.
_VARIABLE = re.compile(
    r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?"
)


def _line(node: yaml.Node | None) -> int | None:
    if node is None or node.start_mark is None:
        return None
    return int(node.start_mark.line) + 1


class _Given(yaml.ScalarNode):
    """A string given outside the file, on the command line: read as the file's values are,
    but without ``${VAR}`` substitution (the shell has done that) and without a line."""

    def __init__(self, text: str, where: str) -> None:
        super().__init__(_STR, text, style='"')
        self.where = where  # what errors name instead of file and line: the flag


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:") else tag


class _Scalar(NamedTuple):
    value: Any  # as YAML types it: int, float, bool, None, str, ...
    text: str  # as written, after ${VAR} substitution


class _NodeReader(ABC):
    """Reads nodes of the file ``source``, with ``${VAR}`` looked up in ``environ``.

    Subclasses say what an error is (``error``) and turn the tree into values.
    """

    #: The class of what ``error`` returns: ``recover`` catches it to go on reading.
    error_type: type[Exception] = Exception

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        # Only its resolver and constructors are used, on nodes we hand it one at a time.
        self._loader = yaml.SafeLoader("")
        # Every problem found so far: a file is read to the end so that all of its mistakes
        # are reported at once, not one per run.
        self.errors: list[Exception] = []
        # Section path -> key -> a value given on the command line, which wins over the file's.
        self.given: dict[str, dict[str, _Given]] = {}

    @abstractmethod
    def error(self, node: yaml.Node | None, key: str, message: str) -> Exception:
        """The exception to raise for ``message`` about ``node``, found at key path ``key``."""

    def recover(self, read: Callable[[], T], default: T) -> T:
        """``read()``, or ``default`` after recording the error it raised."""
        try:
            return read()
        except self.error_type as exc:
            self.errors.append(exc)
            return default

    def check_tag(self, node: yaml.Node, key: str) -> None:
        if node.tag not in _SAFE_TAGS:
            raise self.error(
                node, key, f"tag {_short_tag(node.tag)!r} is not allowed; use plain YAML values"
            )

    def mapping(
        self, node: yaml.Node | None, key: str, keys: Collection[str]
    ) -> dict[str, yaml.Node]:
        """The value node of each key, after rejecting unknown and duplicate keys."""
        if node is None or node.tag == _NULL:
            return {}
        self.check_tag(node, key)
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, key, f"expected a mapping, got {self.describe(node)}")
        first_line: dict[str, int | None] = {}
        for key_node, _ in node.value:
            self.check_tag(key_node, key)
            if key_node.tag == _MERGE:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, key, "keys must be plain words, not mappings or lists")
            name = key_node.value
            if name in first_line:
                self.errors.append(
                    self.error(
                        key_node,
                        _join(key, name),
                        f"duplicate key (first on line {first_line[name]})",
                    )
                )
                continue
            first_line[name] = _line(key_node)
        try:
            # Resolves YAML merge keys (<<: *defaults); merged entries come first, so the
            # mapping's own entries win below.
            self._loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            raise self.error(node, key, f"invalid merge key: {exc.problem}") from exc
        found: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            name = key_node.value
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, key, "keys must be plain words, not mappings or lists")
            if name not in keys:
                if not key and str(name).startswith("x-"):
                    continue  # as in Docker Compose: a place for &anchors to be defined
                self.errors.append(
                    self.error(key_node, _join(key, str(name)), _unknown_key(str(name), keys))
                )
                continue
            found[name] = value_node
        return found

    def sequence(self, node: yaml.Node | None, key: str) -> list[yaml.Node]:
        if node is None or node.tag == _NULL:
            return []
        self.check_tag(node, key)
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, key, f"expected a list, got {self.describe(node)}")
        return list(node.value)

    def scalar(self, node: yaml.ScalarNode, key: str) -> _Scalar:
        text = self.substitute(node, key)
        tag = node.tag
        # A plain (unquoted) scalar whose tag YAML guessed from its text gets guessed again
        # from the substituted text: `keepalive: ${KA:-30}` is then an integer.
        implicit = self._loader.resolve(yaml.ScalarNode, node.value, (True, False))
        if node.style is None and tag == implicit:
            tag = self._loader.resolve(yaml.ScalarNode, text, (True, False))
        new = yaml.ScalarNode(tag, text, node.start_mark, node.end_mark, node.style)
        try:
            value = self._loader.construct_object(new)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            # ConstructorError for tags we missed, ValueError for e.g. `!!int abc`
            raise self.error(node, key, f"cannot read {text!r} as {_short_tag(tag)}") from exc
        return _Scalar(value, text)

    def substitute(self, node: yaml.ScalarNode, key: str) -> str:
        if isinstance(node, _Given):
            return str(node.value)

        def replace(match: re.Match[str]) -> str:
            if match.group() == "$${":
                return "${"
            name, default = match.group("name"), match.group("default")
            if name is None:
                raise self.error(
                    node, key,
                    f"invalid reference in {node.value!r}: write ${{NAME}} or ${{NAME:-default}},"
                    " or $${ for a literal ${",
                )  # fmt: skip
            value = self.environ.get(name)
            if default is not None:
                return value or default  # like the shell: unset or empty takes the default
            if value is None:
                raise self.error(node, key, f"environment variable {name!r} is not set")
            return value

        return _VARIABLE.sub(replace, node.value)

    def describe(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            return repr(_Shape(node))
        if node.tag == _NULL:
            return "null"
        return repr(node.value) if node.tag == _STR else node.value


class _Section:
    """One mapping of the file, read key by key with the key's type and constraints.

    Reading goes on past a bad value: the error is recorded with the reader, the key's default
    stands in, and the key is remembered in ``failed`` so that rules spanning several keys
    (``reject``) stay quiet about a value the user never wrote.
    """

    def __init__(
        self, reader: _NodeReader, node: yaml.Node | None, path: str, keys: Collection[str]
    ) -> None:
        self.reader = reader
        self.node = node
        self.path = path
        self.failed: set[str] = set()
        before = len(reader.errors)
        no_nodes: dict[str, yaml.Node] = {}
        self.nodes = reader.recover(lambda: reader.mapping(node, path, keys), no_nodes)
        if len(reader.errors) > before:
            self.failed.add("")  # the section itself, or one of its keys, is wrong
        self.nodes.update(reader.given.get(path, {}))

    def child(self, key: str, keys: Collection[str]) -> _Section:
        return _Section(self.reader, self.nodes.get(key), _join(self.path, key), keys)

    def given(self, key: str) -> bool:
        return key in self.nodes

    def error(self, key: str, message: str) -> Exception:
        return self.reader.error(self.nodes.get(key, self.node), _join(self.path, key), message)

    def reject(self, key: str, message: str, *, involving: Collection[str] = ()) -> None:
        """Record an error at ``key`` from a rule over ``key`` and ``involving`` keys, unless
        one of them already failed (its stand-in default would make the rule's verdict wrong)."""
        if not self.failed.intersection((key, "", *involving)):
            self.reader.errors.append(self.error(key, message))
        self.failed.add(key)

    def check(self, key: str, function: Callable[[Any], T], value: Any) -> T:
        """``function(value)``, its ``ValueError`` turned into an error at ``key``."""
        try:
            return function(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from exc

    def validate(self, key: str, function: Callable[[Any], T], value: Any) -> T | None:
        """``check``, but a failure is recorded and gives ``None``."""
        return self._recover(key, lambda: self.check(key, function, value), None)

    def _recover(self, key: str, read: Callable[[], T], default: T) -> T:
        before = len(self.reader.errors)
        value = self.reader.recover(read, default)
        if len(self.reader.errors) > before:
            self.failed.add(key)
        return value

    def _value(self, key: str, as_text: bool) -> Any:
        node = self.nodes[key]
        self.reader.check_tag(node, _join(self.path, key))
        if not isinstance(node, yaml.ScalarNode):
            return _Shape(node)
        scalar = self.reader.scalar(node, _join(self.path, key))
        # String settings take the text as written: `password: 12345` or `client_id: no`
        # should not need quotes (YAML 1.1 would read them as a number and a boolean).
        return scalar.text if as_text and scalar.value is not None else scalar.value

    def get(self, key: str, default: T, convert: Callable[[Any], T]) -> T:
        if key not in self.nodes:
            return default
        return self._recover(
            key, lambda: self.check(key, convert, self._value(key, as_text=False)), default
        )

    def optional_text(self, key: str) -> str | None:
        if key not in self.nodes:
            return None
        return self._recover(key, lambda: self._text(key), None)

    def text(self, key: str, default: str) -> str:
        if key not in self.nodes:
            return default
        value = self._recover(key, lambda: self._text(key, nullable=False), None)
        return default if value is None else value

    def required_text(self, key: str) -> str | None:
        """The key's text, or ``None`` (recorded as an error) when it is missing or wrong."""
        if key not in self.nodes:
            self.reject(key, "required key is missing")
            return None
        return self._recover(key, lambda: self._text(key, nullable=False), None)

    def _text(self, key: str, *, nullable: bool = True) -> str | None:
        value = self._value(key, as_text=True)
        if value is None and not nullable:
            raise self.error(key, "expected a string, got null")
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_render(value)}")
        return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _unknown_key(name: str, keys: Collection[str]) -> str:
    close = difflib.get_close_matches(name, keys, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return "unknown key; expected one of " + ", ".join(repr(key) for key in keys)
