"""``python manage.py mqttbridge run|check|routes`` (docs/django.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from mqttbridge.django.command import DjangoCommandLine


class Command(BaseCommand):
    help = (
        "The MQTT bridge, configured by settings.MQTTBRIDGE, ASGI_APPLICATION and "
        "CHANNEL_LAYERS: run it, check the configuration, or print the routing table."
    )

    def add_arguments(self, parser: Any) -> None:
        commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        DjangoCommandLine.add_commands(commands)

    def handle(self, *args: Any, **options: Any) -> None:
        cli = DjangoCommandLine(
            stdout=cast(TextIO, _Text(self.stdout)), stderr=cast(TextIO, _Text(self.stderr))
        )
        status = cli.execute(argparse.Namespace(**options))
        if status == 0:
            return
        # The CLI printed one line per error; Django would prefix its own "CommandError: ".
        if self._called_from_command_line:
            sys.exit(status)
        raise CommandError(f"mqttbridge {options['command']} failed", returncode=status)


class _Text:
    """A text stream over Django's ``OutputWrapper``, which would end every ``write`` with a
    newline (``print`` writes the text and the newline separately)."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> int:
        self.wrapper.write(text, ending="")
        return len(text)

    def flush(self) -> None:
        self.wrapper.flush()

    def isatty(self) -> bool:
        return self.wrapper.isatty()
