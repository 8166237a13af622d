"""The ``--asgi`` application's ``http`` and ``websocket`` scopes, served by uvicorn on the
bridge's event loop (``http.listen``), so WebSocket and MQTT consumers share one process and
one in-memory channel layer.

uvicorn is used as a library, as gunicorn's worker uses it: we bind the socket (a port in use
is our one-line error, not uvicorn's ``sys.exit``), uvicorn's own signal handlers stay off (the
bridge's SIGTERM handler stops both), and its graceful shutdown gets ``limits.shutdown_timeout``.
``import uvicorn`` happens only here, so a bridge without ``http.listen`` never pays for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

from mqttbridge.config.schema import HttpConfig
from mqttbridge.config.values import _parse_listen

__all__ = ["HttpFront", "HttpListenError", "HttpStartupError", "uvicorn_missing"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'mqttbridge[http]'"


class HttpListenError(Exception):
    """The HTTP socket cannot be bound (the address is in use, or not this host's)."""


class HttpStartupError(Exception):
    """The application's lifespan startup failed (uvicorn logged the application's reason)."""


def uvicorn_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvicorn") is None


class HttpFront:
    """uvicorn's ``Server`` for ``application``, started and stopped by the bridge's Server."""

    def __init__(self, config: HttpConfig, application: Any, shutdown_timeout: float) -> None:
        assert config.listen is not None
        self.config = config
        self.application = application
        self.shutdown_timeout = shutdown_timeout
        self.server: Any = None
        self.url = ""
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    def bind(self) -> None:
        """Take the address before anything else starts; raises :class:`HttpListenError`."""
        self._socket = sock = self._bound_socket()
        host, port = sock.getsockname()[:2]
        scheme = "https" if self.config.cert_file else "http"
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    async def start(self) -> asyncio.Task[None]:
        """Serve on the bound socket in a task, which ends once ``stop()`` has drained.

        Returns once the application's lifespan startup is complete, so that what it sets up
        is there before the first MQTT message; raises :class:`HttpStartupError` if it failed.
        """
        assert self._socket is not None
        self.server = server = _quiet_server(self._uvicorn_config())
        self._task = task = asyncio.get_running_loop().create_task(
            server.serve(sockets=[self._socket]), name="http"
        )
        up = asyncio.ensure_future(server.up.wait())
        try:
            await asyncio.wait({task, up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
        if task.done():
            task.result()  # HttpStartupError, or whatever else stopped uvicorn before it served
            raise HttpStartupError("the HTTP server stopped before it started serving")
        logger.info("serving HTTP and WebSocket on %s", self.url)
        return task

    def close(self) -> None:
        """Release a socket bound but never served (start-up failed after ``bind()``)."""
        if self._task is None and self._socket is not None:
            self._socket.close()

    def _bound_socket(self) -> socket.socket:
        assert self.config.listen is not None
        host, port = _parse_listen(self.config.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, as getaddrinfo gives uvicorn's own sockets: asyncio sets TCP_NODELAY on
        # an accepted connection only when its socket says so, and accepted sockets copy the
        # listener's proto (0 by default). Without it, Nagle held each response's body (its
        # second write) until the client's delayed ACK: 2.4 times fewer requests/s under wrk
        # (docs/benchmarks.md, "HTTP in the bridge's process").
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise HttpListenError(
                f"http.listen {self.config.listen}: cannot listen: {exc.strerror or exc}; "
                "pick a free port with --http HOST:PORT"
            ) from None
        return sock

    def _uvicorn_config(self) -> Any:
        import uvicorn

        return uvicorn.Config(
            self.application,
            lifespan="auto",
            # Our logging stays as configure_logging set it; uvicorn's loggers propagate to it.
            log_config=None,
            proxy_headers=self.config.proxy_headers,
            forwarded_allow_ips=self.config.forwarded_allow_ips,
            ssl_certfile=self.config.cert_file,
            ssl_keyfile=self.config.key_file,
            # Typed int, but only ever given to asyncio.wait_for: 2.5 s stays 2.5 s.
            timeout_graceful_shutdown=self.shutdown_timeout,  # type: ignore[arg-type]
        )

    def stop(self, *, force: bool = False) -> None:
        """Start uvicorn's graceful shutdown (WebSockets get close code 1012); ``force`` stops
        waiting for open connections."""
        if self.server is not None:
            self.server.should_exit = True
            self.server.force_exit = self.server.force_exit or force

    async def wait_stopped(self) -> None:
        self.close()
        if self._task is not None:
            # A failed startup was raised from start() already.
            with contextlib.suppress(asyncio.CancelledError, HttpStartupError):
                await self._task


def _quiet_server(config: Any) -> Any:
    """A uvicorn ``Server`` that leaves signals alone (its ``capture_signals`` would replace
    the bridge's handlers and re-raise the signal after its own shutdown), tells when it is up,
    and reports a failed lifespan startup as an exception rather than uvicorn's ``sys.exit(3)``,
    which would end the whole process before the bridge shut down."""
    import uvicorn

    class Server(uvicorn.Server):
        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self.up = asyncio.Event()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets=sockets)
            except SystemExit:
                raise HttpStartupError(
                    "the ASGI application's lifespan startup failed (its reason is logged "
                    "above); fix the application's startup, or its lifespan handler"
                ) from None
            self.up.set()

    return Server(config)
