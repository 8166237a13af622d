"""Parsers and checks for single values of the configuration, free of YAML.

Each raises ``ValueError`` with the message the user reads; the reader in ``mqttbridge.config`` adds
the file, line and key path. ``BrokerConfig`` and ``ChannelLayerConfig`` use the URL parsers too.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from mqttbridge.config.yaml_reader import _render
from mqttbridge.protocol.events import is_qos

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}
_TLS_SCHEMES = ("mqtts", "wss")
# channels.layers.BaseChannelLayer.channel_name_regex, minus the "!" of process-local names,
# which only a receiving layer may hand out.
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9._-]{1,99}")
_SCHEME_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")


def _parse_broker_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` of a broker URL, or ``ValueError`` saying what is wrong."""
    if url == "embedded":
        return "embedded", "", 0, ""
    parts = urlsplit(url)
    shown = _mask_password(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        raise ValueError(
            f"expected 'embedded' or an mqtt://, mqtts://, ws:// or wss:// URL, got {shown!r}"
        )
    if "@" in parts.netloc:
        raise ValueError("credentials do not belong in the URL; use broker.username and password")
    if not parts.hostname:
        raise ValueError(f"no host in {shown!r}")
    if not _valid_host(parts.hostname):
        raise ValueError(f"invalid host {parts.hostname!r} in {shown!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in {shown!r}; expected a number from 1 to 65535") from None
    if port == 0:
        raise ValueError(f"invalid port in {shown!r}; expected a number from 1 to 65535")
    if parts.fragment:
        raise ValueError(f"unexpected '#' fragment in {shown!r}")
    if parts.scheme in ("ws", "wss"):
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    elif parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{parts.scheme}:// URLs take no path, got {shown!r}")
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
    """``url`` with the password of its ``user:password@`` replaced by ``***``.

    Errors echo what was typed, so this must hold for malformed URLs too (``mqtt//u:pw@h``,
    a password containing '/', '?', '#' or '@'), where ``urlsplit`` finds no password: the
    password is taken to run from the first ':' after any ``scheme://`` to the last '@'.
    """
    at = url.rfind("@")
    if at == -1:
        return url
    scheme = _SCHEME_PREFIX.match(url)
    colon = url.find(":", scheme.end() if scheme else 0, at)
    if colon == -1:
        return url  # a user name alone is no secret
    return f"{url[:colon]}:***{url[at:]}"


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _HOSTNAME.fullmatch(host) is not None
    return True


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost`` or a loopback address. Host names are
    not resolved: a security decision must not hang on DNS."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_MAKE_USER = "`mqttbridge passwd <username>` makes an entry"


def _embedded_access_problem(
    host: str, port: int, allow_anonymous: bool | None, has_users: bool
) -> tuple[str, str] | None:
    """``(key, message)`` if the embedded broker would be open to the network or closed to all.

    ``mqttbridge.config`` reports it at ``key``'s line, ``EmbeddedBroker`` refuses to start with it:
    one verdict for ``check`` and ``run``.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if allow_anonymous is None and not has_users and not is_loopback(host):
        loopback = f"[::1]:{port}" if ":" in host else f"127.0.0.1:{port}"
        return "broker.listen", (
            f"{where} is not a loopback address, and without broker.users the embedded broker "
            f"would accept anonymous clients from the network; add broker.users ({_MAKE_USER}), "
            f"listen on {loopback}, or set broker.allow_anonymous: true if that is intended"
        )
    if allow_anonymous is False and not has_users:
        return "broker.allow_anonymous", (
            f"false without broker.users admits no device; add broker.users ({_MAKE_USER}) "
            "or leave allow_anonymous out"
        )
    return None


def _embedded_allows_anonymous(host: str, allow_anonymous: bool | None, has_users: bool) -> bool:
    """Whether clients without a username get in: by default only on loopback without users."""
    if allow_anonymous is None:
        return not has_users and is_loopback(host)
    return allow_anonymous


def generate_client_id() -> str:
    """``mqttbridge-<hostname>-<8 hex digits>``: readable in broker logs, new on every call."""
    # Some brokers limit client ids to [0-9A-Za-z-]; keep the host part within that.
    hostname = socket.gethostname().split(".")[0]
    hostname = re.sub(r"[^0-9A-Za-z-]", "-", hostname)[:32] or "host"
    return f"mqttbridge-{hostname}-{secrets.token_hex(4)}"


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


def _protocol(value: Any) -> str:
    # 311 and 5.0 are what people type for "3.1.1" and "5"; YAML makes them numbers.
    if not isinstance(value, bool):
        normal = {"5": "5", "5.0": "5", "3.1.1": "3.1.1", "311": "3.1.1"}.get(str(value))
        if normal is not None:
            return normal
    raise ValueError(f"expected '3.1.1' or '5', got {_render(value)}")


def _qos(value: Any) -> int:
    if not is_qos(value):
        raise ValueError(f"expected 0, 1 or 2, got {_render(value)}")
    return int(value)
