"""mqttbridge: the MQTT protocol server for Django Channels."""

from mqttbridge.publish import (
    PublishError,
    apublish,
    apublish_json,
    configure,
    publish,
    publish_json,
)

__all__ = ["PublishError", "apublish", "apublish_json", "configure", "publish", "publish_json"]
__version__ = "0.1.0"
