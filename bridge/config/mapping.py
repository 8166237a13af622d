"""The configuration from a Python mapping (Django's ``settings.MQTTBRIDGE``), read with the
same rules and messages as config.yaml.

The mapping is turned into the YAML nodes a file would compose to (scalars by PyYAML's
``SafeRepresenter``) and walked by the file's reader, so no rule is written twice. What differs
is the source: there are no lines, errors name the key as Python reaches it
(``settings.MQTTBRIDGE["routes"][1]["consumer"]: ...``), and ``${VAR}`` is not substituted
(settings read ``os.environ`` themselves). A value YAML cannot hold (a class, an object) is an
error at its key, not a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.representer import SafeRepresenter

from mqttbridge.config.schema import Config, ConfigError, _Reader
from mqttbridge.config.yaml_reader import _Given

__all__ = ["parse_settings"]

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
# bool first (it is an int); a subclass (IntEnum, Django's SafeString) is read as its base.
_SCALARS: tuple[type[Any], ...] = (bool, int, float, str, bytes)


class _Opaque(yaml.ScalarNode):
    """Stands in for a value YAML cannot hold; reading it is an error that says what it is."""

    def __init__(self, problem: str) -> None:
        super().__init__("mqttbridge:python", "")
        self.problem = problem


def _problem(value: Any) -> str:
    if isinstance(value, type):
        path = f"{value.__module__}:{value.__qualname__}"
        return (
            f"got the class {value.__module__}.{value.__qualname__}; write its import path "
            f"as a string: {path!r}"
        )
    kind = type(value)
    return (
        f"got a {kind.__module__}.{kind.__qualname__} object; use a string, number, boolean, "
        "None, dict or list"
    )


class _Nodes:
    """Python values into nodes: dicts, lists and tuples by shape, scalars by
    ``SafeRepresenter`` (so a float reads back as the same float)."""

    def __init__(self) -> None:
        self.representer = SafeRepresenter()
        self.open: set[int] = set()  # containers being converted: a cycle is an error

    def node(self, value: Any) -> yaml.Node:
        if isinstance(value, Mapping | list | tuple):
            if id(value) in self.open:
                return _Opaque("contains itself; give plain values")
            self.open.add(id(value))
            try:
                if isinstance(value, Mapping):
                    pairs = [(self.node(k), self.node(v)) for k, v in value.items()]
                    return yaml.MappingNode(_MAP, pairs)
                return yaml.SequenceNode(_SEQ, [self.node(item) for item in value])
            finally:
                self.open.discard(id(value))
        if isinstance(value, os.PathLike):
            value = os.fspath(value)  # BASE_DIR / "certs" / "ca.pem"
        if value is None:
            return self.representer.represent_data(None)
        for kind in _SCALARS:
            if isinstance(value, kind):
                node: yaml.Node = self.representer.represent_data(kind(value))
                return node
        return _Opaque(_problem(value))


class _SettingsReader(_Reader):
    from_mapping = True

    def error(self, node: yaml.Node | None, key: str, message: str) -> ConfigError:
        if isinstance(node, _Given):
            return super().error(node, key, message)
        return ConfigError(message, source=self.source, key=key, subscripts=True)

    def check_tag(self, node: yaml.Node, key: str) -> None:
        if isinstance(node, _Opaque):
            raise self.error(node, key, node.problem)
        super().check_tag(node, key)

    def substitute(self, node: yaml.ScalarNode, key: str) -> str:
        return str(node.value)  # Python settings read os.environ themselves


def parse_settings(
    mapping: Any,
    source: str = "settings.MQTTBRIDGE",
    *,
    import_consumers: bool = True,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """Validate ``mapping``, which has the keys of config.yaml (docs/config.md), with the
    file's rules; raise :class:`ConfigError` naming each wrong key as ``source[...]``.

    ``import_consumers`` and ``overrides`` are as for :func:`mqttbridge.config.load_config`.
    """
    reader = _SettingsReader(source, {}, import_consumers, overrides)
    return reader.read(_Nodes().node(mapping))
