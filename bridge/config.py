"""The bridge's YAML configuration, parsed into frozen dataclasses.

The file is composed into nodes by PyYAML's ``SafeLoader`` and walked here rather than loaded
into plain dicts, so that every value keeps its line and every error can read::

    config.yaml:14: routes[2].consumer: module 'consumers.telemetry' has no attribute 'X'

Nothing but standard YAML scalars, mappings and lists is ever constructed: tags such as
``!!python/object`` are refused. ``docs/config.md`` describes every key.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import ipaddress
import math
import os
import re
import secrets
import socket
import ssl
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import yaml

from bridge.topics import compile_pattern, validate_publish_topic

__all__ = [
    "BrokerConfig",
    "ChannelLayerConfig",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "ReconnectConfig",
    "RouteConfig",
    "TLSConfig",
    "default_config",
    "import_string",
    "load_config",
    "parse_config",
]

T = TypeVar("T")

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}
_TLS_SCHEMES = ("mqtts", "wss")
# Channels' own in-memory layer, with its per-call expiry sweep throttled (bridge/layers.py).
_MEMORY_BACKEND = "bridge.layers.InMemoryChannelLayer"
_REDIS_BACKEND = "bridge.redis_layer.RedisChannelLayer"
# channels.layers.BaseChannelLayer.channel_name_regex, minus the "!" of process-local names,
# which only a receiving layer may hand out.
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9._-]{1,99}")
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_SESSION_EXPIRY_MAX = 0xFFFFFFFF  # "never expires" (MQTT 5, 3.1.2.11.2)
_PACKET_MAX = 268_435_455  # largest Remaining Length MQTT can encode (MQTT 5, 1.5.5)


class ConfigError(Exception):
    """The configuration cannot be used. ``str()`` reads ``<file>:<line>: <key path>: <message>``.

    ``line`` is 1-based, or ``None`` when the problem is not at one place (a missing file);
    ``key`` is empty when no key is involved (a YAML syntax error).
    """

    def __init__(
        self, message: str, *, source: str, line: int | None = None, key: str = ""
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.key = key
        where = source if line is None else f"{source}:{line}"
        super().__init__(": ".join(part for part in (where, key, message) if part))

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only __init__ would break pickling (multiprocessing, pytest-xdist).
        return _rebuild_error, (self.message, self.source, self.line, self.key)


def _rebuild_error(message: str, source: str, line: int | None, key: str) -> ConfigError:
    return ConfigError(message, source=source, line=line, key=key)


@dataclass(frozen=True)
class TLSConfig:
    """Certificates for ``mqtts://`` and ``wss://`` brokers. The server is verified unless
    ``insecure`` is true; ``ca_file=None`` trusts the system CA store."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class ReconnectConfig:
    """Backoff between reconnection attempts: doubles from ``min_delay`` up to ``max_delay``."""

    min_delay: float = 0.5
    max_delay: float = 30.0


@dataclass(frozen=True)
class BrokerConfig:
    """Where and how the bridge connects to MQTT.

    ``scheme``, ``host``, ``port`` and ``path`` are derived from ``url`` (from ``listen`` for
    the embedded broker); ``path`` is only set for ``ws://`` and ``wss://`` and keeps any query.
    Construction raises ``ValueError`` for a malformed ``url`` or ``listen``. The loader, not
    this class, fills ``client_id`` and picks ``protocol="3.1.1"`` for the embedded broker.
    """

    url: str = "embedded"
    listen: str = "127.0.0.1:1883"
    allow_anonymous: bool | None = None
    client_id: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    protocol: str = "5"
    keepalive: int = 30
    clean_start: bool = True
    session_expiry: int = 0
    shared_group: str | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)
    outbound_queue: int = 10000
    scheme: str = field(init=False)
    host: str = field(init=False)
    port: int = field(init=False)
    path: str = field(init=False)

    def __post_init__(self) -> None:
        scheme, host, port, path = _parse_broker_url(self.url)
        if scheme == "embedded":
            host, port = _parse_listen(self.listen)
        # The dataclass is frozen; derived fields can only be set this way.
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "path", path)

    @property
    def uses_tls(self) -> bool:
        """Whether the connection is encrypted (``mqtts://`` or ``wss://``)."""
        return self.scheme in _TLS_SCHEMES


