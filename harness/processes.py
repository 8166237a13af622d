"""Real Mosquitto and Redis processes, each a private child on a free port of 127.0.0.1,
and the protocol-level pings that tell whether they serve.

Tests stop, SIGKILL, restart and SIGSTOP them; the benchmarks measure against them. Never the
shared instances on 1883/6379, which they must not disturb nor be disturbed by.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

LOCALHOST = "127.0.0.1"

# Distro packages install daemons to sbin, which is often not on a non-root user's PATH.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class ServiceBinaryNotFound(RuntimeError):
    """The service's executable is not installed; `package` says what would provide it."""

    def __init__(self, binary: str, package: str, env_var: str) -> None:
        self.binary = binary
        self.package = package
        override = os.environ.get(env_var)
        where = (
            f"${env_var}={override!r} is not an executable"
            if override
            else f"{binary!r} not found on PATH or in {', '.join(_SBIN_DIRS)} (or set ${env_var})"
        )
        super().__init__(f"{where}; install it: apt-get install -y {package}")


class ServiceStartError(RuntimeError):
    """The service exited or did not answer in time; the message carries its log tail."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    There is an unavoidable race until the caller binds it; services retry with a new port
    when they lose it (see `_ManagedProcess.start`).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str, env_var: str) -> str | None:
    """Locate `name`: $env_var first, then PATH, then the sbin directories."""
    override = os.environ.get(env_var)
    if override:
        # A wrong override must not fall back silently to some other installed version.
        return override if os.access(override, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def mqtt_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if an MQTT 3.1.1 CONNECT gets a successful CONNACK within `timeout`.

    A bare TCP connect is not enough: the kernel completes handshakes for a SIGSTOPped broker
    (the listen backlog), so only a protocol round trip shows the broker is really serving.
    """
    client_id = b"mqttbridge-tests-ping"
    variable_header = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol 3.1.1, clean session, ka 10 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable_header + payload
    connect = bytes([0x10, len(body)]) + body  # len(body) < 128: one-byte remaining length
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(connect)
            connack = _recv_exactly(sock, 4, deadline=time.monotonic() + timeout)
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT, so the broker logs a clean close
    except OSError:
        return False
    return connack == b"\x20\x02\x00\x00"


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if Redis answers PING with PONG within `timeout` (not while still -LOADING)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = _recv_exactly(sock, 7, deadline=time.monotonic() + timeout)
    except OSError:
        return False
    return reply == b"+PONG\r\n"


def _recv_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {data!r} of {size} bytes before the deadline")
        sock.settimeout(remaining)
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"peer closed after {data!r} of {size} bytes")
        data += chunk
    return data


