"""What a child says to its parent (``harness.children.Child``): one JSON object per line on
stdout. Kept apart from ``children`` so that a child under measurement (a bridge whose memory
is read) imports nothing but ``json`` and ``sys`` for it."""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["emit"]


def emit(event: str, **fields: Any) -> None:
    """Report ``event`` to the parent process (flushed at once: the parent is waiting)."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()
