"""Readings are stored in batches: one ``bulk_create`` per transaction for every device's
readings that arrived meanwhile, written in Django's ORM thread, never on the event loop.
``await readings.save(reading)`` returns once the row is committed, so the device's QoS 1
message is acknowledged only after its reading is stored.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction

from .models import Reading


# TEMPORARY stand-in for mqttbridge.django.batch.BatchWriter (branch i-batch), same API; no
# retry while the database is down. When it lands, this class goes and this line comes:
#     from mqttbridge.django.batch import BatchWriter
class BatchWriter:
    def __init__(self, model: Any, *, max_batch: int = 500, max_delay: float = 0.05) -> None:
        self.model, self.max_batch, self.max_delay = model, max_batch, max_delay
        self._queue: list[tuple[Any, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def save(self, obj: Any) -> Any:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        assert self._wake is not None
        done = asyncio.get_running_loop().create_future()
        self._queue.append((obj, done))
        self._wake.set()
        await done
        return obj

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            deadline = time.monotonic() + self.max_delay
            while len(self._queue) < self.max_batch and time.monotonic() < deadline:
                await asyncio.sleep(min(0.005, self.max_delay))
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            if not self._queue:
                self._wake.clear()
            try:
                await self._write([obj for obj, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    @database_sync_to_async
    def _write(self, objs: list[Any]) -> None:
        with transaction.atomic():
            self.model.objects.bulk_create(objs)


readings = BatchWriter(Reading, max_batch=500, max_delay=0.05)