# Children still alive at interpreter exit (a KeyboardInterrupt that skipped fixture teardown,
# a test that forgot `stop()`) are killed here, so no broker outlives the test run.
_live: weakref.WeakSet[_ManagedProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for service in list(_live):
        with contextlib.suppress(Exception):
            service.kill()


class _ManagedProcess(ABC):
    """Lifecycle shared by the services: start/stop/kill/restart/pause/resume on a fixed port."""

    name: str  # for messages and the log file name
    binary_name: str
    package: str
    env_var: str
    # SIGTERM makes Mosquitto and Redis save and exit; PostgreSQL wants SIGINT ("fast").
    stop_signal = signal.SIGTERM
    # The OS user the child runs as (None: ours); PostgreSQL refuses to run as root.
    run_as: str | None = None

    def __init__(
        self,
        port: int | None = None,
        workdir: str | os.PathLike[str] | None = None,
        binary: str | None = None,
    ) -> None:
        found = binary or find_binary(self.binary_name, self.env_var)
        if found is None:
            raise ServiceBinaryNotFound(self.binary_name, self.package, self.env_var)
        self.binary = found
        self._port_was_chosen = port is None
        self._port = port if port is not None else free_port()
        if workdir is None:
            self._tmp: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
                prefix=f"mqttbridge-{self.name}-"
            )
            self.workdir = Path(self._tmp.name)
        else:
            self._tmp = None
            self.workdir = Path(workdir)
            self.workdir.mkdir(parents=True, exist_ok=True)
        # stdout/stderr of the child: errors printed before the log file is opened land here.
        self.console_path = self.workdir / f"{self.name}.console"
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    # -- subclass hooks ------------------------------------------------------------------------

    @property
    @abstractmethod
    def log_path(self) -> Path: ...

    @abstractmethod
    def _command(self) -> list[str]: ...

    @abstractmethod
    def ping(self, timeout: float = 1.0) -> bool:
        """True if the service answers a protocol-level request within `timeout`."""

    def _prepare(self) -> None:
        """Ready the directory; subclasses extend it to write configuration before every start,
        since the port may have changed since the last one."""
        self.workdir.mkdir(parents=True, exist_ok=True)

    # -- addressing -----------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return LOCALHOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process exists, paused or not."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        """True while SIGSTOPped."""
        proc = self._proc
        return proc is not None and proc.poll() is None and _stopped(proc.pid)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Spawn the service and return once it answers `ping`; raise `ServiceStartError` if not.

        The first start on an auto-chosen port retries on a new port when another process grabbed
        the port between `free_port()` and the bind; later starts keep the port, since tests
        restart "on the same port" on purpose.
        """
        if self.running:
            raise ServiceStartError(f"{self.name} is already running as pid {self.pid}")
        attempts = 3 if self._port_was_chosen and self._starts == 0 else 1
        for attempt in range(attempts):
            try:
                self._spawn_and_wait(timeout)
            except ServiceStartError:
                if attempt == attempts - 1 or _port_in_use(self._port) is False:
                    raise
                self._port = free_port()
            else:
                self._starts += 1
                return

    def _spawn_and_wait(self, timeout: float) -> None:
        self._prepare()
        with open(self.console_path, "ab") as console:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                # Own session: a Ctrl-C aimed at pytest must not kill the broker before the
                # fixtures' teardown (and the atexit hook) get to stop it in order.
                start_new_session=True,
                user=self.run_as,
            )
        _live.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            returncode = self._proc.poll()
            if returncode is not None:
                self._proc = None
                raise ServiceStartError(
                    f"{self.name} exited with code {returncode} during startup on port "
                    f"{self._port}.\n{self.log_tail()}"
                )
            if self.ping(timeout=0.25):
                return
            time.sleep(0.02)
        self.kill()
        raise ServiceStartError(
            f"{self.name} did not answer on {LOCALHOST}:{self._port} within {timeout} s.\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """`stop_signal` (the service saves its state and exits), SIGKILL past `timeout`."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
                # A SIGSTOPped process only acts on SIGTERM once continued.
                proc.send_signal(signal.SIGCONT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing saved. Works on a paused process too."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()  # reap now, so the port is released before a restart binds it
        self._proc = None

    def restart(self, timeout: float = 10.0) -> None:
        """Graceful stop, then start on the same port."""
        self.stop()
        self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and the kernel still accepts new ones, nothing answers."""
        proc = self._require_running("pause")
        proc.send_signal(signal.SIGSTOP)
        # Signal delivery is asynchronous; wait so the caller's next step sees a stopped service.
        _wait_for(lambda: self.paused, timeout=2.0, what=f"{self.name} to stop")

    def resume(self) -> None:
        """SIGCONT: the service carries on with whatever queued up while it was paused."""
        proc = self._require_running("resume")
        proc.send_signal(signal.SIGCONT)
        _wait_for(lambda: not self.paused, timeout=2.0, what=f"{self.name} to continue")

    def _require_running(self, action: str) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"cannot {action} {self.name}: it is not running")
        return self._proc

    def close(self) -> None:
        """Stop the process and delete the private directory if this object created it."""
        self.stop()
        _live.discard(self)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` of the service log and of its console output, for failure messages."""
        parts = []
        for path in dict.fromkeys((self.log_path, self.console_path)):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if text.strip():
                tail = "\n".join(text.splitlines()[-lines:])
                parts.append(f"--- {path} (last {lines} lines) ---\n{tail}")
        return "\n".join(parts) or f"(no output from {self.name} in {self.workdir})"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} pid={self.pid} {state}>"


