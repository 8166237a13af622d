"""Minimal Django settings for processes that are not Django projects.

Channels' layers and consumers read ``django.conf.settings``. A gateway or a script that only
bridges MQTT should not need a settings module, so the bridge configures the least Django needs:
the channel layer from config.yaml and no database. Inside a Django project (settings already
configured, or ``DJANGO_SETTINGS_MODULE`` set) the project's settings win.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ensure_django"]


def ensure_django(channel_layers: dict[str, Any] | None = None) -> bool:
    """Configure Django if nobody has; return True if this call configured it."""
    import django
    from django.conf import settings

    if settings.configured:
        return False
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        django.setup()
        return False
    settings.configure(
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS=channel_layers or {},
        DATABASES={},
        USE_TZ=True,
        # Leave logging to the bridge's own configuration.
        LOGGING_CONFIG=None,
    )
    django.setup()
    return True