@dataclass(frozen=True)
class ChannelLayerConfig:
    """The Channels layer that carries publishes from Django code to the bridge."""

    url: str = "memory://"
    publish_channel: str = "mqtt.publish"
    group_expiry: int = 86400

    def __repr__(self) -> str:
        # A redis:// URL often carries the password: keep it out of logs and tracebacks.
        return (
            f"ChannelLayerConfig(url={_mask_password(self.url)!r}, "
            f"publish_channel={self.publish_channel!r}, group_expiry={self.group_expiry!r})"
        )

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for logs and terminal output."""
        return _mask_password(self.url)

    @property
    def backend(self) -> str:
        """The dotted path of the Channels layer class ``url`` selects."""
        return _MEMORY_BACKEND if self.url == "memory://" else _REDIS_BACKEND

    def channels_settings(self) -> dict[str, Any]:
        """The ``CHANNEL_LAYERS["default"]`` entry for Django settings."""
        if self.backend == _MEMORY_BACKEND:
            return {"BACKEND": _MEMORY_BACKEND}
        return {
            "BACKEND": _REDIS_BACKEND,
            "CONFIG": {"hosts": [self.url], "group_expiry": self.group_expiry},
        }


@dataclass(frozen=True)
class RouteConfig:
    """One entry of ``routes``: MQTT messages on ``topic`` go to ``consumer``.

    ``consumer_class`` is the imported class; the loader fills it, so a bad import is reported
    with the line of the route. ``line`` is the route's line in the file (0 if not from a file).
    """

    topic: str
    consumer: str
    qos: int = 1
    line: int = 0
    consumer_class: type | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds on memory and time, so one misbehaving device or consumer cannot exhaust them."""

    max_payload_bytes: int = 262144
    max_instances: int = 10000
    idle_timeout: float = 300.0
    queue_size: int = 1000
    shutdown_timeout: float = 10.0


@dataclass(frozen=True)
class Config:
    """The whole configuration. ``source`` names the file it came from; ``warnings`` are
    human-readable problems that do not stop the bridge (the CLI logs them)."""

    broker: BrokerConfig = field(default_factory=BrokerConfig)
    channel_layer: ChannelLayerConfig = field(default_factory=ChannelLayerConfig)
    routes: tuple[RouteConfig, ...] = ()
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    dead_letter_topic: str = "mqttbridge/dead-letter"
    source: str = "<default>"
    warnings: tuple[str, ...] = ()


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read and validate the YAML file at ``path``; raise :class:`ConfigError` if it is wrong.

    ``${VAR}`` references are looked up in ``environ`` (default: ``os.environ``).
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", source=source) from exc
    return parse_config(text, source, environ=environ)


def parse_config(
    text: str, source: str = "<string>", *, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate YAML ``text``; ``source`` is the name errors give for it. Empty means defaults."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "cannot parse"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {problem}", source=source, line=line) from exc
    except yaml.YAMLError as exc:  # ReaderError: bytes that are not printable text
        raise ConfigError(f"invalid YAML: {exc}", source=source) from exc
    return _Reader(source, os.environ if environ is None else environ).read(root)


def default_config() -> Config:
    """The configuration an empty file gives: embedded broker, in-memory layer, no routes."""
    return parse_config("", "<default>")


def import_string(path: str) -> Any:
    """Import ``"module:attr"`` or ``"module.attr"`` (``attr`` may be dotted after a colon).

    Raises ``ValueError`` with a message naming what failed: ``cannot import module 'x': ...``
    or ``module 'x' has no attribute 'Y'``.
    """
    module_name, colon, attr = path.partition(":")
    if not colon:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:Class' or 'module.Class', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # user code may fail any way at import; report it, with the cause
        raise ValueError(f"cannot import module {module_name!r}: {_reason(exc)}") from exc
    target: Any = module
    for name in attr.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    return target


