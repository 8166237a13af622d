"""Store model instances in batches from async consumers: ``await writer.save(obj)`` returns
once the row is committed, so an MQTT message is acknowledged only after its row is stored.

    readings = BatchWriter(Reading, max_batch=500, max_delay=0.05)

    class Telemetry(JsonMqttConsumer):
        async def receive_json(self, content, message):
            await readings.save(Reading(device=self.topic_kwargs["device_id"], ...))

One background task per writer (started by the first ``save()``) collects the objects of every
consumer instance and writes them with one ``bulk_create`` inside ``transaction.atomic()`` per
batch, in Django's ORM thread through ``channels.db.database_sync_to_async``, never on the event
loop. A batch goes when it holds ``max_batch`` objects, when its oldest has waited ``max_delay``,
or as soon as no more objects are coming (the handlers that had one to give are all waiting);
objects that arrive while a batch is written make the next one, so batches grow with the load.
For async consumers only: a ``SyncMqttConsumer`` handler runs in the ORM thread the writer needs.

What happens when a write fails (docs/django.md, "Store readings in batches"):

* **The database is unreachable** (``OperationalError``, ``InterfaceError``: stopped, restarting,
  connection refused, SQLite locked): the batch is kept and retried with exponential back-off and
  jitter; one WARNING when the outage starts, one INFO when it ends. ``save()`` keeps waiting, so
  the message stays unacknowledged; past ``max_pending`` waiting objects new ``save()`` calls
  wait too (backpressure up to the broker).
* **A row is bad** (``IntegrityError``, ``DataError``): the batch is written again row by row;
  the good rows are stored, and the bad row's ``save()`` raises ``RowRejected``, an
  ``InvalidPayload``, so the consumer dead-letters that one message and keeps going.
* **Anything else** (``ProgrammingError``, a bug): the same row by row; a failing row's ``save()``
  raises that exception, which takes the consumer's handler error path (logged, dead-lettered).

Why not Django's async ORM (``await Reading.objects.abulk_create(...)``): it is
``sync_to_async(bulk_create)`` and nothing more. ``transaction.atomic`` cannot span awaits, so
the insert and its transaction must be one synchronous call anyway; and it does not call
``close_old_connections()``, so after a database restart the ORM thread keeps its broken
connection and every later call fails. ``database_sync_to_async`` closes unusable connections
around each call; that is what makes an outage survivable.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from channels.db import database_sync_to_async
from django.db import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    router,
    transaction,
)
from django.db.models import Model

from mqttbridge.consumers import InvalidPayload

__all__ = ["BatchWriter", "RowRejected", "WriterStats"]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Model)

# Turns of the event loop without a new row after which a batch goes without waiting for
# max_delay: a message's way from the socket to save() takes a few turns.
_QUIET_TURNS = 3

# Errors that say "the database is not there now", not "this data is wrong": retried.
TRANSIENT = (OperationalError, InterfaceError)
# Errors that say "this row is wrong": the row is refused as bad input.
BAD_ROW = (IntegrityError, DataError)


class RowRejected(InvalidPayload):
    """The database refused this object (``IntegrityError``, ``DataError``); the cause is
    ``__cause__``. Raised by ``BatchWriter.save()``; being an ``InvalidPayload``, it makes the
    consumer dead-letter the message it is handling, which is then acknowledged."""


@dataclass
class WriterStats:
    """Counters, for tests, benchmarks and a curious operator."""

    saved: int = 0  # rows committed
    flushes: int = 0  # committed transactions (bulk or row by row)
    rejected: int = 0  # rows refused (their save() raised)
    retries: int = 0  # attempts that failed with a transient error
    outages: int = 0  # times the database went away (one WARNING each)
    waited: list[float] = field(default_factory=list)  # outage lengths, seconds


@dataclass(eq=False)
class _Pending:
    obj: Model
    done: asyncio.Future[None]
    had_pk: bool  # a pk set by a failed bulk_create must go before the retry


class BatchWriter(Generic[M]):
    """Batched ``bulk_create`` for ``model``; share one writer between all consumer instances.

    ``max_batch``: rows per transaction at most. ``max_delay``: seconds a row may wait for
    others while more keep coming. ``max_pending``: rows queued or being written beyond which
    ``save()`` waits.
    ``linger``: seconds a batch waits for more rows even when they stop coming. Under a steady
    trickle (devices publishing at their own pace, not flat out) rows arrive one by one and
    group commit alone makes a transaction per row or two; lingering makes fewer, larger
    ones, at the cost of acknowledging each message that much later. 0 (the default) writes
    as soon as rows stop coming.
    ``using``: the database alias (default: the router's choice for writing ``model``).
    ``retry_min``/``retry_max``: back-off bounds in seconds while the database is unreachable.
    """

    def __init__(
        self,
        model: type[M],
        *,
        max_batch: int = 500,
        max_delay: float = 0.05,
        max_pending: int = 10_000,
        using: str | None = None,
        retry_min: float = 0.1,
        retry_max: float = 5.0,
        linger: float = 0.0,
    ) -> None:
        if max_batch < 1 or max_pending < max_batch:
            raise ValueError(
                f"BatchWriter({model.__name__}): need 1 <= max_batch <= max_pending, "
                f"got max_batch={max_batch}, max_pending={max_pending}"
            )
        if not 0 <= linger <= max_delay:
            raise ValueError(
                f"BatchWriter({model.__name__}): need 0 <= linger <= max_delay, "
                f"got linger={linger}, max_delay={max_delay}"
            )
        self.model = model
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.linger = linger
        self.max_pending = max_pending
        self.using = using
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.stats = WriterStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        # Made by _start() on the loop that uses the writer.
        self._queue: deque[_Pending] = deque()
        self._writing: list[_Pending] = []
        self._space: asyncio.Semaphore
        self._wake: asyncio.Event
        self._oldest = 0.0

    # -- the API -------------------------------------------------------------------------------

    async def save(self, obj: M) -> M:
        """Queue ``obj`` for the next batch; return it once its row is committed.

        Raises ``RowRejected`` if the database refused this row as bad data, or the error of a
        failing row otherwise. While the database is unreachable it keeps waiting. Cancelled,
        it stops waiting, but a row already queued is still written.
        """
        self._start()
        await self._space.acquire()
        item = _Pending(obj, self._loop_now().create_future(), obj.pk is not None)
        if not self._queue:
            self._oldest = time.monotonic()
        self._queue.append(item)
        if len(self._queue) >= self.max_batch or len(self._queue) == 1:
            self._wake.set()
        await item.done
        return obj

    add = save

    async def flush(self) -> None:
        """Return once everything queued so far is committed (or refused)."""
        if self._task is None:
            return
        waiting = [item.done for item in self._queue] + [item.done for item in self._writing]
        self._oldest = float("-inf")  # go now, without waiting for max_delay
        self._wake.set()
        await asyncio.gather(*waiting, return_exceptions=True)

    async def aclose(self) -> None:
        """Write what is queued, then stop the background task.

        While the database is unreachable this waits: bound it with ``asyncio.wait_for`` if
        you must. Rows left unwritten then have ``save()`` calls that never return, so the
        bridge's shutdown cancels their handlers and their messages are not acknowledged.
        """
        task = self._task
        if task is None:
            return
        await self.flush()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._task = None

    @property
    def pending(self) -> int:
        """Rows queued or being written."""
        return (len(self._queue) + len(self._writing)) if self._task is not None else 0

    # -- the background task ----------------------------------------------------------------

    def _loop_now(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and self._loop is loop and not self._task.done():
            return
        if self._task is not None and self._loop is loop:
            raise RuntimeError(f"{self!r}: its background task ended") from (
                None if self._task.cancelled() else self._task.exception()
            )
        if self._task is not None and self._loop is not None and not self._loop.is_closed():
            raise RuntimeError(f"{self!r} is in use on another event loop")
        # A module-level writer outlives test event loops: start afresh on this one.
        self._loop = loop
        self._queue = deque()
        self._writing = []
        self._space = asyncio.Semaphore(self.max_pending)
        self._wake = asyncio.Event()
        self._oldest = 0.0
        # An empty context: the first caller's (a consumer's) must not leak into the writer.
        self._task = loop.create_task(self._run(), context=contextvars.Context())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._gather()
                size = min(self.max_batch, len(self._queue))
                self._writing = [self._queue.popleft() for _ in range(size)]
                if self._queue:
                    self._oldest = time.monotonic()
                try:
                    await self._write(self._writing)
                except Exception as exc:
                    # A bug or a broken configuration (an unknown alias...): tell the waiting
                    # save() calls, and keep serving the next batches.
                    logger.exception("%r: writing a batch failed", self)
                    for item in self._writing:
                        if not item.done.done():
                            item.done.set_exception(exc)
                finally:
                    for _ in self._writing:
                        self._space.release()
                    self._writing = []

    async def _gather(self) -> None:
        """Let the batch grow until it holds ``max_batch``, its oldest row has waited
        ``max_delay``, or rows stop coming for a few turns of the event loop.

        The last condition is what keeps batching fast: every row comes from a handler that
        waits for it, so once the handlers with a row to give have given it, waiting longer
        only delays them all (100 devices and a 50 ms wait would cap the rate at 2,000/s).
        Rows that arrive while a batch is being written make the next one: under load, batches
        grow to what arrives during one commit (group commit).
        """
        quiet = 0
        linger_until = self._oldest + self.linger
        while len(self._queue) < self.max_batch and quiet < _QUIET_TURNS:
            now = time.monotonic()
            if now >= self._oldest + self.max_delay:
                return
            if now < linger_until:
                # save() sets _wake when the queue reaches max_batch: stop lingering then.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), linger_until - now)
                self._wake.clear()
                continue
            before = len(self._queue)
            await asyncio.sleep(0)
            quiet = 0 if len(self._queue) > before else quiet + 1

    async def _write(self, batch: list[_Pending]) -> None:
        """Write ``batch`` until every row is committed or refused, riding out outages."""
        todo = batch
        outage_started: float | None = None
        attempt = 0
        while todo:
            todo, error = await self._attempt(todo)
            if error is None:
                break
            self.stats.retries += 1
            if outage_started is None:
                outage_started = time.monotonic()
                self.stats.outages += 1
                logger.warning(
                    "database %s unavailable (%s: %s); holding %s rows and retrying with "
                    "back-off up to %g s",
                    self._describe_db(),
                    type(error).__name__,
                    _first_line(error),
                    len(todo) + len(self._queue),
                    self.retry_max,
                )
            delay = min(self.retry_max, self.retry_min * 2**attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(delay / 2, delay))
        if outage_started is not None:
            waited = time.monotonic() - outage_started
            self.stats.waited.append(waited)
            logger.info(
                "database %s is back after %.1f s; %s rows of %s were waiting, writing them now",
                self._describe_db(),
                waited,
                len(batch) + len(self._queue),
                self.model._meta.label,
            )

    async def _attempt(self, todo: list[_Pending]) -> tuple[list[_Pending], BaseException | None]:
        """One try: (rows still to write, the transient error) or ([], None)."""
        outcomes, error = await database_sync_to_async(self._write_sync)(todo)
        for item, outcome in zip(todo, outcomes, strict=False):
            if item.done.done():  # its save() was cancelled: nobody to tell
                continue
            if outcome is None:
                item.done.set_result(None)
            else:
                item.done.set_exception(outcome)
        return todo[len(outcomes) :], error

    def _write_sync(
        self, todo: list[_Pending]
    ) -> tuple[list[BaseException | None], BaseException | None]:
        """In the ORM thread: per object None (committed) or its error, for a prefix of
        ``todo``; and the transient error that stopped before the rest, if any."""
        alias = self._alias()
        objs = [item.obj for item in todo]
        _forget_failed_inserts(todo)
        try:
            with transaction.atomic(using=alias):
                self.model._default_manager.db_manager(alias).bulk_create(objs)
        except TRANSIENT as exc:
            self._drop_connection(alias)
            return [], exc
        except Exception:
            pass  # some row is bad (or something else is wrong): find out row by row
        else:
            self.stats.flushes += 1
            self.stats.saved += len(objs)
            return [None] * len(objs), None
        _forget_failed_inserts(todo)
        outcomes: list[BaseException | None] = []
        for obj in objs:
            try:
                with transaction.atomic(using=alias):
                    self.model._default_manager.db_manager(alias).bulk_create([obj])
            except TRANSIENT as exc:
                self._drop_connection(alias)
                return outcomes, exc
            except BAD_ROW as exc:
                self.stats.rejected += 1
                refusal = RowRejected(f"{self.model._meta.label} refused: {_first_line(exc)}")
                refusal.__cause__ = exc
                outcomes.append(refusal)
            except Exception as exc:
                self.stats.rejected += 1
                outcomes.append(exc)
            else:
                self.stats.flushes += 1
                self.stats.saved += 1
                outcomes.append(None)
        return outcomes, None

    # -- helpers -----------------------------------------------------------------------------

    def _alias(self) -> str:
        return self.using or router.db_for_write(self.model)

    @staticmethod
    def _drop_connection(alias: str) -> None:
        # The next attempt opens a new one (close_old_connections may still see this one as
        # usable if the server came back in between, and fail once more on a dead socket).
        try:
            connections[alias].close()
        except Exception:
            logger.debug("closing the broken connection to %r failed", alias, exc_info=True)

    def _describe_db(self) -> str:
        """``'default' (postgresql 127.0.0.1:5432/readings)``: no user, no password."""
        alias = self._alias()
        settings = connections.settings[alias]
        vendor = settings["ENGINE"].rsplit(".", 1)[-1]
        host = settings.get("HOST") or ""
        port = settings.get("PORT") or ""
        where = f"{host}:{port}/" if host and port else f"{host}/" if host else ""
        return f"{alias!r} ({vendor} {where}{settings.get('NAME')})"

    def __repr__(self) -> str:
        return f"<BatchWriter {self.model._meta.label} max_batch={self.max_batch}>"


def _forget_failed_inserts(todo: list[_Pending]) -> None:
    """Undo what a rolled-back ``bulk_create`` may have set (the pk from RETURNING, "saved"),
    so the retry inserts again and lets the database pick the pk."""
    for item in todo:
        if not item.had_pk:
            item.obj.pk = None
        item.obj._state.adding = True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
