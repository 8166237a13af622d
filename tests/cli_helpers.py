"""The ``mqttbridge`` command as tests drive it: in-process (``run_cli``) or as a real
subprocess with its log collected (``BridgeProcess``)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from mqttbridge.cli.main import CommandLineInterface

ROOT = Path(__file__).resolve().parent.parent  # the repository


def run_cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    cli = CommandLineInterface(stdout=out, stderr=err, stdin=io.StringIO(stdin))
    status = cli.run(list(argv))
    return status, out.getvalue(), err.getvalue()


class BridgeProcess:
    """``python -m mqttbridge run`` as a subprocess, with its log lines collected."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mqttbridge", "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged; output:\n{''.join(self.lines)}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
