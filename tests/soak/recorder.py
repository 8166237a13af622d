"""The soak's consumer: ``tests.apps.DurableRecorder`` without its delay, with a timestamp.

Each handled message becomes one line ``topic payload dup monotonic`` in $MQTTBRIDGE_TEST_RECORD,
written with one ``os.write`` on an ``O_APPEND`` descriptor before the handler returns, so before
the bridge may acknowledge it: a line in the file is a message handled, whatever kills the
bridge afterwards. The timestamp (CLOCK_MONOTONIC, comparable with the parent's
``time.monotonic()``) gives each fault its time to recover.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tests.apps import DurableRecorder

__all__ = ["SoakRecorder"]


class SoakRecorder(DurableRecorder):
    """DurableRecorder at full speed: no 20 ms sleep, the file write is the whole handler."""

    delay = 0.0

    async def receive(self, message: dict[str, Any]) -> None:
        line = (
            f"{message['topic']} {message['payload'].decode()} {int(message['dup'])}"
            f" {time.monotonic():.6f}\n"
        )
        os.write(self.fd, line.encode())
