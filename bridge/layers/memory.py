"""The in-memory channel layer, tuned for a bridge that holds thousands of consumer instances.

The Redis one is in bridge/layers/redis.py, so that memory:// never imports channels_redis.

Channels' ``InMemoryChannelLayer`` sweeps every channel and group membership for expiry on each
``receive()`` and ``group_send()``. Every consumer instance waits on its own channel, so with N
devices starting an instance costs O(N) and a group_send per message costs O(N): 10,000 devices
took minutes to come up. This subclass sweeps at most once per second; expiry is measured in
minutes (``expiry=60``, ``group_expiry=86400``), so nothing observable changes.
"""

from __future__ import annotations

import time

from channels.layers import InMemoryChannelLayer as _ChannelsInMemoryChannelLayer

__all__ = ["InMemoryChannelLayer"]


class InMemoryChannelLayer(_ChannelsInMemoryChannelLayer):  # type: ignore[misc]
    clean_interval = 1.0
    _last_clean = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_clean < self.clean_interval:
            return
        self._last_clean = now
        super()._clean_expired()
