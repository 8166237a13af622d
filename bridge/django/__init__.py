"""Django integration: add ``"mqttbridge.django"`` to ``INSTALLED_APPS`` for
``python manage.py mqttbridge run|check|routes``, configured by ``settings.MQTTBRIDGE``
(docs/django.md)."""
