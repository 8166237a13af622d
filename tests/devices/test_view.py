"""What a person sees: the live table on a terminal, a plain log in a pipe."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from tests.services import MosquittoProcess

ARGS = ("--devices", "5", "--rate", "2", "--duration", "3", "--profile", "tasmota")


def _simulate_on_a_terminal(broker: MosquittoProcess) -> str:
    """Run the CLI with a pseudo-terminal as its stdout and stderr, as a person's shell does."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqttbridge", "simulate", "--broker", broker.url, *ARGS],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "xterm"},
    )
    os.close(slave)
    screen = bytearray()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(10) == 0, screen.decode(errors="replace")
    return screen.decode(errors="replace")


def test_a_terminal_gets_the_live_table(mosquitto: MosquittoProcess) -> None:
    screen = _simulate_on_a_terminal(mosquitto)
    assert "mqttbridge simulate" in screen
    for label in ("connected", "telemetry", "commands handled", "reconnects", "errors"):
        assert label in screen, screen
    assert "5 / 5" in screen, screen  # every device connected, drawn in the table
    assert "┌" in screen and "│" in screen  # a drawn table, not log lines


def test_a_pipe_gets_log_lines_not_a_table(mosquitto: MosquittoProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mqttbridge", "simulate", "--broker", mosquitto.url, *ARGS],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "simulating 5 devices" in result.stderr
    assert "┌" not in result.stderr + result.stdout
