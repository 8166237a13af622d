"""Redis socket timeouts that outlast channels_redis' blocking reads.

channels_redis waits for a message with BZPOPMIN, which Redis answers after ``brpop_timeout``
(5 s) when nothing came. redis-py 8 gives every reply a 5 s socket timeout by default (it was
unlimited before), so an idle layer's read timed out just before Redis answered: a
``TimeoutError`` and a reconnect every 5 s for each reader, and a bridge intake backing off
while requests waited (issue 6; redis/redis-py#4091, django/channels_redis#422).

A channels_redis layer's hosts are therefore given a socket timeout of ``brpop_timeout`` plus
redis-py's own 5 s allowance for a reply, unless they set a longer one (or ``None``, no timeout)
themselves. A timeout is kept rather than dropped so that a Redis gone silent (a dead peer, a
network partition) is still noticed. The bridge's layer does this when it is created; a stock
``channels_redis.core.RedisChannelLayer`` named in a Django project's ``CHANNEL_LAYERS`` is
corrected when the bridge starts and by ``mqttbridge.apublish``, before either opens a connection.

``channels_redis.pubsub.RedisPubSubChannelLayer`` is left alone: it polls with a 0.1 s read
timeout of its own, which the socket timeout does not cut.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["REPLY_ALLOWANCE", "fit_blocking_reads", "fit_channel_layers", "fitted_host"]

logger = logging.getLogger(__name__)

#: Seconds a reply may take beyond the server's own blocking wait: redis-py 8's default socket
#: timeout, which it considers enough for any reply.
REPLY_ALLOWANCE = 5.0

_fitted: weakref.WeakSet[Any] = weakref.WeakSet()
_UNSET: Any = object()


def fit_channel_layers() -> None:
    """:func:`fit_blocking_reads` for every layer in ``CHANNEL_LAYERS``: the intake reads the
    default one, a consumer whichever its ``channel_layer_alias`` names."""
    from channels.layers import channel_layers

    for alias in channel_layers.configs:
        try:
            layer = channel_layers[alias]
        except Exception:
            continue  # a broken entry fails where it is used, as before; nothing to fit here
        fit_blocking_reads(layer)


def fit_blocking_reads(layer: Any) -> None:
    """Give a channels_redis layer's hosts a socket timeout longer than its blocking reads.

    Anything else (the in-memory layer, the pub/sub layer, ``None``) is left as it is. Only
    connection pools created afterwards see the change, so call this before the layer is used.
    """
    core = sys.modules.get("channels_redis.core")
    if core is None or not isinstance(layer, core.RedisChannelLayer) or layer in _fitted:
        return
    layer.hosts = [fitted_host(host, layer.brpop_timeout) for host in layer.hosts]
    _fitted.add(layer)


def fitted_host(host: dict[str, Any], blocking_timeout: float) -> dict[str, Any]:
    """``host`` (a channels_redis host entry) with a socket timeout that outlasts a blocking
    read of ``blocking_timeout`` seconds; a copy, the entry itself is not changed."""
    configured = _configured_socket_timeout(host)
    fitted = dict(host)
    if configured is not _UNSET and (configured is None or _exceeds(configured, blocking_timeout)):
        return fitted  # no timeout at all, or one that already outlasts the blocking read
    needed = blocking_timeout + REPLY_ALLOWANCE
    if configured is not _UNSET:
        logger.warning(
            "channel layer host %s: socket_timeout=%s would cut every %s s blocking read "
            "(BZPOPMIN) of an idle layer; using %s s. Set it above %s or remove it.",
            _describe(host),
            configured,
            blocking_timeout,
            needed,
            blocking_timeout,
        )
    address = fitted.get("address")
    if isinstance(address, str):
        fitted["address"] = _without_query_option(address, "socket_timeout")
    fitted["socket_timeout"] = needed
    return fitted


def _configured_socket_timeout(host: dict[str, Any]) -> Any:
    address = host.get("address")
    if isinstance(address, str):
        # redis-py lets an option in the URL's query win over the keyword argument.
        for name, value in parse_qsl(urlsplit(address).query):
            if name == "socket_timeout":
                return value
    return host.get("socket_timeout", _UNSET)


def _exceeds(value: Any, limit: float) -> bool:
    try:
        return float(value) > limit
    except (TypeError, ValueError):
        return True  # not a number: leave it for redis-py to report


def _without_query_option(url: str, option: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(name, value) for name, value in query if name != option]
    if len(kept) == len(query):
        return url
    return urlunsplit(parts._replace(query=urlencode(kept)))


def _describe(host: dict[str, Any]) -> str:
    """Where a host entry points, without its password (which may be in the URL or query)."""
    address = host.get("address")
    if isinstance(address, str):
        parts = urlsplit(address)
        where = parts.netloc.rpartition("@")[2] or parts.path
        return f"{parts.scheme}://{where}"
    if "master_name" in host:
        return f"sentinel master {host['master_name']!r}"
    return f"{host.get('host', 'localhost')}:{host.get('port', 6379)}"
