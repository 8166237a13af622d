from django.apps import AppConfig


class MqttBridgeConfig(AppConfig):
    name = "mqttbridge.django"
    # "django" would clash with django.contrib's own labels' namespace in messages and
    # migrations; the project's name is what users read in `manage.py help`.
    label = "mqttbridge"
    verbose_name = "MQTT bridge"

    def ready(self) -> None:
        # mqttbridge.publish() in the project's views and tasks then uses the publish channel
        # and payload limit of settings.MQTTBRIDGE, as the bridge reading them does.
        from django.conf import settings

        from mqttbridge.config import ConfigError, parse_settings
        from mqttbridge.publish import use_config

        if getattr(settings, "MQTTBRIDGE", None) is None:
            return
        try:
            config = parse_settings(settings.MQTTBRIDGE, import_consumers=False)
        except ConfigError:
            return  # not every command should fail for it: `manage.py mqttbridge check` says why
        use_config(config)
