"""The pages' live feed: readings batched per process, so that a page's cost does not grow
with the fleet's message rate.

Each reading used to be one channel-layer message to each open page. A page's WebSocket
consumer handles its messages one at a time, and each costs a trip through the layer, a
handler call and a WebSocket frame (a syscall), whatever its size: at 1,000 readings/s over
100 devices the page's channel filled up, readings came seconds late, and the layer dropped
most of them (docs/benchmarks.md). Now the telemetry consumers hand their readings to
:data:`feed`, which sends them to the ``dashboard`` group as one ``device.readings`` event at
most every ``interval`` (20 ms): a page gets at most 50 messages a second from each bridge
process, however many devices publish, and a reading waits at most ``interval`` for its batch.
The first reading after a quiet spell goes at once.

Readings go to ``dashboard``, which every page joins before its socket opens, rather than to
``device.<id>``: a new device's first readings reach the pages too (a page joins a device's
group only once it hears of the device), and the device's own MQTT instance, which listens on
``device.<id>`` for commands, does not receive and drop every reading.

With several processes on the Redis layer each process batches its own devices' readings and
flushes them to the same group: a page gets one message per process per interval.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import BaseChannelLayer, get_channel_layer

from . import events

logger = logging.getLogger(__name__)

__all__ = ["LiveFeed", "feed"]


class LiveFeed:
    """Readings for the pages, sent to ``group`` in batches of whatever arrived meanwhile.

    :meth:`add` never waits: the live view must not hold up a reading's storage, nor its
    storage the view (the QoS 1 acknowledgement waits for the commit; the page does not).
    """

    def __init__(
        self,
        group: str = events.DASHBOARD,
        interval: float = 0.02,
        layer: BaseChannelLayer | None = None,  # default: the project's, when first needed
    ) -> None:
        self.group = group
        self.interval = interval
        self.layer = layer
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, reading: dict[str, Any]) -> None:
        """Queue one reading (``events.reading``) for the next batch."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): the old one's task is gone
            self._loop, self._task, self._pending = loop, None, []
        self._pending.append(reading)
        if self._task is None:
            self._task = loop.create_task(self._flush(), name="telemetry live feed")

    async def _flush(self) -> None:
        # Leading edge, then at most once per interval while readings keep coming.
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    layer = self.layer or get_channel_layer()
                    await layer.group_send(self.group, events.readings_event(batch))
                except Exception:  # a view's hiccup must not stop the feed (nor storage)
                    logger.exception("live feed: %d readings not sent to the pages", len(batch))
                await asyncio.sleep(self.interval)
        finally:
            self._task = None


# One per process: every TelemetryConsumer instance of this process adds to it.
feed = LiveFeed()
