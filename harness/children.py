"""Child processes that report in JSON lines, with deadlines on everything and no leftovers.

    with Child("bridge", "bench.bridge_runner", ["--port", "1234"], logdir) as bridge:
        ready = bridge.expect("ready", timeout=30)
        ...

``expect`` raises :class:`ChildError` with the child's log tail when the event does not come
in time or the child dies first; leaving the ``with`` block sends SIGTERM, then SIGKILL.
A child reports with ``harness.events.emit``: one JSON object per line on stdout; anything else
it prints (logging) goes to stderr, which is kept in a log file for failure messages.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["ROOT", "Child", "ChildError", "clean_env"]

ROOT = Path(__file__).resolve().parent.parent

_live: set[Child] = set()


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell, for commands run as a user runs them: no Django
    settings module, nothing on PYTHONPATH, nothing of the test run's."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH") and not key.startswith("PYTEST")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ChildError(RuntimeError):
    """A child did not report what was expected; the message says which process and why."""


@atexit.register
def _kill_leftovers() -> None:
    for child in list(_live):
        child.kill()


class Child:
    """``python -m <module> <args>`` with stdout read as JSON lines and stderr kept in a log."""

    def __init__(self, name: str, module: str, args: Sequence[str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                env=env,
                # Own process group: a Ctrl-C reaches only the parent, which stops us in order.
                start_new_session=True,
            )
        _live.add(self)
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                self.events.put(json.loads(line))
        self.events.put(None)  # end of output: the process is exiting

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next report of type ``event`` (others are skipped), within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = self.events.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise ChildError(
                    f"{self.name}: no {event!r} within {timeout:g} s\n{self.log_tail()}"
                ) from None
            if message is None:
                self.events.put(None)
                code = self.proc.wait()
                raise ChildError(
                    f"{self.name} exited with code {code} before {event!r}\n{self.log_tail()}"
                )
            if message.get("event") == "error":
                raise ChildError(f"{self.name}: {message.get('message')}\n{self.log_tail()}")
            if message.get("event") == event:
                return message

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ChildError(
                f"{self.name} still running after {timeout:g} s\n{self.log_tail()}"
            ) from None

    def stop(self, timeout: float = 15.0, *, grace: float = 0.0) -> None:
        """Wait ``grace`` seconds for the process to exit by itself; then SIGTERM (the bridge
        shuts down gracefully), and SIGKILL after ``timeout``."""
        if grace:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        _live.discard(self)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
        _live.discard(self)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except FileNotFoundError:
            text = ""
        tail = "\n".join(text.splitlines()[-lines:]) or "(no output)"
        return f"--- {self.log_path} (last {lines} lines) ---\n{tail}"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __hash__(self) -> int:
        return id(self)
