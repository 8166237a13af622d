"""Application instances and acknowledgements: the per-message path between paho and a consumer.

An instance is one running ASGI application (one consumer object) with its own inbound queue,
like daphne's per-connection instances and asgiref's ``StatelessServer``. Its ``receive`` is the
whole hand-off: a deque and, only when the queue is empty, one future. No ``asyncio.Queue``, no
task per message, no ``asyncio.wait``.

Acknowledgement after handling falls out of the ASGI contract: a consumer asks for its next
event only once its handler for the previous one has returned, so when ``receive()`` is called
again, the previous message is handled and its PUBACK may go out.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqttbridge.server.server import Server

__all__ = ["AckToken", "AckTracker", "Instance"]


class AckToken:
    """One received QoS 1/2 message, acknowledged once every instance it went to handled it."""

    __slots__ = ("generation", "handled", "mid", "qos", "remaining")

    def __init__(self, mid: int, qos: int, generation: int) -> None:
        self.mid = mid
        self.qos = qos
        self.generation = generation
        self.remaining = 0
        self.handled = False


class AckTracker:
    """Sends PUBACK/PUBCOMP in the order the PUBLISHes arrived (MQTT 3.1.1 4.6, MQTT 5 4.6)."""

    def __init__(self, send_ack: Callable[[int, int], None]) -> None:
        self._send_ack = send_ack
        self._pending: collections.deque[AckToken] = collections.deque()
        self._generation = 0

    def track(self, mid: int, qos: int) -> AckToken:
        token = AckToken(mid, qos, self._generation)
        self._pending.append(token)
        return token

    def settle(self, token: AckToken) -> None:
        """A message no instance holds (unrouted, rejected) is handled now; ack in turn."""
        if token.remaining == 0:
            token.remaining = 1
            self.release(token)

    def release(self, token: AckToken) -> None:
        token.remaining -= 1
        if token.remaining > 0:
            return
        token.handled = True
        pending = self._pending
        while pending and pending[0].handled:
            done = pending.popleft()
            if done.generation == self._generation:
                self._send_ack(done.mid, done.qos)

    def connection_lost(self) -> None:
        """Message ids belong to the connection: the broker redelivers what was not acked."""
        self._generation += 1
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)


_Item = tuple[dict[str, Any], AckToken | None]


class Instance:
    """One application instance: its task, its inbound queue and what it is handling now."""

    __slots__ = (
        "app_id",
        "closing",
        "current",
        "items",
        "key",
        "label",
        "last_used",
        "loop",
        "scope",
        "server",
        "subscriptions",
        "task",
        "waiter",
    )

    def __init__(self, server: Server, key: Any, label: str, scope: dict[str, Any]) -> None:
        self.server = server
        self.key = key
        self.label = label
        self.scope = scope
        self.app_id = scope.get("app_id")
        self.loop = asyncio.get_running_loop()
        self.items: collections.deque[_Item] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.current: _Item | None = None
        self.task: asyncio.Task[None] | None = None
        self.last_used = time.monotonic()
        self.closing = False
        self.subscriptions: set[str] = set()

    def put(self, event: dict[str, Any], token: AckToken | None) -> None:
        if token is not None:
            token.remaining += 1
        self.items.append((event, token))
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def finish_current(self) -> _Item | None:
        """Mark the event being handled as handled; return it."""
        item = self.current
        if item is not None:
            self.current = None
            token = item[1]
            if token is not None:
                self.server.acks.release(token)
        return item

    async def receive(self) -> dict[str, Any]:
        if self.current is not None:
            self.finish_current()
        items = self.items
        while not items:
            self.waiter = self.loop.create_future()
            await self.waiter
        item = items.popleft()
        self.current = item
        if self.server.paused_by and self in self.server.paused_by:
            self.server.queue_drained(self)
        return item[0]

    async def send(self, event: dict[str, Any]) -> None:
        self.server.handle_send(self, event)

    def idle(self) -> bool:
        return not self.items and self.current is None

    def __repr__(self) -> str:
        return f"<Instance {self.label} {self.key!r}>"
