"""HttpFront (bridge/server/http.py): uvicorn on the bridge's loop, on a socket the bridge
bound, serving connections as uvicorn alone serves them. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from mqttbridge.config.schema import HttpConfig
from mqttbridge.server.http import HttpFront
from tests.services import free_port


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    # Headers and body in two sends, two writes: what Nagle's algorithm holds back.
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def _nodelay_of_accepted(server: Any, port: int) -> int:
    """TCP_NODELAY on the server's side of a keep-alive connection, after one request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"hello"), 10)
        (connection,) = server.server_state.connections
        accepted = connection.transport.get_extra_info("socket")
        return int(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    finally:
        writer.close()


async def test_accepted_connections_send_without_nagle_as_under_uvicorn_alone() -> None:
    front = HttpFront(HttpConfig(listen="127.0.0.1:0"), _hello, shutdown_timeout=2.0)
    front.bind()
    await front.start()
    try:
        ours = await _nodelay_of_accepted(front.server, int(front.url.rsplit(":", 1)[1]))
    finally:
        front.stop(force=True)
        await front.wait_stopped()

    # uvicorn binding its own socket, as `uvicorn app:application` does.
    port = free_port()
    alone = uvicorn.Server(uvicorn.Config(_hello, port=port, log_config=None))
    serving = asyncio.get_running_loop().create_task(alone.serve())
    try:
        while not alone.started:
            await asyncio.sleep(0.01)
        theirs = await _nodelay_of_accepted(alone, port)
    finally:
        alone.should_exit = True
        await serving

    assert (ours, theirs) == (1, 1), (
        "TCP_NODELAY on an accepted connection: "
        f"bridge's HTTP front {ours}, uvicorn alone {theirs} (both should be 1)"
    )
