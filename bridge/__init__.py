"""mqttbridge: the MQTT protocol server for Django Channels."""

from .publish import PublishError, apublish, configure, publish

__all__ = ["PublishError", "apublish", "configure", "publish"]
__version__ = "0.1.0"
