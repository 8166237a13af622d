"""The configuration file: YAML read into frozen dataclasses (``schema``), with every error naming
file, line and key. ``yaml_reader`` walks YAML nodes; ``values`` checks single values (URLs,
client ids, QoS)."""

from mqttbridge.config.schema import (
    BrokerConfig,
    ChannelLayerConfig,
    Config,
    ConfigError,
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
