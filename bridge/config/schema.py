"""The bridge's YAML configuration, parsed into frozen dataclasses.

The file is composed into nodes by PyYAML's ``SafeLoader`` and walked here rather than loaded
into plain dicts, so that every value keeps its line and every error can read::

    config.yaml:14: routes[2].consumer: module 'consumers.telemetry' has no attribute 'X'

Nothing but standard YAML scalars, mappings and lists is ever constructed: tags such as
``!!python/object`` are refused.

Each key is declared once, as a field of its section's dataclass (``mqttbridge.config.settings``):
the reader takes from the fields which keys a section accepts and how each is read, and
``mqttbridge.config.docs`` writes the key tables of ``docs/config.md`` from them. The public
names are those ``mqttbridge.config`` exports.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import ssl
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import Field, dataclass, field, replace
from typing import Any

import yaml

from mqttbridge.broker.passwords import PasswordHash
from mqttbridge.config.settings import (
    Flag,
    Kind,
    Setting,
    flags,
    free_mapping,
    items,
    key_parts,
    keys_of,
    required_text,
    section,
    settings_of,
    text,
    value,
)
from mqttbridge.config.values import (
    _TLS_SCHEMES,
    _check_channel_name,
    _check_client_id,
    _check_shared_group,
    _embedded_access_problem,
    _mask_password,
    _parse_broker_url,
    _parse_layer_url,
    _parse_listen,
    _protocol,
    _qos,
    generate_client_id,
    is_loopback,
)
from mqttbridge.config.yaml_reader import (
    _boolean,
    _Given,
    _Integer,
    _line,
    _NodeReader,
    _optional_boolean,
    _Seconds,
    _Section,
)
from mqttbridge.protocol.topics import compile_pattern, validate_publish_topic

# Channels' own in-memory layer, with its per-call expiry sweep throttled (bridge/layers/memory.py).
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

    With ``subscripts`` the source is a Python mapping, which has no lines: ``str()`` names the
    key as Python would reach it, ``settings.MQTTBRIDGE["routes"][1]["consumer"]: <message>``.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        line: int | None = None,
        key: str = "",
        subscripts: bool = False,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.key = key
        self.subscripts = subscripts
        self.errors: tuple[ConfigError, ...] = (self,)
        parts: tuple[str, ...]
        if subscripts:
            parts = (source + subscripted(key), message)
        else:
            parts = (source if line is None else f"{source}:{line}", key, message)
        super().__init__(": ".join(part for part in parts if part))

    @classmethod
    def combine(cls, errors: Sequence[ConfigError]) -> ConfigError:
        """One error for ``errors``, ordered by line as the file reads."""
        ordered = sorted(errors, key=lambda error: error.line or 0)
        if len(ordered) == 1:
            return ordered[0]
        first = ordered[0]
        combined = cls(
            first.message,
            source=first.source,
            line=first.line,
            key=first.key,
            subscripts=first.subscripts,
        )
        combined.errors = tuple(ordered)
        combined.args = ("\n".join(str(error) for error in ordered),)
        return combined

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only __init__ would break pickling (multiprocessing, pytest-xdist).
        parts = [(e.message, e.source, e.line, e.key, e.subscripts) for e in self.errors]
        return _rebuild_error, (parts,)


def _rebuild_error(parts: list[tuple[str, str, int | None, str, bool]]) -> ConfigError:
    return ConfigError.combine(
        [
            ConfigError(message, source=src, line=line, key=key, subscripts=subscripts)
            for message, src, line, key, subscripts in parts
        ]
    )


def subscripted(key: str) -> str:
    """Key path ``key`` as Python subscripts: ``routes[1].consumer`` is
    ``["routes"][1]["consumer"]`` (the quotes are JSON's, so any key reads back)."""
    return "".join(
        f"[{part}]" if isinstance(part, int) else f"[{json.dumps(part, ensure_ascii=False)}]"
        for part in key_parts(Config, key)
    )


@dataclass(frozen=True)
class TLSConfig:
    """Certificates for ``mqtts://`` and ``wss://`` brokers. The server is verified unless
    ``insecure`` is true; ``ca_file=None`` trusts the system CA store."""

    ca_file: str | None = text(
        None,
        type="path or null",
        doc="PEM file of CA certificates to trust instead of the system store",
    )
    cert_file: str | None = text(
        None,
        type="path or null",
        doc="PEM client certificate, for brokers that authenticate clients by certificate. "
        "May also hold the key",
    )
    key_file: str | None = text(
        None,
        type="path or null",
        doc="PEM private key of `cert_file`, unencrypted. Needs `cert_file`",
    )
    insecure: bool = value(
        False,
        _boolean,
        type="boolean",
        doc="`true` disables certificate and host name verification. For testing only; "
        "logged as a warning",
    )


@dataclass(frozen=True)
class ReconnectConfig:
    """Backoff between reconnection attempts: doubles from ``min_delay`` up to ``max_delay``."""

    min_delay: float = value(
        0.5, _Seconds(0, exclusive=True), doc="Wait before the first reconnection attempt"
    )
    max_delay: float = value(
        30.0,
        _Seconds(0, exclusive=True),
        type="seconds, ≥ `min_delay`",
        doc="The wait doubles after each failure up to this. A running bridge retries a setting "
        "that can never work (a certificate that does not verify, refused credentials) every "
        "`max_delay`",
    )


@dataclass(frozen=True)
class BrokerConfig:
    """Where and how the bridge connects to MQTT.

    ``scheme``, ``host``, ``port`` and ``path`` are derived from ``url`` (from ``listen`` for
    the embedded broker); ``path`` is only set for ``ws://`` and ``wss://`` and keeps any query.
    Construction raises ``ValueError`` for a malformed ``url`` or ``listen``. The loader, not
    this class, fills ``client_id``, picks ``protocol="3.1.1"`` for the embedded broker, checks
    the ``users`` hashes and refuses an embedded broker open to the network.
    """

    url: str = text(
        "embedded",
        check=_parse_broker_url,
        flag=Flag(
            "--broker",
            "URL",
            "override broker.url (mqtt://host:port, mqtts://, ws://, wss:// or embedded)",
        ),
        doc="The broker: `embedded`, `mqtt://host[:1883]`, `mqtts://host[:8883]`, "
        "`ws://host[:80][/path]` or `wss://host[:443][/path]`",
    )
    listen: str = text(
        EMBEDDED_LISTEN,
        check=_parse_listen,
        doc="Embedded broker only: the `host:port` it listens on. Port `0` picks a free port; "
        "IPv6 goes in brackets (`[::1]:1883`). A non-loopback address needs `users` or "
        "`allow_anonymous: true`. Ignored for other URLs",
    )
    allow_anonymous: bool | None = value(
        None,
        _optional_boolean,
        type="boolean or null",
        doc="Embedded broker only: whether devices may connect without a username. `null` "
        "allows them only when `listen` is a loopback address and there are no `users`; "
        "`false` needs `users`. Ignored for other URLs",
    )
    # Username -> password hash ($7$..., bridge.passwords). Left out of hash(): a dict has none.
    users: Mapping[str, str] = free_mapping(
        default_factory=dict,
        repr=False,
        hash=False,
        type="mapping or null",
        default_doc="`null`",
        doc="Embedded broker only: username → password hash, as `mqttbridge passwd <username>` "
        "prints it. See [the embedded broker](#the-embedded-broker). Ignored for other URLs",
    )
    client_id: str | None = text(
        None,
        check=_check_client_id,
        default_doc="generated",
        flag=Flag("--client-id", "ID", "override broker.client_id"),
        doc="The MQTT client id. Left out, it is `mqttbridge-<hostname>-<8 hex digits>`, new on "
        "every start. **Required when `clean_start` is false**",
    )
    username: str | None = text(None, doc="Username sent in CONNECT")
    password: str | None = text(
        None,
        repr=False,
        doc="Password sent in CONNECT. Never appears in `repr()`. With MQTT 3.1.1 it needs a "
        "`username`",
    )
    protocol: str = value(
        "5",
        _protocol,
        type='`"3.1.1"` or `"5"`',
        default_doc='`"5"`; `"3.1.1"` for `embedded`',
        doc="MQTT version. Also accepted: `5`, `5.0`, `311`. The embedded broker (amqtt) "
        "speaks only 3.1.1",
    )
    keepalive: int = value(
        30,
        _Integer(5, 65535),
        doc="Seconds of silence after which client and broker ping each other; a broker drops "
        "a client silent for 1.5 times this",
    )
    clean_start: bool = value(
        True,
        _boolean,
        type="boolean",
        doc="`true` starts a fresh session on each connection; `false` resumes the broker's "
        "session for `client_id`, with its subscriptions and queued QoS 1/2 messages",
    )
    session_expiry: int = value(
        0,
        _Integer(0, _SESSION_EXPIRY_MAX),
        doc="MQTT 5 only: seconds the broker keeps the session after a disconnect. "
        f"`{_SESSION_EXPIRY_MAX}` never expires it",
    )
    shared_group: str | None = text(
        None,
        check=_check_shared_group,
        doc="Subscribe as `$share/<group>/<filter>`, so bridges in the same group split the "
        "messages instead of each getting all of them. No `/`, `+` or `#`",
    )
    tls: TLSConfig = section(TLSConfig, doc="Certificates for `mqtts://` and `wss://`")
    reconnect: ReconnectConfig = section(ReconnectConfig, doc="Backoff between connection attempts")
    outbound_queue: int = value(
        10000,
        _Integer(1),
        doc="Publishes held while the broker is unreachable; past this, a publish raises an "
        "error instead of being dropped silently",
    )
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

    url: str = text(
        "memory://",
        check=_parse_layer_url,
        doc="`memory://` (the bridge's process only) or "
        "`redis://[:password@]host[:port][/db]`, `rediss://...` for Redis over TLS. "
        "Anything else is an error",
    )
    publish_channel: str = text(
        "mqtt.publish",
        check=_check_channel_name,
        type="channel name",
        doc="The channel the bridge listens on for publish requests: 1 to 99 ASCII letters, "
        "digits, `-`, `_`, `.`",
    )
    group_expiry: int = value(
        86400,
        _Integer(1),
        doc="Seconds a Redis group membership lasts (`channels_redis`' `group_expiry`)",
    )
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

    topic: str = required_text(
        check=compile_pattern,
        type="route pattern",
        doc="An MQTT topic filter whose levels may be named: `sensors/{device_id}/temperature` "
        "subscribes to `sensors/+/temperature` and passes `device_id` to the consumer; "
        "`{rest:path}` as the last level matches the rest of the topic (`#`). `+` and `#` work "
        "as in MQTT. Django's `<room>` and a leading `/` are refused with the pattern you "
        "probably meant (`+/a/b` matches topics that really begin with `/`)",
    )
    consumer: str = required_text(
        type="import path",
        doc="The consumer class, as `module:Class` or `module.Class` (`module:Outer.Inner` also "
        "works)",
    )
    qos: int = value(1, _qos, type="0, 1 or 2", doc="QoS of the subscription")
    line: int = 0
    consumer_class: type | None = field(default=None, compare=False, repr=False)
    topic_line: int = field(default=0, compare=False, repr=False)
    consumer_line: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds on memory and time, so one misbehaving device or consumer cannot exhaust them."""

    max_payload_bytes: int = value(
        262144,
        _Integer(1, _PACKET_MAX),
        doc="Larger incoming messages are not delivered: they are logged and recorded on "
        "`dead_letter_topic`",
    )
    max_instances: int = value(
        10000,
        _Integer(1),
        doc="Consumer instances alive at once; past this the least recently used is closed",
    )
    idle_timeout: float = value(
        300.0,
        _Seconds(0, exclusive=True),
        doc="An instance that received nothing for this long is closed",
    )
    queue_size: int = value(1000, _Integer(1), doc="Messages waiting for one instance")
    shutdown_timeout: float = value(
        10.0,
        _Seconds(0),
        doc="On shutdown, how long instances get to finish before they are cancelled",
    )


@dataclass(frozen=True)
class HttpConfig:
    """The application's ``http`` and ``websocket`` scopes, served by uvicorn in the bridge's
    process and event loop (``pip install 'mqttbridge[http]'``). Off unless ``listen`` is set."""

    listen: str | None = text(
        None,
        check=_parse_listen,
        type="host:port or null",
        flag=Flag(
            "--http",
            "HOST:PORT",
            "also serve the --asgi application's HTTP and WebSocket on HOST:PORT (http.listen)",
        ),
        doc="Where to serve the `--asgi` application's `http` and `websocket` scopes, in the "
        "bridge's own process and event loop, so WebSocket consumers and MQTT consumers share "
        "groups on the in-memory layer. IPv6 goes in brackets. `null` serves no HTTP",
    )
    cert_file: str | None = text(
        None,
        type="path or null",
        doc="PEM certificate to serve HTTPS and `wss://` with. May also hold the key",
    )
    key_file: str | None = text(
        None, type="path or null", doc="PEM private key of `cert_file`, unencrypted"
    )
    proxy_headers: bool = value(
        True,
        _boolean,
        type="boolean",
        doc="Take the client address and scheme from `X-Forwarded-For` and "
        "`X-Forwarded-Proto`, when the peer is one of `forwarded_allow_ips`",
    )
    forwarded_allow_ips: str = text(
        "127.0.0.1",
        doc="Comma-separated addresses or networks trusted to send proxy headers; `*` trusts all",
    )


@dataclass(frozen=True)
class Config:
    """The whole configuration. ``source`` names the file it came from; ``warnings`` are
    human-readable problems that do not stop the bridge (the CLI logs them)."""

    broker: BrokerConfig = section(BrokerConfig, doc="How the bridge reaches MQTT")
    channel_layer: ChannelLayerConfig = section(
        ChannelLayerConfig, doc="The Channels layer for publishing from Django code"
    )
    routes: tuple[RouteConfig, ...] = items(RouteConfig, doc="Topic patterns and consumers")
    limits: LimitsConfig = section(LimitsConfig, doc="Bounds on memory and time")
    http: HttpConfig = section(HttpConfig, doc="HTTP and WebSocket in the same process (off)")
    dead_letter_topic: str = text(
        "mqttbridge/dead-letter",
        check=validate_publish_topic,
        type="topic",
        doc="Where the bridge publishes a JSON record of each message it rejects (too large, "
        "not deliverable), whose handler raised, or that the application refused as bad input "
        "(invalid JSON); see [guarantees.md](guarantees.md#the-dead-letter-record). A topic to "
        "publish to: not empty, no `+` or `#`, no U+0000",
    )
    source: str = "<default>"
    warnings: tuple[str, ...] = ()
    # Read from a Python mapping (settings.MQTTBRIDGE), not a file: errors name keys as
    # subscripts, and there are no lines.
    from_mapping: bool = field(default=False, compare=False)

    def error(self, message: str, *, key: str, line: int | None = None) -> ConfigError:
        """An error at ``key``, named as this configuration's source names keys:
        ``config.yaml:5: routes[0].consumer: ...`` or
        ``settings.MQTTBRIDGE["routes"][0]["consumer"]: ...``."""
        return ConfigError(
            message, source=self.source, line=line or None, key=key, subscripts=self.from_mapping
        )

    def name_key(self, key: str, line: int | None = None) -> str:
        """``key`` as a message mentions it: ``routes[0] (line 3)``, or
        ``settings.MQTTBRIDGE["routes"][0]``."""
        if self.from_mapping:
            return self.source + subscripted(key)
        return key if not line else f"{key} (line {line})"


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    import_consumers: bool = True,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """Read and validate the YAML file at ``path``; raise :class:`ConfigError` if it is wrong.

    ``${VAR}`` references are looked up in ``environ`` (default: ``os.environ``). With
    ``import_consumers=False`` routes' consumers are not imported: set Django up first, then
    call :func:`resolve_consumers` (consumer modules often import models). ``overrides`` maps
    key paths that have a command-line option (``"broker.url"``) to the option's value, which
    is read and checked as the file's would be; its errors name the option.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", source=source) from exc
    return parse_config(
        text, source, environ=environ, import_consumers=import_consumers, overrides=overrides
    )


def parse_config(
    text: str,
    source: str = "<string>",
    *,
    environ: Mapping[str, str] | None = None,
    import_consumers: bool = True,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """Validate YAML ``text``; ``source`` is the name errors give for it. Empty means defaults.
    ``overrides`` are as for :func:`load_config`."""
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
    environ = os.environ if environ is None else environ
    reader = _Reader(source, environ, import_consumers, overrides)
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
                error = config.error(
                    str(exc),
                    key=f"routes[{index}].consumer",
                    line=route.consumer_line or route.line,
                )
                error.__cause__ = exc  # what failed inside the import, for whoever explains it
                errors.append(error)
        routes.append(route)
    if errors:
        raise ConfigError.combine(errors)
    return replace(config, routes=tuple(routes))


def default_config(*, overrides: Mapping[str, str] | None = None) -> Config:
    """The configuration an empty file gives: embedded broker, in-memory layer, no routes."""
    return parse_config("", "<default>", overrides=overrides)


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


# --- the reader --------------------------------------------------------------------------------


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
    """Walks the composed node tree with the declarations in hand, turning nodes into
    dataclasses: ``read_settings`` reads the declared keys of a section, and one small method
    per section adds the rules that span its keys.

    A wrong value is recorded and its default stands in, so the whole file is read and every
    mistake reported at once; ``read`` raises them together at the end.
    """

    error_type = ConfigError
    from_mapping = False  # see Config.from_mapping

    def __init__(
        self,
        source: str,
        environ: Mapping[str, str],
        import_consumers: bool = True,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(source, environ)
        # Off when Django must be set up between parsing and importing (resolve_consumers).
        self.import_consumers = import_consumers
        self.warnings: list[str] = []
        for path, given in (overrides or {}).items():
            parent, _, key = path.rpartition(".")
            self.given.setdefault(parent, {})[key] = _Given(given, _flag(path))

    def error(self, node: yaml.Node | None, key: str, message: str) -> ConfigError:
        if isinstance(node, _Given):
            return ConfigError(message, source="command line", key=node.where)
        return ConfigError(message, source=self.source, line=_line(node), key=key)

    def section(self, parent: _Section, key: str, cls: type) -> _Section:
        return parent.child(key, keys_of(cls))

    def read_settings(self, s: _Section, cls: type) -> dict[str, Any]:
        """The value of each declared key of ``cls`` that is a single value, its default where
        the key is missing or wrong (``s.failed`` says which)."""
        values = {}
        for declared_field, declared in settings_of(cls):
            if declared.kind in (Kind.VALUE, Kind.TEXT):
                values[declared_field.name] = self.read_setting(s, declared_field, declared)
        return values

    def read_setting(self, s: _Section, declared_field: Field[Any], declared: Setting) -> Any:
        name = declared_field.name
        if declared.convert is not None:
            return s.get(name, declared_field.default, declared.convert)
        if declared.required:
            written = s.required_text(name)
        elif declared_field.default is None:
            written = s.optional_text(name)
        else:
            assert isinstance(declared_field.default, str)  # text() allows only these
            written = s.text(name, declared_field.default)
        if written is not None and declared.check is not None:
            s.validate(name, declared.check, written)
        return written

    # --- sections ------------------------------------------------------------------------------

    def read(self, root: yaml.Node | None) -> Config:
        top = _Section(self, root, "", keys_of(Config))
        broker = self.read_broker(self.section(top, "broker", BrokerConfig))
        layer = self.read_channel_layer(self.section(top, "channel_layer", ChannelLayerConfig))
        routes = self.read_routes(top.nodes.get("routes"))
        limits_section = self.section(top, "limits", LimitsConfig)
        limits = LimitsConfig(**self.read_settings(limits_section, LimitsConfig))
        http = self.read_http(self.section(top, "http", HttpConfig))
        values = self.read_settings(top, Config)
        if self.errors:
            raise ConfigError.combine([e for e in self.errors if isinstance(e, ConfigError)])
        return Config(
            broker=broker,
            channel_layer=layer,
            routes=routes,
            limits=limits,
            http=http,
            source=self.source,
            warnings=tuple(self.warnings),
            from_mapping=self.from_mapping,
            **values,
        )

    def read_broker(self, s: _Section) -> BrokerConfig:
        values = self.read_settings(s, BrokerConfig)
        if "url" in s.failed:
            values["url"] = "embedded"  # stands in, so that the rest of the section is still read
        if "listen" in s.failed:
            values["listen"] = EMBEDDED_LISTEN  # stands in, as url's does
        # amqtt, the embedded broker, speaks MQTT 3.1.1 only.
        embedded = values["url"] == "embedded"
        if embedded and (not s.given("protocol") or "protocol" in s.failed):
            values["protocol"] = "3.1.1"
        values["users"] = self.read_users(s.child("users", _ANY_KEY))
        self.check_broker_url(values["url"])
        if embedded:
            self.check_embedded(s, values)
        self.check_session(s, values)
        self.check_credentials(s, values)
        # With a wrong url, which TLS keys fit is unknown: read them without judging.
        scheme, host, _, _ = _parse_broker_url(values["url"])
        known_scheme = None if "url" in s.failed else scheme
        tls = self.read_tls(self.section(s, "tls", TLSConfig), known_scheme, host)
        reconnect = self.read_reconnect(self.section(s, "reconnect", ReconnectConfig))
        return BrokerConfig(tls=tls, reconnect=reconnect, **values)

    def check_broker_url(self, url: str) -> None:
        scheme, _, port, _ = _parse_broker_url(url)
        expected = _WELL_KNOWN_SCHEMES.get(port)
        if expected is not None and scheme in ("mqtt", "mqtts") and scheme != expected:
            # Caught at run time too (mqttbridge.mqtt.connect_errors), but `check` says it first.
            self.warnings.append(
                f"broker.url: port {port} is the port for {expected}://, not {scheme}://; "
                f"use {expected}:// unless the broker is set up otherwise"
            )

    def check_embedded(self, s: _Section, values: dict[str, Any]) -> None:
        # allow_anonymous and users are ignored unless embedded, not refused: one file often
        # switches between the embedded broker and a remote one through ${MQTTBRIDGE_BROKER}.
        host, port = _parse_listen(values["listen"])
        problem = _embedded_access_problem(
            host, port, values["allow_anonymous"], bool(values["users"])
        )
        if problem is not None:
            key, message = problem
            s.reject(
                key.removeprefix("broker."),
                message,
                involving=("url", "listen", "allow_anonymous", "users"),
            )
        if values["protocol"] != "3.1.1":
            s.reject(
                "protocol",
                "the embedded broker speaks MQTT 3.1.1 only; use '3.1.1'",
                involving=("url",),
            )

    def check_session(self, s: _Section, values: dict[str, Any]) -> None:
        protocol = values["protocol"]
        if values["session_expiry"] and protocol != "5":
            s.reject(
                "session_expiry",
                "only MQTT 5 has a session expiry; set protocol: '5'",
                involving=("protocol", "url"),
            )
        if values["client_id"] is None:
            if values["clean_start"]:
                values["client_id"] = generate_client_id()
            else:
                s.reject(
                    "clean_start",
                    "false needs a broker.client_id: the broker keeps the session under that "
                    "id, and a generated one would differ on every start",
                    involving=("client_id",),
                )
        if not values["clean_start"] and protocol == "5" and values["session_expiry"] == 0:
            self.warnings.append(
                "broker.clean_start is false but broker.session_expiry is 0: with MQTT 5 the "
                "broker drops the session when the connection closes; set session_expiry"
            )

    def check_credentials(self, s: _Section, values: dict[str, Any]) -> None:
        username, password = values["username"], values["password"]
        if password is not None and username is None and values["protocol"] == "3.1.1":
            s.reject(
                "password",
                "MQTT 3.1.1 sends a password only with a broker.username",
                involving=("username", "protocol", "url"),
            )
        scheme, host, _, _ = _parse_broker_url(values["url"])
        credentials = username is not None or password is not None
        if credentials and scheme in ("mqtt", "ws") and not is_loopback(host):
            what = "password" if password is not None else "username"
            secure = "mqtts" if scheme == "mqtt" else "wss"
            self.warnings.append(f"{what} sent in clear text to {host}; use {secure}://")

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
        tls = TLSConfig(**self.read_settings(s, TLSConfig))
        if scheme is None:
            return tls
        if scheme not in _TLS_SCHEMES:
            # Null values are fine: one file can serve mqtt:// and mqtts:// through ${VARS}.
            for key in keys_of(TLSConfig):
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
        self.load_tls_files(s, tls)
        if tls.insecure:
            self.warnings.append(
                f"TLS certificate verification is disabled for {host} (broker.tls.insecure)"
            )
        return tls

    def load_tls_files(self, s: _Section, tls: TLSConfig) -> None:
        # Loaded now, so that unreadable certificates or a key that does not match its
        # certificate are reported with their line instead of at the first connection attempt.
        try:
            context = ssl.create_default_context(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            s.reject("ca_file", f"cannot load CA certificates: {_ssl_reason(exc)}")
            return
        if tls.cert_file is not None:
            try:
                context.load_cert_chain(tls.cert_file, tls.key_file, _no_key_password)
            except (OSError, ssl.SSLError) as exc:
                reason = _ssl_reason(exc)
                if tls.key_file is not None and "key" in reason:
                    s.reject("key_file", f"cannot use this key: {reason}")
                else:
                    s.reject("cert_file", f"cannot load certificate: {reason}")

    def read_reconnect(self, s: _Section) -> ReconnectConfig:
        reconnect = ReconnectConfig(**self.read_settings(s, ReconnectConfig))
        if reconnect.max_delay < reconnect.min_delay:
            if s.given("max_delay"):
                s.reject(
                    "max_delay",
                    f"must be at least min_delay ({reconnect.min_delay:g})",
                    involving=("min_delay",),
                )
            else:
                s.reject("min_delay", f"must be at most max_delay ({reconnect.max_delay:g})")
        return reconnect

    def read_http(self, s: _Section) -> HttpConfig:
        http = HttpConfig(**self.read_settings(s, HttpConfig))
        if http.key_file is not None and http.cert_file is None:
            s.reject("key_file", "needs http.cert_file", involving=("cert_file",))
        for key in ("cert_file", "key_file"):
            path = getattr(http, key)
            if path is not None and not os.path.isfile(path):
                s.reject(key, f"file not found: {path!r}")
        if http.cert_file is not None and not s.failed:
            # Loaded now, as the broker's are: `check` reports what uvicorn would fail on.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(http.cert_file, http.key_file, _no_key_password)
            except (OSError, ssl.SSLError) as exc:
                s.reject("cert_file", f"cannot load certificate: {_ssl_reason(exc)}")
        return http

    def read_channel_layer(self, s: _Section) -> ChannelLayerConfig:
        values = self.read_settings(s, ChannelLayerConfig)
        return ChannelLayerConfig(url_given=s.given("url"), **values)

    def read_routes(self, node: yaml.Node | None) -> tuple[RouteConfig, ...]:
        routes = []
        no_items: list[yaml.Node] = []
        items = self.recover(lambda: self.sequence(node, "routes"), no_items)
        for index, item in enumerate(items):
            s = _Section(self, item, f"routes[{index}]", keys_of(RouteConfig))
            values = self.read_settings(s, RouteConfig)
            consumer_class = None
            if values["consumer"] is not None and self.import_consumers:
                consumer_class = s.validate("consumer", _consumer_class, values["consumer"])
            routes.append(
                RouteConfig(
                    values["topic"] or "",
                    values["consumer"] or "",
                    values["qos"],
                    _line(item) or 0,
                    consumer_class=consumer_class,
                    topic_line=_line(s.nodes.get("topic")) or 0,
                    consumer_line=_line(s.nodes.get("consumer")) or 0,
                )
            )
        return tuple(routes)


def _flag(path: str) -> str:
    for key, flag in flags(Config):
        if key == path:
            return flag.name
    raise ValueError(f"no command-line option overrides {path!r}")


def _ssl_reason(exc: OSError) -> str:
    # "[X509: KEY_VALUES_MISMATCH] key values mismatch (_ssl.c:3926)" -> "key values mismatch"
    text = exc.strerror or str(exc)
    if isinstance(exc, ssl.SSLError) and len(exc.args) == 1:
        text = str(exc.args[0])  # raised by _no_key_password
    text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", text)
    return "not a PEM file" if text == "PEM lib" else text
