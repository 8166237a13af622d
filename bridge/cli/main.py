"""The ``mqttbridge`` command (also ``python -m mqttbridge``).

    mqttbridge run [--config F] [--asgi module:app] [--http HOST:PORT] [--broker URL]
                   [--client-id ID] [--demo]
    mqttbridge check [--config F] [--asgi module:app] [--http HOST:PORT] [--broker URL]
                     [--client-id ID]
    mqttbridge routes [--config F] [--asgi module:app]
    mqttbridge passwd USERNAME   (a broker.users entry for the embedded broker)
    mqttbridge simulate [--devices N] [--rate R] [--profile P] ...   (mqttbridge.devices)

As in daphne, the CLI is a class with ``run(argv)`` returning the exit status, so tests call it
with a list. Configuration errors print one line naming file, line and key, and exit 2 with no
traceback. ``run`` exits 1 when the embedded broker cannot start, or when the first connection
to the broker fails in a way no retry can fix (logged as one ERROR line naming the setting).

Start-up follows daphne and uvicorn, so a Django project runs from its directory with nothing
exported: the working directory goes on ``sys.path``; the ``--asgi`` application is imported
first (a project's ``asgi.py`` sets ``DJANGO_SETTINGS_MODULE`` and sets Django up); only if
nothing configured Django does the bridge configure its minimal settings; then the YAML routes'
consumers are imported (they may import models), and routes and application are checked.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TextIO

import yaml

from mqttbridge import __version__
from mqttbridge.broker.passwords import DEFAULT_ITERATIONS, hash_password
from mqttbridge.cli.logs import configure_logging
from mqttbridge.config.schema import (
    Config,
    ConfigError,
    default_config,
    import_string,
    load_config,
    resolve_consumers,
)
from mqttbridge.config.settings import flags
from mqttbridge.server.logfields import plural

__all__ = ["CommandLineInterface", "main"]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "config.yaml"
# The source of the defaults read_config gives when there is no file, until Django is set up.
_NO_FILE = "<no config file>"


@dataclasses.dataclass(frozen=True)
class Loaded:
    """What a command works on: the config, the ``--asgi`` application and its routes, and
    the channel layer in use (with a warning when the project's settings override the file's)."""

    config: Config
    application: Any = None
    python_routes: tuple[Any, ...] = ()
    #: False when the application serves only HTTP and WebSocket (its ProtocolTypeRouter has no
    #: "mqtt" entry) and the config's routes carry the devices.
    application_serves_mqtt: bool = True
    channel_layer: str = ""
    warnings: tuple[str, ...] = ()


class CommandLineInterface:
    """The ``mqttbridge`` command. Where the configuration comes from is two methods,
    ``read_config`` and ``asgi_path``, which ``manage.py mqttbridge`` overrides to read
    Django's settings (``mqttbridge.django.command``); everything else is shared."""

    #: How messages tell the user to give an application, and say that none was.
    ASGI_HINT = "give --asgi <project>.asgi:application"
    NO_APPLICATION = "no --asgi application was given"

    def __init__(
        self,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        stdin: TextIO | None = None,
    ) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.stdin = stdin or sys.stdin
        self.parser = self._build_parser()
        self.server: Any = None  # the Server built by ``run``, for tests

    def _build_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            prog="mqttbridge",
            description="The MQTT protocol server for Django Channels.",
            # Keeps --version on one line, as scripts and bug reports want it.
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--version", action="version", version=_version_line())
        commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        self.add_commands(commands)

        passwd = commands.add_parser(
            "passwd",
            help="hash a password for broker.users (embedded broker)",
            description="Print a broker.users entry for USERNAME. The password is asked for "
            "twice on a terminal, or read from the first line of standard input.",
        )
        passwd.add_argument("username", metavar="USERNAME")
        simulate = commands.add_parser(
            "simulate",
            help="run a fleet of simulated devices against a broker",
            description="Simulated devices, each its own MQTT connection, publishing what its "
            "profile says and obeying its commands (docs/simulator.md).",
        )
        from mqttbridge.devices.simulator.cli import add_arguments as add_simulate_arguments

        add_simulate_arguments(simulate)
        passwd.add_argument(
            "--iterations",
            type=int,
            default=DEFAULT_ITERATIONS,
            help=f"PBKDF2 iterations (default: {DEFAULT_ITERATIONS})",
        )
        return parser

    @classmethod
    def add_commands(cls, commands: Any) -> None:
        """``run``, ``check`` and ``routes`` on ``commands`` (what ``add_subparsers`` returned)."""
        run = commands.add_parser("run", help="run the bridge")
        cls.add_source_args(
            run,
            asgi_help="ASGI application to run (mqttasgi style, or a ProtocolTypeRouter)",
            overrides=True,
        )
        run.add_argument(
            "--log-level", default="info", choices=["debug", "info", "warning", "error"]
        )
        run.add_argument("--log-format", default="text", choices=["text", "json"])
        run.add_argument(
            "--demo",
            action="store_true",
            help="also run a small simulated fleet, one device of each shipped profile",
        )
        check = commands.add_parser("check", help="validate the configuration and its routes")
        # The same flags as run, so that check can vouch for the command line run is given.
        cls.add_source_args(
            check,
            asgi_help="also import and check the ASGI application run would run",
            overrides=True,
        )
        routes = commands.add_parser("routes", help="print the routing table")
        cls.add_source_args(routes, asgi_help="also list the application's TopicRouter routes")

    @classmethod
    def add_source_args(
        cls, parser: argparse.ArgumentParser, *, asgi_help: str, overrides: bool = False
    ) -> None:
        """What a command reads: the file, the ``--asgi`` application and, with ``overrides``,
        an option per key declared with a flag (``mqttbridge.config.settings``)."""
        parser.add_argument(
            "--config",
            "-c",
            metavar="FILE",
            help=f"config file (default: ./{DEFAULT_CONFIG} if it exists)",
        )
        parser.add_argument("--asgi", metavar="MODULE:APP", help=asgi_help)
        if overrides:
            cls.add_override_args(parser)

    @staticmethod
    def add_override_args(parser: argparse.ArgumentParser) -> None:
        """An option per key declared with a flag (``mqttbridge.config.settings``)."""
        for key, flag in flags(Config):
            parser.add_argument(flag.name, metavar=flag.metavar, help=flag.help, dest=key)

    def run(self, argv: Sequence[str]) -> int:
        return self.execute(self.parser.parse_args(list(argv)))

    def execute(self, args: argparse.Namespace) -> int:
        """Run the command ``args`` says (as parsed by the parser ``add_commands`` built);
        return the exit status."""
        if args.command == "passwd":  # needs no configuration
            return self.cmd_passwd(args)
        if args.command == "simulate":  # reads only the broker and routes of --config
            from mqttbridge.devices.simulator.cli import run as simulate

            return simulate(args, self.stdout, self.stderr)
        # As daphne and uvicorn do: `mqttbridge` is a console script, whose sys.path[0] is its
        # own directory, so a project's modules are found only with the working directory.
        if "." not in sys.path:
            sys.path.insert(0, ".")
        try:
            loaded = self._load(args)
        except ConfigError as exc:
            for error in exc.errors:
                print(f"error: {error}", file=self.stderr)
            return 2
        handler = getattr(self, f"cmd_{args.command}")
        status: int = handler(args, loaded)
        return status

    def _load(self, args: argparse.Namespace) -> Loaded:
        from mqttbridge.cli.checks import (
            check_application,
            check_route_consumers,
            check_route_filters,
            serves_no_mqtt,
        )
        from mqttbridge.django_setup import channel_layer_in_use, ensure_django

        asgi, where = self.asgi_path(args)
        config = self.read_config(args)
        application = _import_application(asgi, where, config) if asgi else None
        ensure_django({"default": config.channel_layer.channels_settings()})
        if config.source == _NO_FILE:
            config = _settings_or_default(config, overrides(args))
        config = _resolve_consumers(config, self.ASGI_HINT)
        check_route_consumers(config)
        # A project's asgi.py often routes only HTTP and WebSocket; with routes in the config
        # (or settings.MQTTBRIDGE) it is still what --http serves and what set Django up.
        mqtt = asgi is not None and not (config.routes and serves_no_mqtt(application))
        python_routes = check_application(application, where) if mqtt else []
        check_route_filters(config, python_routes, where)
        from_flag = getattr(args, "http.listen", None) is not None
        _check_http(config, asgi, from_flag=from_flag, hint=self.ASGI_HINT)
        layer, layer_warning = channel_layer_in_use(config.channel_layer)
        warnings = config.warnings + ((layer_warning,) if layer_warning else ())
        warnings += _ignored_settings(config)
        return Loaded(
            config,
            application,
            tuple(python_routes),
            channel_layer=layer,
            warnings=warnings,
            application_serves_mqtt=mqtt,
        )

    def asgi_path(self, args: argparse.Namespace) -> tuple[str | None, str]:
        """The application to import as ``module:app``, if any, and how errors name it."""
        asgi = getattr(args, "asgi", None)
        return asgi, f"--asgi {asgi}"

    def read_config(self, args: argparse.Namespace) -> Config:
        """The configuration, its consumers not imported yet: they are imported once Django
        is set up (they may import models)."""
        path = args.config
        if path is None and os.path.exists(DEFAULT_CONFIG):
            path = DEFAULT_CONFIG
        if path is None:
            # Stands in until Django is set up: a project's settings.MQTTBRIDGE may replace it.
            return replace(default_config(overrides=overrides(args)), source=_NO_FILE)
        return load_config(path, import_consumers=False, overrides=overrides(args))

    # -- commands -------------------------------------------------------------------------------

    def cmd_check(self, args: argparse.Namespace, loaded: Loaded) -> int:
        config = loaded.config
        for warning in loaded.warnings:
            print(f"warning: {warning}", file=self.stdout)
        routes = plural(len(config.routes) + len(loaded.python_routes), "route")
        print(
            f"{config.source}: OK — broker {config.broker.url}, {routes}, "
            f"channel layer {loaded.channel_layer}",
            file=self.stdout,
        )
        return 0

    def cmd_passwd(self, args: argparse.Namespace) -> int:
        if args.iterations < 1:
            print("error: --iterations must be at least 1", file=self.stderr)
            return 2
        try:
            password = self._read_new_password(args.username)
        except ValueError as exc:
            print(f"error: {exc}", file=self.stderr)
            return 2
        entry = {args.username: hash_password(password, iterations=args.iterations)}
        # safe_dump quotes a username YAML would otherwise read as something else (no, 007).
        print(yaml.safe_dump(entry, width=1000).strip(), file=self.stdout)
        return 0

    def _read_new_password(self, username: str) -> str:
        if self.stdin.isatty():
            password = getpass.getpass(f"password for {username}: ")
            if getpass.getpass("again: ") != password:
                raise ValueError("the passwords differ")
        else:  # scripts: printf '%s\n' "$PASSWORD" | mqttbridge passwd alice
            password = self.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            raise ValueError("the password is empty")
        return password

    def cmd_routes(self, args: argparse.Namespace, loaded: Loaded) -> int:
        from mqttbridge.protocol.topics import compile_pattern, shared_filter

        config = loaded.config
        group = config.broker.shared_group
        rows = [("PATTERN", "SUBSCRIBES TO", "QOS", "CONSUMER")]
        # In the order the bridge matches them: the application's routes first.
        for python_route in loaded.python_routes:
            pattern = python_route.pattern
            rows.append(
                (
                    pattern.pattern,
                    shared_filter(pattern.filter, group),
                    str(python_route.qos),
                    python_route.name,
                )
            )
        for route in config.routes:
            topic_filter = compile_pattern(route.topic).filter
            rows.append(
                (route.topic, shared_filter(topic_filter, group), str(route.qos), route.consumer)
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip(),
                file=self.stdout,
            )
        if len(rows) == 1:
            print("(no routes)", file=self.stdout)
        return 0

    def cmd_run(self, args: argparse.Namespace, loaded: Loaded) -> int:
        from mqttbridge.broker.embedded import EmbeddedBrokerError
        from mqttbridge.mqtt.client import BrokerUnusable
        from mqttbridge.routing import as_application, topic
        from mqttbridge.server.http import HttpListenError, HttpStartupError
        from mqttbridge.server.server import Server

        config = loaded.config
        configure_logging(args.log_level, args.log_format)
        for warning in loaded.warnings:
            logger.warning("%s", warning)
        routes = [
            topic(r.topic, as_application(r.consumer_class), qos=r.qos, name=r.consumer)
            for r in config.routes
        ]
        if loaded.application is None and not routes:
            print(
                f"error: nothing to run: {config.source} has no routes and "
                f"{self.NO_APPLICATION}",
                file=self.stderr,
            )
            return 2
        self.server = server = Server(
            config,
            application=loaded.application if loaded.application_serves_mqtt else None,
            routes=routes,
            http_application=loaded.application,
        )
        logger.info(
            "mqttbridge %s starting (pid %d, config %s)", __version__, os.getpid(), config.source
        )
        logger.info("channel layer: %s", loaded.channel_layer)
        try:
            asyncio.run(self._serve(server, demo=args.demo))
        except (EmbeddedBrokerError, HttpListenError, HttpStartupError) as exc:
            print(f"error: {exc}", file=self.stderr)
            return 1
        except BrokerUnusable:
            return 1  # the client logged why, as one ERROR line
        except KeyboardInterrupt:
            pass
        return 0

    async def _serve(self, server: Any, *, demo: bool) -> None:
        if not demo:
            await server.serve()
            return
        from mqttbridge.devices.simulator.demo import run_demo_fleet

        async def devices() -> None:
            await server.ready.wait()
            assert server.client is not None
            await run_demo_fleet(server.client.host, server.client.port)

        task = asyncio.get_running_loop().create_task(devices())
        try:
            await server.serve()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _version_line() -> str:
    """What a bug report needs: ours, and the versions of what we build on (as uvicorn does)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("paho-mqtt", "channels", "channels-redis", "redis", "amqtt", "Django"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} missing")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"mqttbridge {__version__} ({', '.join(parts)}; {python} on {platform.system()})"


def overrides(args: argparse.Namespace) -> dict[str, str]:
    """The values of the options that override keys (``--broker``: ``broker.url``), read and
    checked as the file's keys are: a flag can break no rule the file must keep."""
    return {
        key: getattr(args, key) for key, _ in flags(Config) if getattr(args, key, None) is not None
    }


