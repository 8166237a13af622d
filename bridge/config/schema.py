"""The bridge's YAML configuration, parsed into frozen dataclasses.

The file is composed into nodes by PyYAML's ``SafeLoader`` and walked here rather than loaded
into plain dicts, so that every value keeps its line and every error can read::

    config.yaml:14: routes[2].consumer: module 'consumers.telemetry' has no attribute 'X'

Nothing but standard YAML scalars, mappings and lists is ever constructed: tags such as
``!!python/object`` are refused. ``docs/config.md`` describes every key.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import ssl
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from mqttbridge.broker.passwords import PasswordHash
from mqttbridge.config.values import (
    _TLS_SCHEMES,
    _check_channel_name,
    _check_client_id,
    _check_shared_group,
    _embedded_access_problem,
    _generate_client_id,
    _is_loopback,
    _mask_password,
    _parse_broker_url,
    _parse_layer_url,
    _parse_listen,
    _protocol,
    _qos,
)
from mqttbridge.config.yaml_reader import (
    _boolean,
    _integer,
    _line,
    _NodeReader,
    _optional_boolean,
    _seconds,
    _Section,
)
from mqttbridge.protocol.topics import compile_pattern, validate_publish_topic

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
    "resolve_consumers",
]

# Channels' own in-memory layer, with its per-call expiry sweep throttled (bridge/layers.py).
_MEMORY_BACKEND = "mqttbridge.layers.memory.InMemoryChannelLayer"
_REDIS_BACKEND = "mqttbridge.layers.redis.RedisChannelLayer"
_SESSION_EXPIRY_MAX = 0xFFFFFFFF  # "never expires" (MQTT 5, 3.1.2.11.2)
# IANA's ports for MQTT and MQTT over TLS.
_WELL_KNOWN_SCHEMES = {1883: "mqtt", 8883: "mqtts"}
_PACKET_MAX = 268_435_455  # largest Remaining Length MQTT can encode (MQTT 5, 1.5.5)
# Devices default to MQTT's registered port, and the embedded broker is for setups without
# Mosquitto, where 1883 is free. The repository's config.yaml picks 18830 instead so that its
# demo also runs next to a Mosquitto (docs/config.md, "The embedded broker").
EMBEDDED_LISTEN = "127.0.0.1:1883"


class ConfigError(Exception):
    """The configuration cannot be used. ``str()`` reads ``<file>:<line>: <key path>: <message>``.

    ``line`` is 1-based, or ``None`` when the problem is not at one place (a missing file);
    ``key`` is empty when no key is involved (a YAML syntax error).

    A file with several mistakes raises one ``ConfigError`` for all of them: ``errors`` lists
    each (the first also gives ``message``, ``line`` and ``key``), and ``str()`` has a line each.
    """

    def __init__(
        self, message: str, *, source: str, line: int | None = None, key: str = ""
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.key = key
        self.errors: tuple[ConfigError, ...] = (self,)
        where = source if line is None else f"{source}:{line}"
        super().__init__(": ".join(part for part in (where, key, message) if part))

    @classmethod
    def combine(cls, errors: Sequence[ConfigError]) -> ConfigError:
        """One error for ``errors``, ordered by line as the file reads."""
        ordered = sorted(errors, key=lambda error: error.line or 0)
        if len(ordered) == 1:
            return ordered[0]
        first = ordered[0]
        combined = cls(first.message, source=first.source, line=first.line, key=first.key)
        combined.errors = tuple(ordered)
        combined.args = ("\n".join(str(error) for error in ordered),)
        return combined

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only __init__ would break pickling (multiprocessing, pytest-xdist).
        parts = [(e.message, e.source, e.line, e.key) for e in self.errors]
        return _rebuild_error, (parts,)


def _rebuild_error(parts: list[tuple[str, str, int | None, str]]) -> ConfigError:
    return ConfigError.combine(
        [ConfigError(message, source=src, line=line, key=key) for message, src, line, key in parts]
    )


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
    this class, fills ``client_id``, picks ``protocol="3.1.1"`` for the embedded broker, checks
    the ``users`` hashes and refuses an embedded broker open to the network.
    """

    url: str = "embedded"
    listen: str = EMBEDDED_LISTEN
    allow_anonymous: bool | None = None
    # Username -> password hash ($7$..., bridge.passwords). Left out of hash(): a dict has none.
    users: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
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
    # Whether the file set ``url``: inside a Django project the project's CHANNEL_LAYERS win,
    # and a URL the user wrote deserves a warning that it is ignored; the default does not.
    url_given: bool = field(default=False, compare=False)

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

    ``consumer_class`` is the imported class, filled by the loader or, when it was told not to
    import (``import_consumers=False``), by :func:`resolve_consumers`; either way a bad import
    is reported with the line of the route. ``line`` is the route's line in the file (0 if not
    from a file); ``topic_line`` and ``consumer_line`` are those of its two keys.
    """

    topic: str
    consumer: str
    qos: int = 1
    line: int = 0
    consumer_class: type | None = field(default=None, compare=False, repr=False)
    topic_line: int = field(default=0, compare=False, repr=False)
    consumer_line: int = field(default=0, compare=False, repr=False)


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
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    import_consumers: bool = True,
) -> Config:
    """Read and validate the YAML file at ``path``; raise :class:`ConfigError` if it is wrong.

    ``${VAR}`` references are looked up in ``environ`` (default: ``os.environ``). With
    ``import_consumers=False`` routes' consumers are not imported: set Django up first, then
    call :func:`resolve_consumers` (consumer modules often import models).
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", source=source) from exc
    return parse_config(text, source, environ=environ, import_consumers=import_consumers)


