"""The configuration file: YAML read into frozen dataclasses (``schema``), with every error naming
file, line and key. Each key is declared once (``settings``); ``docs`` writes docs/config.md's
key tables from the declarations. ``yaml_reader`` walks YAML nodes; ``values`` checks single
values (URLs, client ids, QoS); ``mapping`` reads a Python mapping (Django's
``settings.MQTTBRIDGE``) with the file's rules."""

from mqttbridge.config.mapping import parse_settings
from mqttbridge.config.schema import (
    BrokerConfig,
    ChannelLayerConfig,
    Config,
    ConfigError,
    HttpConfig,
    LimitsConfig,
    ReconnectConfig,
    RouteConfig,
    TLSConfig,
    default_config,
    import_string,
    load_config,
    parse_config,
    resolve_consumers,
)

__all__ = [
    "BrokerConfig",
    "ChannelLayerConfig",
    "Config",
    "ConfigError",
    "HttpConfig",
    "LimitsConfig",
    "ReconnectConfig",
    "RouteConfig",
    "TLSConfig",
    "default_config",
    "import_string",
    "load_config",
    "parse_config",
    "parse_settings",
    "resolve_consumers",
]