def _settings_or_default(config: Config, given: dict[str, str]) -> Config:
    """With no config file, a Django project's ``settings.MQTTBRIDGE`` when its settings are
    in charge (``--asgi`` or ``DJANGO_SETTINGS_MODULE``); the defaults otherwise."""
    from django.conf import settings

    from mqttbridge.config.mapping import parse_settings
    from mqttbridge.django_setup import project_settings_in_charge

    if project_settings_in_charge() and hasattr(settings, "MQTTBRIDGE"):
        return parse_settings(settings.MQTTBRIDGE, import_consumers=False, overrides=given)
    return replace(config, source="<default>")


def _ignored_settings(config: Config) -> tuple[str, ...]:
    """A warning when a config file is read although the project has settings.MQTTBRIDGE."""
    from django.conf import settings

    from mqttbridge.django_setup import project_settings_in_charge

    if config.from_mapping or config.source == "<default>" or not project_settings_in_charge():
        return ()
    if not hasattr(settings, "MQTTBRIDGE"):
        return ()
    return (f"settings.MQTTBRIDGE is ignored: {config.source} is read instead",)


def _import_application(path: str, where: str, config: Config) -> Any:
    """Import the ``--asgi`` application before Django is configured, so that a project's
    ``asgi.py`` sets ``DJANGO_SETTINGS_MODULE`` itself, as under daphne or uvicorn."""
    from mqttbridge.django_setup import ensure_django, needs_project_settings

    try:
        return import_string(path)
    except ValueError as exc:
        from django.conf import settings

        # A module that is no Django project but reads settings at import time gets the
        # bridge's minimal settings, as the YAML routes' consumers do.
        if settings.configured or not needs_project_settings(exc):
            raise ConfigError(str(exc), source=where) from None
    ensure_django({"default": config.channel_layer.channels_settings()})
    try:
        return import_string(path)
    except ValueError as exc:
        raise ConfigError(str(exc), source=where) from None