def _reason(exc: BaseException) -> str:
    # An ImportError's message stands alone ("No module named 'x'"); others need their type.
    if isinstance(exc, ImportError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _consumer_class(path: str) -> type:
    target = import_string(path)
    if not inspect.isclass(target):
        raise ValueError(f"{path!r} is not a class")
    return target


# --- values ------------------------------------------------------------------------------------


def _parse_broker_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` of a broker URL, or ``ValueError`` saying what is wrong."""
    if url == "embedded":
        return "embedded", "", 0, ""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        raise ValueError(
            f"expected 'embedded' or an mqtt://, mqtts://, ws:// or wss:// URL, got {url!r}"
        )
    if "@" in parts.netloc:
        raise ValueError("credentials do not belong in the URL; use broker.username and password")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    if not _valid_host(parts.hostname):
        raise ValueError(f"invalid host {parts.hostname!r} in {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in {url!r}; expected a number from 1 to 65535") from None
    if port == 0:
        raise ValueError(f"invalid port in {url!r}; expected a number from 1 to 65535")
    if parts.fragment:
        raise ValueError(f"unexpected '#' fragment in {url!r}")
    if parts.scheme in ("ws", "wss"):
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    elif parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{parts.scheme}:// URLs take no path, got {url!r}")
    else:
        path = ""
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme], path


def _parse_listen(listen: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port``; port 0 asks the OS for a free port."""
    host, colon, port_text = listen.rpartition(":")
    if not colon or not host or not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"expected host:port, got {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, e.g. '[::1]:1883', got {listen!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    return host, port


def _parse_layer_url(url: str) -> str:
    if url == "memory://":
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(
            f"expected 'memory://' or a redis:// or rediss:// URL, got {_mask_password(url)!r}"
        )
    if not parts.hostname:
        raise ValueError(f"no host in {_mask_password(url)!r}")
    try:
        parts.port  # noqa: B018 - the property validates the port
    except ValueError:
        raise ValueError(f"invalid port in {_mask_password(url)!r}") from None
    database = parts.path.strip("/")
    if database and not (database.isascii() and database.isdigit()):
        raise ValueError(f"the database after the host must be a number, got {database!r}")
    return url


def _mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{hostinfo}").geturl()


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _HOSTNAME.fullmatch(host) is not None
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _generate_client_id() -> str:
    # Some brokers limit client ids to [0-9A-Za-z-]; keep the host part within that.
    hostname = socket.gethostname().split(".")[0]
    hostname = re.sub(r"[^0-9A-Za-z-]", "-", hostname)[:32] or "host"
    return f"mqttbridge-{hostname}-{secrets.token_hex(4)}"


def _no_key_password() -> str:
    # Without a callback OpenSSL prompts on the terminal for an encrypted key's password,
    # which hangs a service; failing says what is wrong instead.
    raise ssl.SSLError("the private key is encrypted; give an unencrypted key file")


def _check_client_id(client_id: str) -> None:
    if not client_id:
        raise ValueError("must not be empty; leave it out to have one generated")
    if "\x00" in client_id:
        raise ValueError("must not contain U+0000")
    if len(client_id.encode("utf-8", "surrogatepass")) > 65535:
        raise ValueError("is longer than MQTT's 65535 bytes")


def _check_shared_group(group: str) -> None:
    if not group or any(char in group for char in "/+#\x00"):
        raise ValueError(f"must be non-empty and contain no '/', '+' or '#', got {group!r}")


def _check_channel_name(name: str) -> None:
    if not _CHANNEL_NAME.fullmatch(name):
        raise ValueError(
            f"a channel name is 1 to 99 ASCII letters, digits, '-', '_' or '.', got {name!r}"
        )


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


def _integer(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        # bool is an int subclass, but `keepalive: true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_render(value)}")
        _check_range(value, minimum, maximum)
        return value

    return convert


def _seconds(minimum: float, *, exclusive: bool = False) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number of seconds, got {_render(value)}")
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number of seconds, got {_render(value)}")
        _check_range(value, minimum, exclusive=exclusive)
        return float(value)

    return convert


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_render(value)}")
    return value


