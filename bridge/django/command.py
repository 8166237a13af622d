"""``manage.py mqttbridge run|check|routes``: the ``mqttbridge`` command with Django's settings as
its configuration. ``settings.MQTTBRIDGE`` replaces config.yaml (same keys, same rules, errors
naming the setting), ``settings.ASGI_APPLICATION`` replaces ``--asgi``, and the project's
``CHANNEL_LAYERS`` are used as under ``mqttbridge run --asgi``. Django is already set up by
``manage.py``, so consumers may import models.
"""

from __future__ import annotations

import argparse
from typing import Any

from mqttbridge.cli.main import CommandLineInterface, overrides
from mqttbridge.config.mapping import parse_settings
from mqttbridge.config.schema import Config, ConfigError

__all__ = ["DjangoCommandLine", "asgi_import_path"]

SETTING = "settings.MQTTBRIDGE"


class DjangoCommandLine(CommandLineInterface):
    ASGI_HINT = 'set ASGI_APPLICATION = "<project>.asgi.application" in the settings'
    NO_APPLICATION = "settings.ASGI_APPLICATION is not set"

    @classmethod
    def add_source_args(
        cls, parser: argparse.ArgumentParser, *, asgi_help: str, overrides: bool = False
    ) -> None:
        # The settings are the source: no --config, no --asgi.
        if overrides:
            cls.add_override_args(parser)

    def asgi_path(self, args: argparse.Namespace) -> tuple[str | None, str]:
        from django.conf import settings

        where = "settings.ASGI_APPLICATION"
        return asgi_import_path(getattr(settings, "ASGI_APPLICATION", None), where), where

    def read_config(self, args: argparse.Namespace) -> Config:
        from django.conf import settings

        mapping: Any = getattr(settings, "MQTTBRIDGE", None)
        source = SETTING if mapping is not None else f"{SETTING} (not set)"
        return parse_settings(mapping, source, import_consumers=False, overrides=overrides(args))


def asgi_import_path(value: Any, where: str) -> str | None:
    """Channels' ``ASGI_APPLICATION`` (``"proj.asgi.application"``) as ``module:app``."""
    if value is None:
        return None
    if not isinstance(value, str) or "." not in value.strip(".") or ":" in value:
        raise ConfigError(
            f'expected a dotted path such as "myproject.asgi.application", got {value!r}',
            source=where,
        )
    module, _, name = value.rpartition(".")
    return f"{module}:{name}"
