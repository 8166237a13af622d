"""The ``mqttbridge`` command (also ``python -m bridge``).

    mqttbridge run [--config F] [--asgi module:app] [--broker URL] [--client-id ID] [--demo]
    mqttbridge check --config F
    mqttbridge routes --config F

As in daphne, the CLI is a class with ``run(argv)`` returning the exit status, so tests call it
with a list. Configuration errors print one line naming file, line and key, and exit 2 with no
traceback. ``run`` exits 1 when the embedded broker cannot start, or when the first connection
to the broker fails in a way no retry can fix (logged as one ERROR line naming the setting).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from . import __version__
from .config import Config, ConfigError, default_config, import_string, load_config
from .logs import configure_logging

__all__ = ["CommandLineInterface", "main"]

logger = logging.getLogger("bridge.cli")

DEFAULT_CONFIG = "config.yaml"


class CommandLineInterface:
    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.parser = self._build_parser()
        self.server: Any = None  # the Server built by ``run``, for tests

    def _build_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            prog="mqttbridge",
            description="The MQTT protocol server for Django Channels.",
        )
        parser.add_argument("--version", action="version", version=f"mqttbridge {__version__}")
        commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

        run = commands.add_parser("run", help="run the bridge")
        self._add_config_arg(run, required=False)
        run.add_argument(
            "--asgi",
            metavar="MODULE:APP",
            help="ASGI application to run (mqttasgi style, or a ProtocolTypeRouter)",
        )
        run.add_argument(
            "--broker",
            metavar="URL",
            help="override broker.url (mqtt://host:port, mqtts://, ws://, wss:// or embedded)",
        )
        run.add_argument("--client-id", metavar="ID", help="override broker.client_id")
        run.add_argument(
            "--log-level", default="info", choices=["debug", "info", "warning", "error"]
        )
        run.add_argument("--log-format", default="text", choices=["text", "json"])
        run.add_argument(
            "--demo",
            action="store_true",
            help="also run three simulated devices publishing readings",
        )

        check = commands.add_parser("check", help="validate a config file and its routes")
        self._add_config_arg(check, required=False)
        routes = commands.add_parser("routes", help="print the routing table")
        self._add_config_arg(routes, required=False)
        return parser

    @staticmethod
    def _add_config_arg(parser: argparse.ArgumentParser, *, required: bool) -> None:
        parser.add_argument(
            "--config",
            "-c",
            metavar="FILE",
            required=required,
            help=f"config file (default: ./{DEFAULT_CONFIG} if it exists)",
        )

    def run(self, argv: Sequence[str]) -> int:
        args = self.parser.parse_args(list(argv))
        try:
            config = self._load(args)
        except ConfigError as exc:
            print(f"error: {exc}", file=self.stderr)
            return 2
        handler = getattr(self, f"cmd_{args.command}")
        status: int = handler(args, config)
        return status

    def _load(self, args: argparse.Namespace) -> Config:
        # Routes import consumers, which import Channels, which reads Django settings.
        from .django_setup import ensure_django

        path = args.config
        if path is None and os.path.exists(DEFAULT_CONFIG):
            path = DEFAULT_CONFIG
        config = load_config(path) if path is not None else default_config()
        ensure_django({"default": config.channel_layer.channels_settings()})
        broker = config.broker
        overrides: dict[str, Any] = {}
        if getattr(args, "broker", None):
            overrides["url"] = args.broker
        if getattr(args, "client_id", None):
            overrides["client_id"] = args.client_id
        if overrides:
            try:
                broker = dataclasses.replace(broker, **overrides)
            except (ValueError, ConfigError) as exc:
                raise ConfigError(str(exc), source="command line", key="--broker") from None
            config = dataclasses.replace(config, broker=broker)
        return config

    # -- commands -------------------------------------------------------------------------------

    def cmd_check(self, args: argparse.Namespace, config: Config) -> int:
        for warning in config.warnings:
            print(f"warning: {warning}", file=self.stdout)
        print(
            f"{config.source}: OK — broker {config.broker.url}, {len(config.routes)} routes, "
            f"channel layer {config.channel_layer.display_url}",
            file=self.stdout,
        )
        return 0

    def cmd_routes(self, args: argparse.Namespace, config: Config) -> int:
        from .topics import compile_pattern, shared_filter

        rows = [("PATTERN", "SUBSCRIBES TO", "QOS", "CONSUMER")]
        for route in config.routes:
            pattern = compile_pattern(route.topic)
            rows.append(
                (
                    route.topic,
                    shared_filter(pattern.filter, config.broker.shared_group),
                    str(route.qos),
                    route.consumer,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip(),
                file=self.stdout,
            )
        if not config.routes:
            print("(no routes)", file=self.stdout)
        return 0

    def cmd_run(self, args: argparse.Namespace, config: Config) -> int:
        from .client import BrokerUnusable
        from .embedded import EmbeddedBrokerError
        from .routing import topic
        from .server import Server

        configure_logging(args.log_level, args.log_format)
        for warning in config.warnings:
            logger.warning("%s", warning)
        application = None
        if args.asgi:
            try:
                application = import_string(args.asgi)
            except (ImportError, ValueError, AttributeError) as exc:
                print(f"error: --asgi {args.asgi}: {exc}", file=self.stderr)
                return 2
        routes = [
            topic(r.topic, _as_asgi(r.consumer_class), qos=r.qos, name=r.consumer)
            for r in config.routes
        ]
        if application is None and not routes:
            print(
                f"error: nothing to run: {config.source} has no routes "
                "and no --asgi application was given",
                file=self.stderr,
            )
            return 2
        self.server = server = Server(config, application=application, routes=routes)
        logger.info(
            "mqttbridge %s starting (pid %d, config %s)", __version__, os.getpid(), config.source
        )
        try:
            asyncio.run(self._serve(server, demo=args.demo))
        except EmbeddedBrokerError as exc:
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
        from devices.demo import run_demo_devices

        async def devices() -> None:
            await server.ready.wait()
            assert server.client is not None
            await run_demo_devices(server.client.host, server.client.port)

        task = asyncio.get_running_loop().create_task(devices())
        try:
            await server.serve()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _as_asgi(consumer: Any) -> Any:
    return consumer.as_asgi() if hasattr(consumer, "as_asgi") else consumer


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(CommandLineInterface().run(sys.argv[1:] if argv is None else argv))