def _optional_boolean(value: Any) -> bool | None:
    return None if value is None else _boolean(value)


def _protocol(value: Any) -> str:
    # 311 and 5.0 are what people type for "3.1.1" and "5"; YAML makes them numbers.
    if not isinstance(value, bool):
        normal = {"5": "5", "5.0": "5", "3.1.1": "3.1.1", "311": "3.1.1"}.get(str(value))
        if normal is not None:
            return normal
    raise ValueError(f"expected '3.1.1' or '5', got {_render(value)}")


def _qos(value: Any) -> int:
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise ValueError(f"expected 0, 1 or 2, got {_render(value)}")
    return int(value)


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

_TOP_KEYS = ("broker", "channel_layer", "routes", "limits", "dead_letter_topic")
_BROKER_KEYS = (
    "url", "listen", "allow_anonymous", "client_id", "username", "password", "protocol",
    "keepalive", "clean_start", "session_expiry", "shared_group", "tls", "reconnect",
    "outbound_queue",
)  # fmt: skip
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "insecure")
_RECONNECT_KEYS = ("min_delay", "max_delay")
_LAYER_KEYS = ("url", "publish_channel", "group_expiry")
_ROUTE_KEYS = ("topic", "consumer", "qos")
_LIMITS_KEYS = (
    "max_payload_bytes", "max_instances", "idle_timeout", "queue_size", "shutdown_timeout",
)  # fmt: skip


def _line(node: yaml.Node | None) -> int | None:
    return None if node is None else node.start_mark.line + 1


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:") else tag


class _Scalar(NamedTuple):
    value: Any  # as YAML types it: int, float, bool, None, str, ...
    text: str  # as written, after ${VAR} substitution


