"""Socket timeouts of channels_redis layers outlast their blocking reads (layers/redis_timeouts.py).

The idle behaviour itself, against a real Redis, is in tests/layers/test_layer_idle.py; these check
which socket timeout each kind of host entry ends up with, as redis-py's pool will use it.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from mqttbridge.layers.redis import RedisChannelLayer
from mqttbridge.layers.redis_timeouts import fit_blocking_reads

URL = "redis://127.0.0.1:6399/0"
NEEDED = StockRedisChannelLayer.brpop_timeout + 5.0  # the blocking wait + redis-py's 5 s default


def pool_socket_timeout(layer: Any) -> Any:
    """The socket timeout redis-py's pool gives the layer's connections (none is opened)."""
    return layer.connection(0).connection_pool.connection_kwargs["socket_timeout"]


async def test_the_bridge_layer_reads_longer_than_it_blocks():
    assert pool_socket_timeout(RedisChannelLayer(hosts=[URL])) == NEEDED


async def test_a_stock_layer_is_fitted_once_the_bridge_has_seen_it():
    layer = StockRedisChannelLayer(hosts=[URL])
    fit_blocking_reads(layer)
    assert pool_socket_timeout(layer) == NEEDED


@pytest.mark.parametrize(
    "host",
    [
        {"address": "redis://:s3cret@127.0.0.1:6399/0?socket_timeout=5"},
        {"address": "redis://127.0.0.1:6399/0?password=s3cret&socket_timeout=2"},
        {"address": URL, "socket_timeout": 5},
        {"host": "127.0.0.1", "port": 6399, "socket_timeout": 4.5},
    ],
    ids=["in-url", "in-url-with-password-option", "address-keyword", "host-port"],
)
async def test_a_socket_timeout_that_would_cut_blocking_reads_is_raised_with_one_warning(
    host, caplog
):
    caplog.set_level(logging.WARNING, logger="mqttbridge.layers.redis_timeouts")
    layer = StockRedisChannelLayer(hosts=[host])
    fit_blocking_reads(layer)
    fit_blocking_reads(layer)  # the bridge and apublish may both see the same layer
    assert pool_socket_timeout(layer) == NEEDED
    [record] = caplog.records
    message = record.getMessage()
    assert "127.0.0.1:6399" in message
    assert "would cut every 5 s blocking read" in message
    assert "Set it above 5 or remove it" in message
    assert "s3cret" not in message


@pytest.mark.parametrize("configured", [None, 30.0], ids=["no-timeout", "longer"])
async def test_a_socket_timeout_that_outlasts_blocking_reads_is_kept(configured, caplog):
    layer = RedisChannelLayer(hosts=[{"address": URL, "socket_timeout": configured}])
    assert pool_socket_timeout(layer) == configured
    assert caplog.records == []


async def test_the_settings_entry_itself_is_not_changed():
    host = {"address": URL}
    RedisChannelLayer(hosts=[host])
    assert host == {"address": URL}


def test_other_layers_are_left_alone():
    memory = InMemoryChannelLayer()
    pubsub = RedisPubSubChannelLayer(hosts=[URL])
    fit_blocking_reads(memory)
    fit_blocking_reads(pubsub)
    fit_blocking_reads(None)
    assert pubsub._kwargs == {"hosts": [URL]}


def test_every_alias_is_fitted_and_a_broken_one_is_left_to_fail_where_it_is_used():
    from channels.layers import channel_layers
    from django.test import override_settings

    from mqttbridge.layers.redis_timeouts import fit_channel_layers

    stock = {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [URL]}}
    broken = {"BACKEND": "no.such.Layer"}
    with override_settings(CHANNEL_LAYERS={"default": stock, "devices": stock, "bad": broken}):
        fit_channel_layers()
        for alias in ("default", "devices"):
            assert channel_layers[alias].hosts == [{"address": URL, "socket_timeout": NEEDED}]
