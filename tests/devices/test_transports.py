"""The simulator over every transport the bridge speaks, and its round trip through the bridge."""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mqttbridge.consumers.examples_devices import FanConsumer
from mqttbridge.devices.simulator.cli import _target, add_arguments
from mqttbridge.devices.simulator.fleet import Fleet, FleetOptions
from mqttbridge.devices.simulator.profiles import load_profile
from mqttbridge.routing import topic
from tests.bridge_fixtures import bridge_config
from tests.services import MosquittoProcess, TlsListener
from tests.services.certs import Pki
from tests.services.mqtt_client import PahoClient


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


async def _count_published(url: str, broker: MosquittoProcess, *argv: str) -> int:
    """Messages an independent subscriber on the plain listener saw from 3 devices x 5."""
    target = _target(_args("--broker", url, *argv), None)
    fleet = Fleet([load_profile("generic")], target, FleetOptions(devices=3, rate=10, count=5))
    with PahoClient(broker.host, broker.port) as counter:
        counter.subscribe("sensors/+/temperature")
        stats = await asyncio.wait_for(fleet.run(), 30)
        await asyncio.sleep(0.3)
        assert stats.connects == 3
        return counter.messages.qsize()


async def test_websocket_broker(mosquitto_factory: Callable[..., MosquittoProcess]) -> None:
    broker = mosquitto_factory(websockets=True)
    assert await _count_published(broker.ws_url + "/mqtt", broker) == 15


async def test_tls_broker_with_its_ca(
    mosquitto_factory: Callable[..., MosquittoProcess], pki: Pki
) -> None:
    tls = TlsListener(cafile=pki.ca.cert, certfile=pki.server.cert, keyfile=pki.server.key)
    broker = mosquitto_factory(tls=tls)
    assert await _count_published(broker.tls_url, broker, "--cafile", str(pki.ca.cert)) == 15


async def test_round_trip_through_the_bridge_and_an_example_consumer(
    mosquitto: MosquittoProcess, run_bridge: Any
) -> None:
    route = topic("sensors/{device_id}/temperature", FanConsumer.as_asgi(), qos=0)
    await run_bridge(bridge_config(mosquitto.url), routes=[route])
    target = _target(_args("--broker", mosquitto.url), None)
    options = FleetOptions(devices=5, rate=10, count=20, round_trip=True)
    fleet = Fleet([load_profile("generic")], target, options)
    stats = await asyncio.wait_for(fleet.run(), 30)
    latency = stats.latency()
    # Every reading answered, except those whose answer was still on its way at the end.
    assert latency["count"] >= 90, latency
    assert latency["p50_ms"] is not None and latency["p50_ms"] <= latency["p99_ms"]


class _MembersOnlyMosquitto(MosquittoProcess):
    """Mosquitto refusing anonymous clients; it answers the start-up ping with a refusal."""

    def config_text(self) -> str:
        return super().config_text().replace("allow_anonymous true", "allow_anonymous false")

    def ping(self, timeout: float = 1.0) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout).close()
        except OSError:
            return False
        return True


def test_a_broker_refusing_every_device_ends_the_run_in_one_line(
    tmp_path: Path, capsys: Any
) -> None:
    from mqttbridge.cli import CommandLineInterface

    with _MembersOnlyMosquitto(workdir=tmp_path / "mosquitto") as broker:
        argv = ["simulate", "--broker", broker.url, "--devices", "3", "--duration", "5"]
        status = CommandLineInterface().run(
            [*argv, "--plain", "--username", "nobody", "--password", "secret-pw"]
        )
    err = capsys.readouterr().err
    assert status == 1
    assert err.strip().splitlines()[-1] == (
        f"error: no device could connect to 127.0.0.1:{broker.port}: not authorized"
    )
    assert "secret-pw" not in err and "Traceback" not in err