@dataclass(frozen=True)
class TlsListener:
    """A TLS listener's files; with ``require_certificate`` clients must present a certificate
    signed by ``cafile`` (mutual TLS)."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


class MosquittoProcess(_ManagedProcess):
    """A private Mosquitto 2.x broker on 127.0.0.1, with persistence in its own directory.

    `stop()` (SIGTERM) writes `mosquitto.db`, so persistent sessions and queued QoS>0 messages
    survive `restart()`; `kill()` loses everything since the last save, as a crash would.
    Call `save()` before `kill()` to model a crash after a checkpoint.

    With `tls=TlsListener(...)` it also listens with TLS on `tls_port` (`tls_url`); the plain
    listener stays, so `ping` and test clients keep working without certificates.
    """

    name = "mosquitto"
    binary_name = "mosquitto"
    package = "mosquitto"
    env_var = "MOSQUITTO_BIN"

    def __init__(
        self,
        port: int | None = None,
        workdir: str | os.PathLike[str] | None = None,
        binary: str | None = None,
        *,
        websockets: bool = False,
        autosave_interval: int = 0,
        extra_config: Sequence[str] = (),
        tls: TlsListener | None = None,
    ) -> None:
        super().__init__(port, workdir, binary)
        self.ws_port: int | None = free_port() if websockets else None
        self.tls = tls
        self.tls_port: int | None = free_port() if tls is not None else None
        self.autosave_interval = autosave_interval
        self.extra_config = list(extra_config)
        self.config_path = self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def db_path(self) -> Path:
        return self.workdir / "mosquitto.db"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        if self.ws_port is None:
            raise RuntimeError("this MosquittoProcess was created without websockets=True")
        return f"ws://{self.host}:{self.ws_port}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("this MosquittoProcess was created without tls=TlsListener(...)")
        return f"mqtts://{self.host}:{self.tls_port}"

    def config_text(self) -> str:
        lines = [
            # Run as whoever runs the tests: as root, Mosquitto would otherwise drop to the
            # "mosquitto" user, which cannot write persistence into our 0700 temp directory.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {self.port} {LOCALHOST}",
            "allow_anonymous true",
            "persistence true",
            # Trailing slash: Mosquitto concatenates it with the file name.
            f"persistence_location {self.workdir}/",
            # 0 = save only on exit or SIGUSR1, so tests decide what a crash loses.
            f"autosave_interval {self.autosave_interval}",
            # Throughput tests queue far more than the default 1000 per client; 0 = no
            # in-flight cap (man mosquitto.conf), so QoS 1/2 floods are not throttled to 20.
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_timestamp_format %H:%M:%S",
        ]
        if self.ws_port is not None:
            # Mosquitto 2.0.11 ignores the bind address on websockets listeners (binds *).
            lines += [f"listener {self.ws_port} {LOCALHOST}", "protocol websockets"]
        if self.tls is not None:
            # Listener options apply to the listener line above them.
            lines += [
                f"listener {self.tls_port} {LOCALHOST}",
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                f"require_certificate {str(self.tls.require_certificate).lower()}",
            ]
        lines += self.extra_config
        return "\n".join(lines) + "\n"

    def _prepare(self) -> None:
        super()._prepare()
        self.config_path.write_text(self.config_text())

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def ping(self, timeout: float = 1.0) -> bool:
        return mqtt_ping(self.host, self.port, timeout)

    def save(self, timeout: float = 5.0) -> None:
        """Force a persistence save (SIGUSR1) and wait until the database file is rewritten."""
        proc = self._require_running("save")
        before = self.db_path.stat().st_mtime_ns if self.db_path.exists() else None
        proc.send_signal(signal.SIGUSR1)
        _wait_for(
            lambda: self.db_path.exists() and self.db_path.stat().st_mtime_ns != before,
            timeout=timeout,
            what=f"{self.db_path} to be written",
        )


class RedisProcess(_ManagedProcess):
    """A private, non-persistent redis-server on 127.0.0.1 (nothing survives a restart)."""

    name = "redis"
    binary_name = "redis-server"
    package = "redis-server"
    env_var = "REDIS_SERVER_BIN"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", LOCALHOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
        ]  # fmt: skip

    def ping(self, timeout: float = 1.0) -> bool:
        return redis_ping(self.host, self.port, timeout)


def _stopped(pid: int) -> bool:
    try:
        status = psutil.Process(pid).status()
    except psutil.Error:  # gone, or not ours to read
        return False
    return status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)


def _port_in_use(port: int) -> bool | None:
    """Whether something else holds `port` (True), it is free (False), or it is unclear (None)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOCALHOST, port))
        except OSError as exc:
            return True if exc.errno == errno.EADDRINUSE else None
    return False


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)