def _check_http(config: Config, asgi: str | None, *, from_flag: bool, hint: str) -> None:
    """``http.listen`` serves the ``--asgi`` application, with uvicorn: both must be there."""
    from mqttbridge.server.http import INSTALL_HINT, uvicorn_missing

    if config.http.listen is None:
        return
    problem = None
    if not asgi:
        problem = f"needs an application to serve; {hint}"
    elif uvicorn_missing():
        problem = f"needs uvicorn: {INSTALL_HINT}"
    if problem is None:
        return
    if from_flag:
        raise ConfigError(problem, source="--http")
    raise config.error(problem, key="http.listen")


def _resolve_consumers(config: Config, hint: str) -> Config:
    from mqttbridge.django_setup import needs_project_settings, project_settings_in_charge

    try:
        return resolve_consumers(config)
    except ConfigError as exc:
        if project_settings_in_charge():
            raise
        explained = [
            ConfigError(
                f"{error.message.rstrip('.')}; Django is not set up for a project: {hint} "
                "or set DJANGO_SETTINGS_MODULE",
                source=error.source,
                line=error.line,
                key=error.key,
                subscripts=error.subscripts,
            )
            if needs_project_settings(error)
            else error
            for error in exc.errors
        ]
        raise ConfigError.combine(explained) from None


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(CommandLineInterface().run(sys.argv[1:] if argv is None else argv))
