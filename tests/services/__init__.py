"""Real Mosquitto and Redis processes (from ``harness``, which the benchmarks use too), a
private PostgreSQL cluster (harness.postgres), a fault-injecting TCP proxy, a small MQTT client,
and headless Chromium (``harness.browser``).

Integration tests run each service as a private child process on a free port of 127.0.0.1,
never the shared instances on 1883/6379: tests stop, SIGKILL, restart and SIGSTOP them, and
must not disturb (or be disturbed by) anything else on the machine.

Everything here is synchronous and thread-based so it works from plain and async tests alike.
"""

from harness.browser import chromium, find_chromium
from harness.postgres import PostgresProcess, psql
from harness.processes import (
    MosquittoProcess,
    RedisProcess,
    ServiceBinaryNotFound,
    ServiceStartError,
    TlsListener,
    find_binary,
    free_port,
    mqtt_ping,
    redis_ping,
)

from .mqtt_client import PahoClient
from .proxy import TcpProxy

__all__ = [
    "MosquittoProcess",
    "PahoClient",
    "PostgresProcess",
    "RedisProcess",
    "ServiceBinaryNotFound",
    "ServiceStartError",
    "TcpProxy",
    "TlsListener",
    "chromium",
    "find_binary",
    "find_chromium",
    "free_port",
    "mqtt_ping",
    "psql",
    "redis_ping",
]
