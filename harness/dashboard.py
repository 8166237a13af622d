"""The example project ``examples/dashboard`` run the way its README tells a user to, for the
browser tests, the screenshot and the browser benchmark:

    cd examples/dashboard
    python manage.py migrate
    mqttbridge run --asgi dashboard.asgi:application --http 127.0.0.1:PORT --broker URL

with two differences a test needs: the database is a file in a private directory (through
``DATABASE_URL``, which the project reads), and the broker and the HTTP port are given, so
that independent MQTT clients and a browser can reach the same process.

    with DashboardProcess(workdir, broker_url="mqtt://127.0.0.1:1884") as dashboard:
        page.goto(dashboard.url)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from harness.children import ROOT
from harness.processes import free_port

__all__ = [
    "ASGI",
    "DASHBOARD_DIR",
    "MQTTBRIDGE",
    "DashboardError",
    "DashboardProcess",
    "SimulatedDevices",
]

DASHBOARD_DIR = ROOT / "examples" / "dashboard"
ASGI = "dashboard.asgi:application"
# The console script a user runs, from the same environment as this interpreter.
MQTTBRIDGE = str(Path(sys.executable).with_name("mqttbridge"))
# The devices the dashboard is made for (docs/simulator.md): readings, birth, will, commands.
GENERIC_PROFILE = ROOT / "devices" / "profiles" / "generic.yaml"
# Logged by `mqttbridge run` once subscribed, and once uvicorn listens (bridge/server/).
_READY = ("bridge ready", "serving HTTP and WebSocket on")


class DashboardError(RuntimeError):
    """The dashboard did not start (or exited); the message carries its log tail."""


def _user_env(**extra: str) -> dict[str, str]:
    """A user's shell: no settings module or PYTHONPATH leaking in from the test run."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH") and not key.startswith("PYTEST")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class DashboardProcess:
    """``mqttbridge run --asgi dashboard.asgi:application --http`` in ``examples/dashboard``."""

    def __init__(
        self,
        workdir: Path,
        broker_url: str,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker_url = broker_url
        self.port = port or free_port()
        self.log_path = workdir / "dashboard.log"
        self.database = workdir / "db.sqlite3"
        self.database_url = f"sqlite:///{self.database}"
        self.env = _user_env(DATABASE_URL=self.database_url, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise DashboardError("the dashboard is not running")
        return self.proc.pid

    def migrate(self) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"],
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
        command = [
            MQTTBRIDGE,
            "run",
            "--asgi",
            ASGI,
            "--http",
            f"127.0.0.1:{self.port}",
            "--broker",
            self.broker_url,
            # start() waits for INFO lines; the page's traffic logs little at that level.
            "--log-level",
            "info",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=DASHBOARD_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
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

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        tail = "\n".join(self.log().strip().splitlines()[-lines:]) or "(no output)"
        return f"--- {self.log_path} (last {lines} lines) ---\n{tail}"

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (the bridge drains), SIGKILL after ``timeout``; the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SimulatedDevices:
    """``mqttbridge simulate --profile generic`` as a user runs it beside the dashboard, with
    ids ``<prefix>-0``, ``<prefix>-1``...; :meth:`kill` is a device losing power (SIGKILL: no
    DISCONNECT, so the broker publishes each device's last will, ``offline``)."""

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
        profile = workdir / f"{prefix}.yaml"
        text = GENERIC_PROFILE.read_text()
        if 'id: "sensor-{index}"' not in text:
            raise DashboardError(f"{GENERIC_PROFILE}: no id line to give the devices a prefix")
        profile.write_text(text.replace('id: "sensor-{index}"', f'id: "{prefix}-{{index}}"'))
        self.ids = [f"{prefix}-{index}" for index in range(devices)]
        self.log_path = workdir / f"{prefix}.log"
        command = [MQTTBRIDGE, "simulate", "--broker", broker_url, "--profile", str(profile)]
        command += ["--devices", str(devices), "--plain", *extra]
        if rate is not None:
            command += ["--rate", str(rate)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=workdir,
                env=_user_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
