from django.apps import AppConfig


class MqttBridgeConfig(AppConfig):
    name = "mqttbridge.django"
    # "django" would clash with django.contrib's own labels' namespace in messages and
    # migrations; the project's name is what users read in `manage.py help`.
    label = "mqttbridge"
    verbose_name = "MQTT bridge"
