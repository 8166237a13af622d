"""``mqttbridge simulate`` (also ``python -m mqttbridge.devices``): run a fleet of devices.

    mqttbridge simulate --devices 100 --rate 1 --duration 60 --profile tasmota --profile shelly
    mqttbridge simulate --config config.yaml --round-trip        # the embedded broker of a config

Options are read here; ``mqttbridge.cli.main`` only hands the subcommand over. Bad input ends
with one line naming the culprit and exit status 2; a finished run prints (or, with ``--json``,
writes) a summary; Ctrl-C stops the fleet cleanly, with the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from mqttbridge.config.schema import BrokerConfig, Config, ConfigError, load_config
from mqttbridge.devices.simulator.connection import BrokerTarget
from mqttbridge.devices.simulator.fleet import Fleet, FleetOptions
from mqttbridge.devices.simulator.profiles import Profile, load_profile, shipped_profiles
from mqttbridge.devices.simulator.routes import unrouted_topics
from mqttbridge.devices.simulator.view import LiveView, PlainLog

__all__ = ["add_arguments", "main", "run"]

logger = logging.getLogger("mqttbridge.devices.simulator")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--broker",
        metavar="URL",
        help="mqtt://host:port, mqtts://, ws://, wss://, or embedded "
        "(the embedded broker of --config); default: the broker of --config, else "
        "mqtt://127.0.0.1:1883",
    )
    add(
        "--config",
        "-c",
        metavar="FILE",
        help="the bridge's config.yaml: its broker, and a "
        "warning for every simulated topic no route matches",
    )
    add(
        "--profile",
        "-p",
        action="append",
        metavar="NAME|FILE",
        help=f"device profile, repeatable (devices alternate); shipped: "
        f"{', '.join(sorted(shipped_profiles()))}; default generic",
    )
    add("--devices", "-n", type=_positive_int, default=10, metavar="N")
    add(
        "--rate",
        type=_positive_float,
        metavar="MSG/S",
        help="telemetry per device per second (default: the profile's)",
    )
    end = parser.add_mutually_exclusive_group()
    end.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help="each device publishes for this long (default: until Ctrl-C)",
    )
    end.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="each device publishes N telemetry messages",
    )
    add("--qos", type=int, choices=(0, 1), help="telemetry QoS (default: the profile's)")
    add("--protocol", choices=("3.1.1", "5"), default=None, help="MQTT version (default 3.1.1)")
    add("--keepalive", type=_positive_int, default=60, metavar="SECONDS")
    add(
        "--ramp",
        type=_positive_float,
        metavar="DEVICES/S",
        help="connect this many devices per second (default: all at once)",
    )
    add("--seed", type=int, default=0, help="same seed, same values (default 0)")
    add("--username", metavar="NAME")
    add(
        "--password",
        metavar="SECRET",
        help="or set MQTTBRIDGE_SIMULATE_PASSWORD, which stays out of `ps`",
    )
    add("--cafile", metavar="PEM", help="CA certificates for mqtts:// and wss://")
    add("--certfile", metavar="PEM", help="client certificate (mutual TLS)")
    add("--keyfile", metavar="PEM", help="client key (mutual TLS)")
    add("--insecure", action="store_true", help="do not verify the broker's certificate")
    add(
        "--round-trip",
        action="store_true",
        help="time device -> consumer -> device for consumers that echo the reading's ref",
    )
    add("--json", metavar="FILE", help="write the summary as JSON to FILE (- for stdout)")
    add("--plain", action="store_true", help="a plain log instead of the live view")


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        config = _config(args.config)
        target = _target(args, config)
        profiles = [load_profile(name) for name in args.profile or ["generic"]]
    except ConfigError as exc:
        for error in exc.errors:
            print(f"error: {error}", file=stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=stderr)
        return 2
    if config is not None:
        for topic, profile in unrouted_topics(config, profiles):
            print(f"warning: no route in {config.source} matches {topic} ({profile})", file=stderr)
    _raise_descriptor_limit(args.devices)
    options = FleetOptions(
        devices=args.devices,
        rate=args.rate,
        duration=args.duration,
        count=args.count,
        qos=args.qos,
        seed=args.seed,
        ramp=args.ramp,
        round_trip=args.round_trip,
    )
    live = not args.plain and stderr.isatty() and args.json != "-"
    if not live and not logging.getLogger().handlers:
        # The plain view is log lines: give them somewhere to go, as `mqttbridge run` does.
        # (A caller that set logging up, pytest included, keeps its own.)
        logging.basicConfig(
            stream=stderr,
            level=logging.INFO,
            format="%(asctime)s %(levelname)-7s %(message)s",
            datefmt="%H:%M:%S",
        )
    summary = asyncio.run(_run_fleet(profiles, target, options, live, stderr))
    if summary["connects"] == 0 and summary["errors"]:
        reason = max(summary["errors"], key=summary["errors"].get)
        print(f"error: no device could connect to {summary['broker']}: {reason}", file=stderr)
        return 1
    _report(summary, args.json, stdout, stderr)
    return 0


async def _run_fleet(
    profiles: list[Profile],
    target: BrokerTarget,
    options: FleetOptions,
    live: bool,
    stream: TextIO,
) -> dict[str, Any]:
    fleet = Fleet(profiles, target, options)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, fleet.stop)
    where = f"{target.host}:{target.port}"
    view = LiveView(fleet, where, stream) if live else PlainLog(fleet, where, stream)
    task = loop.create_task(view.run())
    watch = loop.create_task(_stop_if_unreachable(fleet))
    try:
        stats = await fleet.run()
    finally:
        task.cancel()
        watch.cancel()
        await asyncio.gather(task, watch, return_exceptions=True)
        view.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    summary = stats.summary()
    summary["profiles"] = [profile.name for profile in profiles]
    summary["broker"] = where
    return summary


async def _stop_if_unreachable(fleet: Fleet) -> None:
    """End the run when every device failed its first connection and none ever got in:
    a wrong address or password is said at once, not retried forever."""
    stats = fleet.stats
    while stats.connects == 0:
        if sum(stats.errors.values()) >= stats.devices:
            fleet.stop()
            return
        await asyncio.sleep(0.2)


def _report(summary: dict[str, Any], path: str | None, stdout: TextIO, stderr: TextIO) -> None:
    text = json.dumps(summary, indent=2)
    if path == "-":
        print(text, file=stdout)
        return
    if path is not None:
        with open(path, "w", encoding="utf-8") as file:
            file.write(text + "\n")
    rt = summary["round_trip"]
    latency = (
        f", round trip p50 {rt['p50_ms']:.1f} ms p99 {rt['p99_ms']:.1f} ms" if rt["count"] else ""
    )
    print(
        f"{summary['devices']} devices, {summary['telemetry_published']} telemetry messages in "
        f"{summary['elapsed_s']:.1f} s ({summary['telemetry_rate']}/s), "
        f"{summary['commands_handled']} commands, {summary['reconnects']} reconnects, "
        f"{sum(summary['errors'].values())} errors{latency}",
        file=stderr,
    )


def _config(path: str | None) -> Config | None:
    if path is None:
        return None
    return load_config(path, import_consumers=False)


def _target(args: argparse.Namespace, config: Config | None) -> BrokerTarget:
    url = args.broker
    if url is None:
        url = "embedded" if config is not None else "mqtt://127.0.0.1:1883"
    if url == "embedded" or (config is not None and url == config.broker.url):
        if config is None:
            raise ValueError(
                "--broker embedded needs --config: the embedded broker's address is its listen"
            )
        broker = config.broker
    else:
        try:
            broker = BrokerConfig(url=url)
        except ValueError as exc:
            raise ValueError(f"--broker: {exc}") from None
    protocol = args.protocol or "3.1.1"
    # A config's broker brings its credentials, unless the command line gives others.
    username = args.username or (broker.username if broker is _config_broker(config) else None)
    password = args.password or os.environ.get("MQTTBRIDGE_SIMULATE_PASSWORD")
    if password is None and broker is _config_broker(config):
        password = broker.password
    return BrokerTarget(
        host=broker.host,
        port=broker.port,
        version=5 if protocol == "5" else 4,
        keepalive=args.keepalive,
        tls=_tls(args) if broker.scheme in ("mqtts", "wss") else None,
        websocket_path=broker.path or "/" if broker.scheme in ("ws", "wss") else None,
        username=username,
        password=password,
    )


def _config_broker(config: Config | None) -> BrokerConfig | None:
    return None if config is None else config.broker


def _tls(args: argparse.Namespace) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=args.cafile)
    if args.certfile:
        context.load_cert_chain(args.certfile, args.keyfile)
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _raise_descriptor_limit(devices: int) -> None:
    """One socket per device: lift the soft descriptor limit toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = devices + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            logger.warning(
                "only %d file descriptors allowed (ulimit -Hn): fewer than %d devices will connect",
                hard,
                devices,
            )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mqttbridge.devices",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)
