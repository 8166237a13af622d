"""Django settings for the bridge: the project's when there is one, minimal ones otherwise.

Channels' layers and consumers read ``django.conf.settings``. A gateway or a script that only
bridges MQTT should not need a settings module, so when nothing configured Django the bridge
configures the least it needs: the channel layer from config.yaml and no database. Inside a
Django project (settings configured, or ``DJANGO_SETTINGS_MODULE`` set, often by the project's
``asgi.py``) the project's settings win, its ``CHANNEL_LAYERS`` included.
"""

from __future__ import annotations

import os
from typing import Any

from mqttbridge.config.schema import ChannelLayerConfig, ConfigError
from mqttbridge.config.values import _mask_password

__all__ = [
    "MEMORY_LAYERS",
    "channel_layer_in_use",
    "ensure_django",
    "needs_project_settings",
    "project_settings_in_charge",
]

MEMORY_LAYERS = {"default": {"BACKEND": "mqttbridge.layers.memory.InMemoryChannelLayer"}}

_state = {"minimal": False}


def ensure_django(channel_layers: dict[str, Any] | None = None) -> bool:
    """Set Django up if nobody has; return True if this call configured minimal settings.

    Raises :class:`ConfigError` naming ``DJANGO_SETTINGS_MODULE`` when that module cannot be
    set up (most often: not run from the project's directory).
    """
    import django
    from django.apps import apps
    from django.conf import settings

    if settings.configured:
        if not apps.ready and not apps.loading:
            django.setup()  # settings.configure() was called but not django.setup()
        return False
    module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if module:
        _setup_project(module)
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
    _state["minimal"] = True
    return True


def _setup_project(module: str) -> None:
    import django

    try:
        django.setup()
    except Exception as exc:  # a project's settings and apps may fail any way at import
        reason = str(exc) if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"
        raise ConfigError(
            f"cannot import {module!r}: {reason}; run mqttbridge from the directory that "
            "holds the project (where manage.py is), or fix DJANGO_SETTINGS_MODULE",
            source="DJANGO_SETTINGS_MODULE",
        ) from exc


def project_settings_in_charge() -> bool:
    """Whether Django runs on a project's settings rather than the bridge's minimal ones."""
    from django.conf import settings

    return bool(settings.configured) and not _state["minimal"]


def needs_project_settings(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is Django saying that no project is set up: a model
    imported under the bridge's minimal settings, or settings read before any were made."""
    from django.core.exceptions import AppRegistryNotReady, ImproperlyConfigured

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AppRegistryNotReady | ImproperlyConfigured):
            return True
        if isinstance(seen, RuntimeError) and "INSTALLED_APPS" in str(seen):
            return True  # "Model class ... isn't in an application in INSTALLED_APPS"
        seen = seen.__cause__ or seen.__context__
    return False


def channel_layer_in_use(layer: ChannelLayerConfig) -> tuple[str, str | None]:
    """The channel layer the bridge uses, for logs and ``check``; and a warning when the
    project's settings override a ``channel_layer.url`` the config file gave."""
    if not project_settings_in_charge():
        return layer.display_url, None
    from django.conf import settings

    entry = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default")
    if entry is None:
        used, url = "none (the Django settings have no CHANNEL_LAYERS['default'])", None
        what = "is not set: publishing from Django code is off"
    else:
        url = _settings_layer_url(entry)
        parts = [_mask_password(url)] if url else []
        parts.append(str(entry.get("BACKEND", "?")))
        used = f"{parts[0]} ({', '.join([*parts[1:], 'from Django settings'])})"
        what = f"is used ({', '.join(parts)})"
    warning = None
    if layer.url_given and url != layer.url:
        warning = (
            f"channel_layer.url {layer.display_url} is ignored: the Django settings' "
            f"CHANNEL_LAYERS['default'] {what}"
        )
    return used, warning


def _settings_layer_url(entry: dict[str, Any]) -> str | None:
    """The URL form of a CHANNEL_LAYERS entry, comparable with ``channel_layer.url``."""
    backend = str(entry.get("BACKEND", ""))
    if "InMemory" in backend:
        return "memory://"
    hosts = (entry.get("CONFIG") or {}).get("hosts") or []
    if not hosts:
        return None
    first = hosts[0]
    if isinstance(first, dict):
        first = first.get("address")
    if isinstance(first, str):
        return first
    if isinstance(first, list | tuple) and len(first) == 2:
        return f"redis://{first[0]}:{first[1]}"
    return None
