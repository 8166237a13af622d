"""The record the bridge publishes to the dead-letter topic (docs/guarantees.md).

A JSON object: ``topic`` (None if it was not valid UTF-8), ``error``, ``consumer``, ``time``,
and the payload as ``payload`` (UTF-8 text) or ``payload_base64``; ``payload_size`` when the
payload is left out, with ``payload_omitted`` when it was left out to stay within the limit.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

__all__ = ["dead_letter_record"]


def dead_letter_record(
    topic: str | None,
    payload: bytes | None,
    error: str,
    *,
    consumer: str | None,
    payload_size: int | None,
    max_bytes: int,
) -> bytes:
    record: dict[str, Any] = {
        "topic": topic,
        "error": error,
        "consumer": consumer,
        "time": time.time(),
    }
    if payload is not None:
        try:
            record["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:
            record["payload_base64"] = base64.b64encode(payload).decode("ascii")
    if payload_size is not None:
        record["payload_size"] = payload_size
    data = json.dumps(record).encode()
    if len(data) > max_bytes and payload is not None:
        # Keep the record within the payload limit; say what was left out.
        record.pop("payload", None)
        record.pop("payload_base64", None)
        record["payload_size"] = len(payload)
        record["payload_omitted"] = True
        data = json.dumps(record).encode()
    return data
