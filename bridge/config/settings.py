"""One declaration per configuration key, as a dataclass field's metadata.

A key's default is the field's default; its type, bounds and documentation are a
:class:`Setting` in the field's ``metadata``. From these the reader takes the keys a section
accepts, each key's default and converter, and the ``--flag`` that may override it on the
command line; ``mqttbridge.config.docs`` writes the key tables of ``docs/config.md``. Rules
over several keys of a section are not declarations: they are small functions in ``schema``.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "Flag",
    "Kind",
    "Setting",
    "flags",
    "free_mapping",
    "items",
    "key_parts",
    "keys_of",
    "required_text",
    "section",
    "setting_of",
    "settings_of",
    "text",
    "value",
]


class Kind(enum.Enum):
    VALUE = "value"  # a YAML value through ``convert``
    TEXT = "text"  # a string setting: plain text as written, then ``check``
    SECTION = "section"  # a nested mapping with keys of its own
    ITEMS = "items"  # a list of nested mappings


class Flag(NamedTuple):
    """A command-line option that overrides the key: ``--broker URL``."""

    name: str
    metavar: str
    help: str


@runtime_checkable
class Described(Protocol):
    """A converter that can say what it accepts, bounds included: "integer, 5–65535"."""

    description: str

    def __call__(self, value: Any) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a key is. ``type_doc`` and ``default_doc`` are the docs table's words; the latter
    only where the field's default does not say it (a generated client id, a required key)."""

    kind: Kind
    doc: str
    type_doc: str
    default_doc: str | None = None
    convert: Callable[[Any], Any] | None = None
    check: Callable[[str], Any] | None = None
    required: bool = False
    flag: Flag | None = None
    section: type | None = None


_KEY = "mqttbridge.setting"


def value(
    default: Any,
    convert: Callable[[Any], Any],
    *,
    doc: str,
    type: str | None = None,
    default_doc: str | None = None,
    **options: Any,
) -> Any:
    """A typed key (integer, seconds, boolean, ...) read by ``convert``, which raises
    ``ValueError`` with the message the user reads. Without ``type`` the converter's
    ``description`` says it."""
    if type is None:
        if not isinstance(convert, Described):
            raise TypeError(f"{convert!r} does not describe itself; give type=")
        type = convert.description
    declared = Setting(Kind.VALUE, doc, type, default_doc, convert=convert)
    return dataclasses.field(default=default, metadata={_KEY: declared}, **options)


def text(
    default: str | None,
    *,
    doc: str,
    check: Callable[[str], Any] | None = None,
    type: str | None = None,
    default_doc: str | None = None,
    flag: Flag | None = None,
    **options: Any,
) -> Any:
    """A string key, taken as written (``password: 012345`` is a string). A ``None`` default
    makes it optional: ``null`` unsets it. ``check`` raises ``ValueError`` for a bad value.
    ``options`` go to ``dataclasses.field`` (``repr=False`` for a password)."""
    if type is None:
        type = "string" if default is not None else "string or null"
    declared = Setting(Kind.TEXT, doc, type, default_doc, check=check, flag=flag)
    return dataclasses.field(default=default, metadata={_KEY: declared}, **options)


def required_text(*, doc: str, type: str, check: Callable[[str], Any] | None = None) -> Any:
    """A string key that must be given."""
    declared = Setting(Kind.TEXT, doc, type, "required", check=check, required=True)
    return dataclasses.field(metadata={_KEY: declared})


def section(cls: type, *, doc: str) -> Any:
    """A nested mapping whose keys are the settings of dataclass ``cls``."""
    declared = Setting(Kind.SECTION, doc, "mapping", "see below", section=cls)
    return dataclasses.field(default_factory=cls, metadata={_KEY: declared})


def free_mapping(*, doc: str, type: str, default_doc: str, **options: Any) -> Any:
    """A mapping whose keys are data, not settings (``broker.users``)."""
    declared = Setting(Kind.SECTION, doc, type, default_doc)
    return dataclasses.field(metadata={_KEY: declared}, **options)


def items(cls: type, *, doc: str) -> Any:
    """A list of mappings, each with the settings of dataclass ``cls`` (``routes``)."""
    declared = Setting(Kind.ITEMS, doc, "list", "none", section=cls)
    return dataclasses.field(default=(), metadata={_KEY: declared})


def setting_of(field: dataclasses.Field[Any]) -> Setting | None:
    declared = field.metadata.get(_KEY)
    return declared if isinstance(declared, Setting) else None


def settings_of(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
    """The declared keys of ``cls``, in declaration order (the order errors and docs use)."""
    for field in dataclasses.fields(cls):
        declared = setting_of(field)
        if declared is not None:
            yield field, declared


def keys_of(cls: type) -> tuple[str, ...]:
    """The keys a mapping read into ``cls`` accepts."""
    return tuple(field.name for field, _ in settings_of(cls))


def flags(cls: type, path: str = "") -> Iterator[tuple[str, Flag]]:
    """``(key path, flag)`` of every key under ``cls`` that a command-line option overrides."""
    for field, declared in settings_of(cls):
        key = f"{path}.{field.name}" if path else field.name
        if declared.flag is not None:
            yield key, declared.flag
        if declared.kind is Kind.SECTION and declared.section is not None:
            yield from flags(declared.section, key)


_INDEX = re.compile(r"\[(\d+)\]\.?")


def key_parts(cls: type, key: str) -> list[str | int]:
    """The parts of the key path ``key`` under ``cls``, as the declarations shape it:
    ``routes[1].consumer`` is ``["routes", 1, "consumer"]``. Only sections and lists are
    descended into, so the key of a free mapping (``broker.users.jane.doe``) or an unknown key,
    always the last part, stays whole even with dots in it."""
    parts: list[str | int] = []
    current: type | None = cls
    rest = key
    while rest:
        index = _INDEX.match(rest)
        if index is not None:
            parts.append(int(index.group(1)))
            rest = rest[index.end() :]
            continue
        if current is None:  # inside a free mapping: its key is data
            parts.append(rest)
            break
        name = rest.partition(".")[0].partition("[")[0]
        declared = _declared(current, name)
        if declared is None or declared.kind in (Kind.VALUE, Kind.TEXT):
            parts.append(rest)  # a value or an unknown key: always the last part
            break
        parts.append(name)
        rest = rest[len(name) :].removeprefix(".")
        current = declared.section  # None for a free mapping (broker.users)
    return parts


def _declared(cls: type | None, name: str) -> Setting | None:
    if cls is None:
        return None
    for field, declared in settings_of(cls):
        if field.name == name:
            return declared
    return None
