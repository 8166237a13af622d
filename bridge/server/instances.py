"""Application instances: the hand-off between the bridge and one consumer, and how it ended.

An instance is one running ASGI application (one consumer object) with its own inbound queue,
like daphne's per-connection instances and asgiref's ``StatelessServer``. Its ``receive`` is the
whole hand-off: a deque and, only when the queue is empty, one future. No ``asyncio.Queue``, no
task per message, no ``asyncio.wait``.

As daphne hands each instance ``receive=queue.get, send=partial(handle_reply, protocol)`` and
nothing more, an instance knows three callbacks and nothing of the server: ``release`` (it is
done with a message: acknowledgements), ``drained`` (it caught up after holding reads back:
backpressure) and ``send`` (what the application sends: the outbound side).

Acknowledgement after handling falls out of the ASGI contract: a consumer asks for its next
event only once its handler for the previous one has returned, so when ``receive()`` is called
again, the previous message is handled and its PUBACK may go out.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import time
from collections.abc import Callable
from typing import Any

from mqttbridge.protocol.events import LayerEventFailed
from mqttbridge.server.acks import AckToken

__all__ = ["Ending", "Instance", "classify_ending"]

Item = tuple[dict[str, Any], AckToken | None]


class Ending(enum.Enum):
    """How an instance's application call ended; decides what becomes of its messages."""

    #: It returned: ``mqtt.disconnect`` handled, or ``StopConsumer`` from a layer handler.
    RETURNED = "returned"
    #: Cut off mid-handler (shutdown timeout, second signal): its message is not handled.
    CANCELLED = "cancelled"
    #: Raised handling an ``mqtt.msg``: that message is dead-lettered (a poison message).
    CRASHED_ON_MESSAGE = "crashed on a message"
    #: A channel-layer handler raised: no MQTT message is to blame.
    CRASHED_ON_LAYER_EVENT = "crashed on a layer event"
    #: Raised starting (``connect()``, joining groups) or closing: a fresh instance would fail
    #: the same way, so its queued messages are dead-lettered rather than retried in a loop.
    CRASHED_OUTSIDE_MESSAGE = "crashed outside a message"

    @property
    def crashed(self) -> bool:
        return self not in (Ending.RETURNED, Ending.CANCELLED)

    @property
    def retries_queued(self) -> bool:
        """Whether messages queued behind the end go to a fresh instance."""
        return self is not Ending.CRASHED_OUTSIDE_MESSAGE


def classify_ending(error: BaseException | None, cancelled: bool, current: Item | None) -> Ending:
    """Decide, once, how an instance ended from what its task raised and what it handled."""
    if cancelled:
        return Ending.CANCELLED
    if error is None:
        return Ending.RETURNED
    if isinstance(error, LayerEventFailed):
        return Ending.CRASHED_ON_LAYER_EVENT
    if current is not None and current[0]["type"] == "mqtt.msg":
        return Ending.CRASHED_ON_MESSAGE
    return Ending.CRASHED_OUTSIDE_MESSAGE


class Instance:
    """One application instance: its task, its inbound queue and what it is handling now."""

    __slots__ = (
        "_drained",
        "_release",
        "_send",
        "app_id",
        "closing",
        "current",
        "items",
        "key",
        "label",
        "last_used",
        "loop",
        "paused",
        "scope",
        "subscriptions",
        "task",
        "waiter",
    )

    def __init__(
        self,
        key: Any,
        label: str,
        scope: dict[str, Any],
        *,
        release: Callable[[AckToken], None],
        drained: Callable[[Instance], None],
        send: Callable[[Instance, dict[str, Any]], None],
    ) -> None:
        self.key = key
        self.label = label
        self.scope = scope
        self.app_id = scope.get("app_id")
        self._release = release
        self._drained = drained
        self._send = send
        self.loop = asyncio.get_running_loop()
        self.items: collections.deque[Item] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.current: Item | None = None
        self.task: asyncio.Task[None] | None = None
        self.last_used = time.monotonic()
        self.closing = False
        #: Set while its full queue holds reads from the broker back (see ``drained``).
        self.paused = False
        self.subscriptions: set[str] = set()

    def put(self, event: dict[str, Any], token: AckToken | None) -> None:
        """Queue an event; the caller holds ``token`` for this instance (``AckTracker.hold``)."""
        self.items.append((event, token))
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def finish_current(self) -> Item | None:
        """Mark the event being handled as handled; return it."""
        item = self.current
        if item is not None:
            self.current = None
            token = item[1]
            if token is not None:
                self._release(token)
        return item

    def take_queued_messages(self) -> list[Item]:
        """Empty the queue (the instance ended); return the MQTT messages it held."""
        leftovers = [item for item in self.items if item[0]["type"] == "mqtt.msg"]
        self.items.clear()
        return leftovers

    async def receive(self) -> dict[str, Any]:
        item = self.current
        if item is not None:  # finish_current(), inlined: once per message
            self.current = None
            if item[1] is not None:
                self._release(item[1])
        items = self.items
        while not items:
            self.waiter = self.loop.create_future()
            await self.waiter
        item = items.popleft()
        self.current = item
        if self.paused:
            self._drained(self)
        return item[0]

    async def send(self, event: dict[str, Any]) -> None:
        self._send(self, event)

    def idle(self) -> bool:
        return not self.items and self.current is None

    def __repr__(self) -> str:
        return f"<Instance {self.label} {self.key!r}>"
