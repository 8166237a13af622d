"""Ordered acknowledgements: PUBACK/PUBCOMP go out in the order the PUBLISHes arrived.

A QoS 1/2 message may be queued for several instances (its route's and those holding a
matching ``mqtt.sub``); each holds it until its handler returns. The message is handled when
the last hold is released, and acknowledged once every message before it is handled too
(MQTT 3.1.1 4.6, MQTT 5 4.6; docs/guarantees.md).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

__all__ = ["AckToken", "AckTracker"]


class AckToken:
    """One received QoS 1/2 message; only its ``AckTracker`` changes it."""

    __slots__ = ("generation", "handled", "holds", "mid", "qos")

    def __init__(self, mid: int, qos: int, generation: int) -> None:
        self.mid = mid
        self.qos = qos
        self.generation = generation
        self.holds = 0
        self.handled = False

    def __repr__(self) -> str:
        return f"<AckToken mid={self.mid} qos={self.qos} holds={self.holds}>"


class AckTracker:
    """Counts who holds each received message and sends its acknowledgement in turn."""

    def __init__(self, send_ack: Callable[[int, int], None]) -> None:
        self._send_ack = send_ack
        self._pending: collections.deque[AckToken] = collections.deque()
        self._generation = 0

    def track(self, mid: int, qos: int) -> AckToken:
        """A message arrived: it is acknowledged after those before it."""
        token = AckToken(mid, qos, self._generation)
        self._pending.append(token)
        return token

    def hold(self, token: AckToken) -> None:
        """An instance queued the message: not handled until it releases it."""
        token.holds += 1

    def release(self, token: AckToken) -> None:
        """An instance is done with the message (handled it, or handed it on)."""
        token.holds -= 1
        if token.holds > 0:
            return
        token.handled = True
        pending = self._pending
        while pending and pending[0].handled:
            done = pending.popleft()
            if done.generation == self._generation:
                self._send_ack(done.mid, done.qos)

    def settle(self, token: AckToken) -> None:
        """Dispatch is over: a message no instance holds (unrouted, rejected) is handled now."""
        if token.holds == 0:
            token.holds = 1
            self.release(token)

    def connection_lost(self) -> None:
        """Message ids belong to the connection: the broker redelivers what was not acked."""
        self._generation += 1
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)