class _Reader:
    """Walks the composed node tree with the schema in hand, turning nodes into dataclasses."""

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.warnings: list[str] = []
        # Only its resolver and constructors are used, on nodes we hand it one at a time.
        self._loader = yaml.SafeLoader("")

    def error(self, node: yaml.Node | None, key: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, line=_line(node), key=key)

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
                raise self.error(
                    key_node, _join(key, name), f"duplicate key (first on line {first_line[name]})"
                )
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
                raise self.error(key_node, _join(key, str(name)), _unknown_key(str(name), keys))
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

    # --- sections ------------------------------------------------------------------------------

    def read(self, root: yaml.Node | None) -> Config:
        top = _Section(self, root, "", _TOP_KEYS)
        broker = self.read_broker(top.child("broker", _BROKER_KEYS))
        layer = self.read_channel_layer(top.child("channel_layer", _LAYER_KEYS))
        routes = self.read_routes(top.nodes.get("routes"))
        limits = self.read_limits(top.child("limits", _LIMITS_KEYS))
        dead_letter = top.text("dead_letter_topic", "mqttbridge/dead-letter")
        top.check("dead_letter_topic", validate_publish_topic, dead_letter)
        return Config(
            broker=broker,
            channel_layer=layer,
            routes=routes,
            limits=limits,
            dead_letter_topic=dead_letter,
            source=self.source,
            warnings=tuple(self.warnings),
        )

    def read_broker(self, s: _Section) -> BrokerConfig:
        url = s.text("url", "embedded")
        scheme, host, _, _ = s.check("url", _parse_broker_url, url)
        embedded = scheme == "embedded"
        listen = s.text("listen", "127.0.0.1:1883")
        s.check("listen", _parse_listen, listen)
        # Ignored unless embedded, not refused: one file often switches between the embedded
        # broker and a remote one through ${MQTTBRIDGE_BROKER:-embedded}.
        allow_anonymous = s.get("allow_anonymous", None, _optional_boolean)

        # amqtt, the embedded broker, speaks MQTT 3.1.1 only.
        protocol = s.get("protocol", "3.1.1" if embedded else "5", _protocol)
        if embedded and protocol != "3.1.1":
            raise s.error("protocol", "the embedded broker speaks MQTT 3.1.1 only; use '3.1.1'")
        keepalive = s.get("keepalive", 30, _integer(5, 65535))
        clean_start = s.get("clean_start", True, _boolean)
        session_expiry = s.get("session_expiry", 0, _integer(0, _SESSION_EXPIRY_MAX))
        if session_expiry and protocol != "5":
            raise s.error("session_expiry", "only MQTT 5 has a session expiry; set protocol: '5'")

        client_id = s.optional_text("client_id")
        if client_id is not None:
            s.check("client_id", _check_client_id, client_id)
        elif clean_start:
            client_id = _generate_client_id()
        else:
            raise s.error(
                "clean_start",
                "false needs a broker.client_id: the broker keeps the session under that id, "
                "and a generated one would differ on every start",
            )
        if not clean_start and protocol == "5" and session_expiry == 0:
            self.warnings.append(
                "broker.clean_start is false but broker.session_expiry is 0: with MQTT 5 the "
                "broker drops the session when the connection closes; set session_expiry"
            )

        username = s.optional_text("username")
        password = s.optional_text("password")
        if password is not None and username is None and protocol == "3.1.1":
            raise s.error("password", "MQTT 3.1.1 sends a password only with a broker.username")
        credentials = username is not None or password is not None
        if credentials and scheme in ("mqtt", "ws") and not _is_loopback(host):
            what = "password" if password is not None else "username"
            secure = "mqtts" if scheme == "mqtt" else "wss"
            self.warnings.append(f"{what} sent in clear text to {host}; use {secure}://")

        shared_group = s.optional_text("shared_group")
        if shared_group is not None:
            s.check("shared_group", _check_shared_group, shared_group)

        tls = self.read_tls(s.child("tls", _TLS_KEYS), scheme, host)
        reconnect = self.read_reconnect(s.child("reconnect", _RECONNECT_KEYS))
        return BrokerConfig(
            url=url,
            listen=listen,
            allow_anonymous=allow_anonymous,
            client_id=client_id,
            username=username,
            password=password,
            protocol=protocol,
            keepalive=keepalive,
            clean_start=clean_start,
            session_expiry=session_expiry,
            shared_group=shared_group,
            tls=tls,
            reconnect=reconnect,
            outbound_queue=s.get("outbound_queue", 10000, _integer(1)),
        )

    def read_tls(self, s: _Section, scheme: str, host: str) -> TLSConfig:
        tls = TLSConfig(
            ca_file=s.optional_text("ca_file"),
            cert_file=s.optional_text("cert_file"),
            key_file=s.optional_text("key_file"),
            insecure=s.get("insecure", False, _boolean),
        )
        if scheme not in _TLS_SCHEMES:
            # Null values are fine: one file can serve mqtt:// and mqtts:// through ${VARS}.
            for key in _TLS_KEYS:
                if getattr(tls, key):
                    raise s.error(key, "only used with mqtts:// or wss:// URLs")
            return tls
        if tls.key_file is not None and tls.cert_file is None:
            raise s.error("key_file", "needs broker.tls.cert_file")
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, key)
            if path is not None and not os.path.isfile(path):
                raise s.error(key, f"file not found: {path!r}")
        # Load the files now, so that unreadable certificates or a key that does not match its
        # certificate are reported with their line instead of at the first connection attempt.
        try:
            context = ssl.create_default_context(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise s.error("ca_file", f"cannot load CA certificates: {_ssl_reason(exc)}") from exc
        if tls.cert_file is not None:
            try:
                context.load_cert_chain(tls.cert_file, tls.key_file, _no_key_password)
            except (OSError, ssl.SSLError) as exc:
                reason = _ssl_reason(exc)
                if tls.key_file is not None and "key" in reason:
                    raise s.error("key_file", f"cannot use this key: {reason}") from exc
                raise s.error("cert_file", f"cannot load certificate: {reason}") from exc
        if tls.insecure:
            self.warnings.append(
                f"TLS certificate verification is disabled for {host} (broker.tls.insecure)"
            )
        return tls

    def read_reconnect(self, s: _Section) -> ReconnectConfig:
        min_delay = s.get("min_delay", 0.5, _seconds(0, exclusive=True))
        max_delay = s.get("max_delay", 30.0, _seconds(0, exclusive=True))
        if max_delay < min_delay:
            if s.given("max_delay"):
                raise s.error("max_delay", f"must be at least min_delay ({min_delay:g})")
            raise s.error("min_delay", f"must be at most max_delay ({max_delay:g})")
        return ReconnectConfig(min_delay=min_delay, max_delay=max_delay)

    def read_channel_layer(self, s: _Section) -> ChannelLayerConfig:
        url = s.text("url", "memory://")
        s.check("url", _parse_layer_url, url)
        channel = s.text("publish_channel", "mqtt.publish")
        s.check("publish_channel", _check_channel_name, channel)
        return ChannelLayerConfig(
            url=url,
            publish_channel=channel,
            group_expiry=s.get("group_expiry", 86400, _integer(1)),
        )

    def read_routes(self, node: yaml.Node | None) -> tuple[RouteConfig, ...]:
        routes = []
        for index, item in enumerate(self.sequence(node, "routes")):
            s = _Section(self, item, f"routes[{index}]", _ROUTE_KEYS)
            topic = s.required_text("topic")
            s.check("topic", compile_pattern, topic)
            consumer = s.required_text("consumer")
            consumer_class = s.check("consumer", _consumer_class, consumer)
            qos = s.get("qos", 1, _qos)
            routes.append(RouteConfig(topic, consumer, qos, _line(item) or 0, consumer_class))
        return tuple(routes)

    def read_limits(self, s: _Section) -> LimitsConfig:
        return LimitsConfig(
            max_payload_bytes=s.get("max_payload_bytes", 262144, _integer(1, _PACKET_MAX)),
            max_instances=s.get("max_instances", 10000, _integer(1)),
            idle_timeout=s.get("idle_timeout", 300.0, _seconds(0, exclusive=True)),
            queue_size=s.get("queue_size", 1000, _integer(1)),
            shutdown_timeout=s.get("shutdown_timeout", 10.0, _seconds(0)),
        )


class _Section:
    """One mapping of the file, read key by key with the key's type and constraints."""

    def __init__(
        self, reader: _Reader, node: yaml.Node | None, path: str, keys: Collection[str]
    ) -> None:
        self.reader = reader
        self.node = node
        self.path = path
        self.nodes = reader.mapping(node, path, keys)

    def child(self, key: str, keys: Collection[str]) -> _Section:
        return _Section(self.reader, self.nodes.get(key), _join(self.path, key), keys)

    def given(self, key: str) -> bool:
        return key in self.nodes

    def error(self, key: str, message: str) -> ConfigError:
        return self.reader.error(self.nodes.get(key, self.node), _join(self.path, key), message)

    def check(self, key: str, function: Callable[[Any], T], value: Any) -> T:
        """``function(value)``, its ``ValueError`` turned into an error at ``key``."""
        try:
            return function(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from exc

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
        return self.check(key, convert, self._value(key, as_text=False))

    def optional_text(self, key: str) -> str | None:
        if key not in self.nodes:
            return None
        value = self._value(key, as_text=True)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_render(value)}")
        return value

    def text(self, key: str, default: str) -> str:
        if key not in self.nodes:
            return default
        value = self.optional_text(key)
        if value is None:
            raise self.error(key, "expected a string, got null")
        return value

    def required_text(self, key: str) -> str:
        if key not in self.nodes:
            raise self.error(key, "required key is missing")
        return self.text(key, "")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _unknown_key(name: str, keys: Collection[str]) -> str:
    close = difflib.get_close_matches(name, keys, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return "unknown key; expected one of " + ", ".join(repr(key) for key in keys)


def _ssl_reason(exc: OSError) -> str:
    # "[X509: KEY_VALUES_MISMATCH] key values mismatch (_ssl.c:3926)" -> "key values mismatch"
    text = exc.strerror or str(exc)
    if isinstance(exc, ssl.SSLError) and len(exc.args) == 1:
        text = str(exc.args[0])  # raised by _no_key_password
    text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", text)
    return "not a PEM file" if text == "PEM lib" else text
