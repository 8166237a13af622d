"""The ``mqttbridge`` command: ``main`` parses the command line and runs ``run``, ``check``,
``routes`` or ``passwd``; ``logs`` sets up text or JSON logging; ``checks`` refuses at start what
would fail for every message."""

from mqttbridge.cli.main import CommandLineInterface, main

__all__ = ["CommandLineInterface", "main"]
