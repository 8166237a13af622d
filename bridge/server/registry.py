"""The instance registry: instances by key, started on demand, closed least recently used past
``limits.max_instances`` or after ``limits.idle_timeout``, and how each one ended.

Like asgiref's ``StatelessServer``. The ``OrderedDict`` is in use order (the least recently used
first), so eviction takes the first and idle reaping stops at the first that is recent.
An instance's end is classified once (``instances.Ending``), logged here, and handed to the
``ended`` callback, which decides what becomes of its messages and subscriptions.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from mqttbridge.config.schema import LimitsConfig
from mqttbridge.protocol.build import connect_event, disconnect_event
from mqttbridge.protocol.events import LayerEventFailed
from mqttbridge.server.acks import AckToken
from mqttbridge.server.instances import Ending, Instance, classify_ending
from mqttbridge.server.logfields import instance_fields

__all__ = ["InstanceRegistry"]

logger = logging.getLogger(__name__)

Ended = Callable[[Instance, Ending, BaseException | None], None]


class InstanceRegistry:
    def __init__(
        self,
        limits: LimitsConfig,
        stats: collections.Counter[str],
        *,
        release: Callable[[AckToken], None],
        ended: Ended,
    ) -> None:
        self._limits = limits
        self._stats = stats
        # What every instance is given (see instances.Instance); drained and send belong to
        # parts that need the registry themselves, so they arrive through set_callbacks().
        self._release = release
        self._drained: Callable[[Instance], None] = _unset
        self._send: Callable[[Instance, dict[str, Any]], None] = _unset
        self._ended = ended
        #: Instances by key, least recently used first; closing ones are no longer here.
        self.instances: collections.OrderedDict[Any, Instance] = collections.OrderedDict()
        #: Every instance whose task runs, including closing ones.
        self.live: set[Instance] = set()
        #: Set once the bridge shuts down: nothing is restarted or handed on any more.
        self.stopping = False

    def set_callbacks(
        self,
        *,
        drained: Callable[[Instance], None],
        send: Callable[[Instance, dict[str, Any]], None],
    ) -> None:
        """What instances call when they caught up (backpressure) and when they send."""
        self._drained = drained
        self._send = send

    def lookup(self, key: Any) -> Instance | None:
        """The instance for ``key``, now the most recently used; None if there is none."""
        inst = self.instances.get(key)
        if inst is not None:
            self.instances.move_to_end(key)
            inst.last_used = time.monotonic()
        return inst

    def spawn(self, key: Any, label: str, app: Any, scope: dict[str, Any]) -> Instance:
        """Start an instance of ``app``; its first event is ``mqtt.connect``."""
        if len(self.instances) >= self._limits.max_instances:
            self._evict_one()
        inst = Instance(
            key, label, scope, release=self._release, drained=self._drained, send=self._send
        )
        self.instances[key] = inst
        self.live.add(inst)
        inst.put(connect_event(), None)
        # No task name: a formatted name per instance is memory, and errors log the key.
        inst.task = asyncio.get_running_loop().create_task(self._run(inst, app))
        self._stats["instances_started"] += 1
        return inst

    def close(self, inst: Instance, reason: str) -> None:
        """Ask an instance to finish: ``mqtt.disconnect`` queued behind what it holds."""
        if self.instances.get(inst.key) is inst:
            del self.instances[inst.key]
        if inst.closing:
            return
        inst.closing = True
        inst.put(disconnect_event(reason), None)

    async def stop(self, timeout: float) -> None:
        """Close every instance, wait up to ``timeout`` for them, then cancel the rest."""
        self.stopping = True
        instances = list(self.live)
        for inst in instances:
            self.close(inst, "shutdown")
        tasks = [inst.task for inst in instances if inst.task is not None and not inst.task.done()]
        if not tasks:
            return
        logger.info("waiting up to %ss for %d instances to finish", timeout, len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            logger.warning("cancelling %d instances still running after %ss", len(pending), timeout)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)

    def cancel_all(self) -> None:
        """Cut every instance off now (a second stop request)."""
        for inst in list(self.live):
            if inst.task is not None:
                inst.task.cancel()

    async def reap_idle(self) -> None:
        """Close routed instances that received nothing for ``limits.idle_timeout``."""
        idle = self._limits.idle_timeout
        while True:
            await asyncio.sleep(min(max(idle / 4, 0.05), 5.0))
            deadline = time.monotonic() - idle
            for inst in list(self.instances.values()):
                if inst.last_used > deadline:
                    break  # LRU order: everything after this is newer
                if inst.app_id is None and inst.idle():
                    logger.debug("closing idle instance %r", inst.key)
                    self.close(inst, "idle timeout")

    def _evict_one(self) -> None:
        for key, inst in self.instances.items():
            if inst.app_id != 0:  # never the mqttasgi master
                logger.warning(
                    "instance limit %d reached (limits.max_instances); "
                    "closing least recently used %r",
                    self._limits.max_instances,
                    key,
                    extra=instance_fields(inst),
                )
                self._stats["instances_evicted"] += 1
                self.close(inst, "instance limit reached")
                return

    async def _run(self, inst: Instance, app: Any) -> None:
        error: Exception | None = None
        cancelled = False
        try:
            await app(inst.scope, inst.receive, inst.send)
        except asyncio.CancelledError:
            cancelled = True
            logger.warning(
                "instance %s %r cancelled", inst.label, inst.key, extra=instance_fields(inst)
            )
        except Exception as exc:
            error = exc
        finally:
            self._finished(inst, error, cancelled)

    def _finished(self, inst: Instance, error: Exception | None, cancelled: bool) -> None:
        self.live.discard(inst)
        if self.instances.get(inst.key) is inst:
            del self.instances[inst.key]
        ending = classify_ending(error, cancelled, inst.current)
        if error is not None:
            self._log_crash(inst, ending, error)
        self._ended(inst, ending, error)

    def _log_crash(self, inst: Instance, ending: Ending, error: Exception) -> None:
        self._stats["instance_errors"] += 1
        current = inst.current
        topic: str | None = None
        if ending is Ending.CRASHED_ON_MESSAGE:
            assert current is not None
            topic = current[0]["mqtt"]["topic"]
            where = f"a message on {topic!r} (dead-lettered)"
        elif ending is Ending.CRASHED_ON_LAYER_EVENT:
            where = "a channel-layer event"
        else:
            kind = current[0]["type"] if current is not None else "mqtt.connect"
            where = "start-up (mqtt.connect)" if kind == "mqtt.connect" else f"{kind!r}"
        logger.error(
            "Exception inside application %s (instance %r) while handling %s",
            inst.label,
            inst.key,
            where,
            # The handler's own traceback, not the signal's that carried it out.
            exc_info=error.error if isinstance(error, LayerEventFailed) else error,
            extra=instance_fields(inst, topic),
        )


def _unset(*args: Any) -> None:
    raise RuntimeError("InstanceRegistry.set_callbacks() was not called")