def parse_config(
    text: str,
    source: str = "<string>",
    *,
    environ: Mapping[str, str] | None = None,
    import_consumers: bool = True,
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
    reader = _Reader(source, os.environ if environ is None else environ, import_consumers)
    return reader.read(root)


def resolve_consumers(config: Config) -> Config:
    """Import every route's consumer not imported yet; each failure names its route's line,
    and all of them are raised together."""
    routes = []
    errors = []
    for index, route in enumerate(config.routes):
        if route.consumer_class is None:
            try:
                route = replace(route, consumer_class=_consumer_class(route.consumer))
            except ValueError as exc:
                error = ConfigError(
                    str(exc),
                    source=config.source,
                    line=route.consumer_line or route.line or None,
                    key=f"routes[{index}].consumer",
                )
                error.__cause__ = exc  # what failed inside the import, for whoever explains it
                errors.append(error)
        routes.append(route)
    if errors:
        raise ConfigError.combine(errors)
    return replace(config, routes=tuple(routes))


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


def _no_key_password() -> str:
    # Without a callback OpenSSL prompts on the terminal for an encrypted key's password,
    # which hangs a service; failing says what is wrong instead.
    raise ssl.SSLError("the private key is encrypted; give an unencrypted key file")


# --- the schema --------------------------------------------------------------------------------

_TOP_KEYS = ("broker", "channel_layer", "routes", "limits", "dead_letter_topic")
_BROKER_KEYS = (
    "url", "listen", "allow_anonymous", "users", "client_id", "username", "password", "protocol",
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


class _AnyKey(Collection[str]):
    """The keys of a mapping whose keys are data (``broker.users``), not schema."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_ANY_KEY = _AnyKey()


class _Reader(_NodeReader):
    """Walks the composed node tree with the schema in hand, turning nodes into dataclasses.

    A wrong value is recorded and its default stands in, so the whole file is read and every
    mistake reported at once; ``read`` raises them together at the end.
    """

    error_type = ConfigError

    def __init__(
        self, source: str, environ: Mapping[str, str], import_consumers: bool = True
    ) -> None:
        super().__init__(source, environ)
        # Off when Django must be set up between parsing and importing (resolve_consumers).
        self.import_consumers = import_consumers
        self.warnings: list[str] = []

    def error(self, node: yaml.Node | None, key: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, line=_line(node), key=key)

    # --- sections ------------------------------------------------------------------------------

    def read(self, root: yaml.Node | None) -> Config:
        top = _Section(self, root, "", _TOP_KEYS)
        broker = self.read_broker(top.child("broker", _BROKER_KEYS))
        layer = self.read_channel_layer(top.child("channel_layer", _LAYER_KEYS))
        routes = self.read_routes(top.nodes.get("routes"))
        limits = self.read_limits(top.child("limits", _LIMITS_KEYS))
        dead_letter = top.text("dead_letter_topic", "mqttbridge/dead-letter")
        top.validate("dead_letter_topic", validate_publish_topic, dead_letter)
        if self.errors:
            raise ConfigError.combine([e for e in self.errors if isinstance(e, ConfigError)])
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
        if s.validate("url", _parse_broker_url, url) is None:
            url = "embedded"  # stands in, so that the rest of the section is still read
        scheme, host, port, _ = _parse_broker_url(url)
        embedded = scheme == "embedded"
        expected = _WELL_KNOWN_SCHEMES.get(port)
        if expected is not None and scheme in ("mqtt", "mqtts") and scheme != expected:
            # Caught at run time too (bridge/_connect_errors.py), but `check` can say it first.
            self.warnings.append(
                f"broker.url: port {port} is the port for {expected}://, not {scheme}://; "
                f"use {expected}:// unless the broker is set up otherwise"
            )
        listen = s.text("listen", EMBEDDED_LISTEN)
        if s.validate("listen", _parse_listen, listen) is None:
            listen = EMBEDDED_LISTEN  # stands in, as url's does
        listen_host, listen_port = _parse_listen(listen)
        # Ignored unless embedded, not refused: one file often switches between the embedded
        # broker and a remote one through ${MQTTBRIDGE_BROKER:-embedded}.
        allow_anonymous = s.get("allow_anonymous", None, _optional_boolean)
        users = self.read_users(s.child("users", _ANY_KEY))
        if embedded:
            problem = _embedded_access_problem(
                listen_host, listen_port, allow_anonymous, bool(users)
            )
            if problem is not None:
                key, message = problem
                s.reject(
                    key.removeprefix("broker."),
                    message,
                    involving=("url", "listen", "allow_anonymous", "users"),
                )

        # amqtt, the embedded broker, speaks MQTT 3.1.1 only.
        protocol = s.get("protocol", "3.1.1" if embedded else "5", _protocol)
        if embedded and protocol != "3.1.1":
            s.reject(
                "protocol",
                "the embedded broker speaks MQTT 3.1.1 only; use '3.1.1'",
                involving=("url",),
            )
        keepalive = s.get("keepalive", 30, _integer(5, 65535))
        clean_start = s.get("clean_start", True, _boolean)
        session_expiry = s.get("session_expiry", 0, _integer(0, _SESSION_EXPIRY_MAX))
        if session_expiry and protocol != "5":
            s.reject(
                "session_expiry",
                "only MQTT 5 has a session expiry; set protocol: '5'",
                involving=("protocol", "url"),
            )

        client_id = s.optional_text("client_id")
        if client_id is not None:
            s.validate("client_id", _check_client_id, client_id)
        elif clean_start:
            client_id = _generate_client_id()
        else:
            s.reject(
                "clean_start",
                "false needs a broker.client_id: the broker keeps the session under that id, "
                "and a generated one would differ on every start",
                involving=("client_id",),
            )
        if not clean_start and protocol == "5" and session_expiry == 0:
            self.warnings.append(
                "broker.clean_start is false but broker.session_expiry is 0: with MQTT 5 the "
                "broker drops the session when the connection closes; set session_expiry"
            )

        username = s.optional_text("username")
        password = s.optional_text("password")
        if password is not None and username is None and protocol == "3.1.1":
            s.reject(
                "password",
                "MQTT 3.1.1 sends a password only with a broker.username",
                involving=("username", "protocol", "url"),
            )
        credentials = username is not None or password is not None
        if credentials and scheme in ("mqtt", "ws") and not _is_loopback(host):
            what = "password" if password is not None else "username"
            secure = "mqtts" if scheme == "mqtt" else "wss"
            self.warnings.append(f"{what} sent in clear text to {host}; use {secure}://")

        shared_group = s.optional_text("shared_group")
        if shared_group is not None:
            s.validate("shared_group", _check_shared_group, shared_group)

        # With a wrong url, which TLS keys fit is unknown: read them without judging.
        known_scheme = None if "url" in s.failed else scheme
        tls = self.read_tls(s.child("tls", _TLS_KEYS), known_scheme, host)
        reconnect = self.read_reconnect(s.child("reconnect", _RECONNECT_KEYS))
        return BrokerConfig(
            url=url,
            listen=listen,
            allow_anonymous=allow_anonymous,
            users=users,
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

    def read_users(self, s: _Section) -> dict[str, str]:
        users = {}
        for name in s.nodes:
            text = s.optional_text(name) or ""
            try:
                PasswordHash.parse(text)
            except ValueError as exc:
                s.reject(name, str(exc).replace("<username>", name))
                continue
            users[name] = text
        return users

    def read_tls(self, s: _Section, scheme: str | None, host: str) -> TLSConfig:
        tls = TLSConfig(
            ca_file=s.optional_text("ca_file"),
            cert_file=s.optional_text("cert_file"),
            key_file=s.optional_text("key_file"),
            insecure=s.get("insecure", False, _boolean),
        )
        if scheme is None:
            return tls
        if scheme not in _TLS_SCHEMES:
            # Null values are fine: one file can serve mqtt:// and mqtts:// through ${VARS}.
            for key in _TLS_KEYS:
                if getattr(tls, key):
                    s.reject(key, "only used with mqtts:// or wss:// URLs")
            return tls
        if tls.key_file is not None and tls.cert_file is None:
            s.reject("key_file", "needs broker.tls.cert_file", involving=("cert_file",))
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, key)
            if path is not None and not os.path.isfile(path):
                s.reject(key, f"file not found: {path!r}")
        if s.failed:
            return tls  # loading files that are missing or wrong would only repeat the error
        # Load the files now, so that unreadable certificates or a key that does not match its
        # certificate are reported with their line instead of at the first connection attempt.
        try:
            context = ssl.create_default_context(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            s.reject("ca_file", f"cannot load CA certificates: {_ssl_reason(exc)}")
            return tls
        if tls.cert_file is not None:
            try:
                context.load_cert_chain(tls.cert_file, tls.key_file, _no_key_password)
            except (OSError, ssl.SSLError) as exc:
                reason = _ssl_reason(exc)
                if tls.key_file is not None and "key" in reason:
                    s.reject("key_file", f"cannot use this key: {reason}")
                else:
                    s.reject("cert_file", f"cannot load certificate: {reason}")
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
                s.reject(
                    "max_delay",
                    f"must be at least min_delay ({min_delay:g})",
                    involving=("min_delay",),
                )
            else:
                s.reject("min_delay", f"must be at most max_delay ({max_delay:g})")
        return ReconnectConfig(min_delay=min_delay, max_delay=max_delay)

    def read_channel_layer(self, s: _Section) -> ChannelLayerConfig:
        url = s.text("url", "memory://")
        s.validate("url", _parse_layer_url, url)
        channel = s.text("publish_channel", "mqtt.publish")
        s.validate("publish_channel", _check_channel_name, channel)
        return ChannelLayerConfig(
            url=url,
            publish_channel=channel,
            group_expiry=s.get("group_expiry", 86400, _integer(1)),
            url_given=s.given("url"),
        )

    def read_routes(self, node: yaml.Node | None) -> tuple[RouteConfig, ...]:
        routes = []
        no_items: list[yaml.Node] = []
        items = self.recover(lambda: self.sequence(node, "routes"), no_items)
        for index, item in enumerate(items):
            s = _Section(self, item, f"routes[{index}]", _ROUTE_KEYS)
            topic = s.required_text("topic")
            if topic is not None:
                s.validate("topic", compile_pattern, topic)
            consumer = s.required_text("consumer")
            consumer_class = None
            if consumer is not None and self.import_consumers:
                consumer_class = s.validate("consumer", _consumer_class, consumer)
            qos = s.get("qos", 1, _qos)
            routes.append(
                RouteConfig(
                    topic or "",
                    consumer or "",
                    qos,
                    _line(item) or 0,
                    consumer_class=consumer_class,
                    topic_line=_line(s.nodes.get("topic")) or 0,
                    consumer_line=_line(s.nodes.get("consumer")) or 0,
                )
            )
        return tuple(routes)

    def read_limits(self, s: _Section) -> LimitsConfig:
        return LimitsConfig(
            max_payload_bytes=s.get("max_payload_bytes", 262144, _integer(1, _PACKET_MAX)),
            max_instances=s.get("max_instances", 10000, _integer(1)),
            idle_timeout=s.get("idle_timeout", 300.0, _seconds(0, exclusive=True)),
            queue_size=s.get("queue_size", 1000, _integer(1)),
            shutdown_timeout=s.get("shutdown_timeout", 10.0, _seconds(0)),
        )


def _ssl_reason(exc: OSError) -> str:
    # "[X509: KEY_VALUES_MISMATCH] key values mismatch (_ssl.c:3926)" -> "key values mismatch"
    text = exc.strerror or str(exc)
    if isinstance(exc, ssl.SSLError) and len(exc.args) == 1:
        text = str(exc.args[0])  # raised by _no_key_password
    text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", text)
    return "not a PEM file" if text == "PEM lib" else text
