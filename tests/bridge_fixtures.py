"""Run a bridge ``Server`` inside the test's event loop against a real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from mqttbridge.config.schema import parse_config
from mqttbridge.routing import topic
from mqttbridge.server.server import Server
from tests import apps


def bridge_config(
    broker_url: str, extra: str = "", *, protocol: str = "5", shared_group: str | None = None
) -> Any:
    group = f"  shared_group: {shared_group}\n" if shared_group else ""
    return parse_config(
        f"broker:\n  url: {broker_url}\n  protocol: '{protocol}'\n  keepalive: 10\n"
        f"  reconnect: {{min_delay: 0.1, max_delay: 1}}\n{group}{extra}",
        source="test.yaml",
    )


async def wait_until(
    condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


async def start_server(config: Any, **kwargs: Any) -> Server:
    server = Server(config, install_signal_handlers=False, **kwargs)
    await server.startup()
    await asyncio.wait_for(server.ready.wait(), 10)
    return server


@pytest.fixture
async def run_bridge() -> AsyncIterator[Callable[..., Any]]:
    """``await run_bridge(config, routes=[...])`` -> a started Server, shut down afterwards."""
    servers: list[Server] = []
    apps.reset()

    async def start(config: Any, **kwargs: Any) -> Server:
        server = await start_server(config, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown()


def recording_route(pattern: str = "sensors/{device_id}/data", qos: int = 1) -> Any:
    return topic(pattern, apps.RecordingConsumer.as_asgi(), qos=qos)


async def next_message(client: Any, timeout: float = 5.0) -> Any:
    """``PahoClient.next_message`` without blocking the event loop the bridge runs on."""
    import queue

    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.messages.get_nowait()
        except queue.Empty:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected an MQTT message within {timeout} s, got none"
                ) from None
            await asyncio.sleep(0.01)
