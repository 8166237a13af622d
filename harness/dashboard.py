"""The example project ``examples/dashboard`` run the way its README tells a user to, for the
browser tests, the screenshot and the browser benchmark:

    cd examples/dashboard
    python manage.py migrate
    python manage.py mqttbridge run --http 127.0.0.1:PORT

with what a test needs on top: the database is a file in a private directory
(``DATABASE_URL``), the broker is the one given (``DASHBOARD_BROKER``, which the project's
``settings.MQTTBRIDGE`` reads), and HTTP is on a free port, so that independent MQTT clients and
a browser reach the same process.

    with DashboardProcess(workdir, broker_url="mqtt://127.0.0.1:1884") as dashboard:
        page.goto(dashboard.url)

``standalone=True`` runs ``mqttbridge run --asgi dashboard.asgi:application --http ...``
instead, which the README says does the same; ``database_url`` selects another database
(PostgreSQL). tests/dashboard_project.py adds the clients the tests drive it with (HTTP,
WebSocket, MQTT devices); this module is in ``harness`` because the benchmarks, which never
import tests, need it too.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from harness.children import ROOT, clean_env
from harness.processes import free_port

__all__ = [
    "DASHBOARD_DIR",
    "MQTTBRIDGE",
    "DashboardError",
    "DashboardProcess",
    "SimulatedDevices",
]

DASHBOARD_DIR = ROOT / "examples" / "dashboard"
# The console script a user runs, from the same environment as this interpreter.
MQTTBRIDGE = str(Path(sys.executable).with_name("mqttbridge"))
# The devices the dashboard is made for (docs/simulator.md): readings, birth, will, commands.
GENERIC_PROFILE = ROOT / "devices" / "profiles" / "generic.yaml"
# Logged by `mqttbridge run` once subscribed, and once uvicorn listens (bridge/server/).
_READY = ("bridge ready", "serving HTTP and WebSocket on")
ASGI_APPLICATION = "dashboard.asgi:application"


class DashboardError(RuntimeError):
    """The dashboard did not start (or exited); the message carries its log tail."""


class _Command:
    """A command a user would type, run in ``cwd`` with its output in ``log_path``; stopped
    with ``stop_signal`` (what Ctrl-C or a service manager sends), killed if it lingers."""

    stop_signal = signal.SIGTERM

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise DashboardError(f"not running: {self.log_path.stem}")
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Return once ``text`` is in the log; :class:`DashboardError` if the command exits or
        ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.proc is not None and self.proc.poll() is not None:
                raise DashboardError(f"exited before logging {text!r}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise DashboardError(f"{text!r} not logged in {timeout:g} s\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        tail = "\n".join(self.log().strip().splitlines()[-lines:]) or "(no output)"
        return f"--- {self.log_path} (last {lines} lines) ---\n{tail}"

    def wait(self, timeout: float) -> int:
        """The exit code once the command ends by itself (``TimeoutExpired`` if it does not)."""
        if self.proc is None:
            raise DashboardError(f"not started: {self.log_path.stem}")
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone (a device losing power, a crashed process)."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            proc.wait()

    def stop(self, timeout: float = 15.0) -> int | None:
        """``stop_signal``, then SIGKILL after ``timeout``; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class DashboardProcess(_Command):
    """``python manage.py mqttbridge run --http`` in ``examples/dashboard`` (with
    ``standalone``: ``mqttbridge run --asgi ...``); started by :meth:`start` or by entering the
    ``with`` block. The database is ``database_url``, by default SQLite in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        broker_url: str,
        *,
        database_url: str | None = None,
        standalone: bool = False,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "dashboard.log")
        self.broker_url = broker_url
        self.standalone = standalone
        self.port = port or free_port()
        self.database = workdir / "db.sqlite3"  # when database_url is not given
        self.database_url = database_url or f"sqlite:///{self.database}"
        self.env = clean_env(
            DATABASE_URL=self.database_url, DASHBOARD_BROKER=broker_url, **(env or {})
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def migrate(self) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=DASHBOARD_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode:
            raise DashboardError(f"manage.py migrate failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout: float = 60.0) -> None:
        """Migrate, start, and return once the bridge is subscribed and HTTP answers."""
        self.migrate()
        listen = f"127.0.0.1:{self.port}"
        # start() waits for INFO lines; the page's traffic logs little at that level.
        if self.standalone:
            command = [MQTTBRIDGE, "run", "--asgi", ASGI_APPLICATION, "--http", listen]
        else:
            command = [sys.executable, "manage.py", "mqttbridge", "run", "--http", listen]
        self._spawn([*command, "--log-level", "info"], DASHBOARD_DIR, self.env)
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not (all(text in self.log() for text in _READY) and self._answers()):
            if self.proc.poll() is not None:
                raise DashboardError(
                    f"the dashboard exited with code {self.proc.returncode}\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise DashboardError(f"the dashboard not ready in {timeout:g} s\n{self.log_tail()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def __enter__(self) -> Self:
        self.start()
        return self


class SimulatedDevices(_Command):
    """``mqttbridge simulate --profile generic`` as a user runs it beside the dashboard, with
    ids ``<prefix>-0``, ``<prefix>-1``...; :meth:`kill` is the devices losing power (no
    DISCONNECT, so the broker publishes each one's last will, ``offline``)."""

    stop_signal = signal.SIGINT  # Ctrl-C: the simulator stops its fleet and prints a summary

    def __init__(
        self,
        workdir: Path,
        broker_url: str,
        *,
        devices: int = 1,
        rate: float | None = None,
        prefix: str = "sensor",
        extra: tuple[str, ...] = (),
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / f"{prefix}.log")
        profile = workdir / f"{prefix}.yaml"
        text = GENERIC_PROFILE.read_text()
        if 'id: "sensor-{index}"' not in text:
            raise DashboardError(f"{GENERIC_PROFILE}: no id line to give the devices a prefix")
        profile.write_text(text.replace('id: "sensor-{index}"', f'id: "{prefix}-{{index}}"'))
        self.ids = [f"{prefix}-{index}" for index in range(devices)]
        command = [MQTTBRIDGE, "simulate", "--broker", broker_url, "--profile", str(profile)]
        command += ["--devices", str(devices), "--plain", *extra]
        if rate is not None:
            command += ["--rate", str(rate)]
        self._spawn(command, workdir, clean_env())
