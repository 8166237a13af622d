"""A fleet: many devices on one event loop, their telemetry on one schedule.

One scheduler task keeps a heap of (when, device, stream) and publishes what is due, so 10,000
devices cost one timer, not 10,000. Each stream runs on a fixed grid from the moment its device
first came online (jitter moves a message, never the grid), so a device at rate r publishes
exactly r x duration messages in ``duration`` seconds, however late it connected.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import random
import time

from mqttbridge.devices.simulator.connection import BrokerTarget
from mqttbridge.devices.simulator.device import Device
from mqttbridge.devices.simulator.profiles import Profile
from mqttbridge.devices.simulator.stats import Stats

__all__ = ["Fleet", "FleetOptions"]


@dataclasses.dataclass(frozen=True)
class FleetOptions:
    devices: int = 1
    rate: float | None = None  # telemetry per device per second; None: the profiles' own
    duration: float | None = None  # seconds of telemetry per device
    count: int | None = None  # telemetry messages per device
    qos: int | None = None  # overrides the profiles' telemetry QoS
    seed: int = 0
    ramp: float | None = None  # devices started per second; None: all at once
    handshakes: int = 200  # connection handshakes in flight at once
    round_trip: bool = False
    log_commands: bool = False  # one INFO line per command obeyed: for small demo fleets


class Fleet:
    def __init__(
        self, profiles: list[Profile], target: BrokerTarget, options: FleetOptions
    ) -> None:
        if not profiles:
            raise ValueError("a fleet needs at least one profile")
        self.options = options
        self.target = target
        self.stats = Stats(options.devices)
        self._gate = asyncio.Semaphore(options.handshakes)
        self.devices = [
            Device(
                profiles[index % len(profiles)], index, options.seed, target, self._gate,
                self.stats, qos=options.qos, round_trip=options.round_trip,
                log_commands=options.log_commands,
            )
            for index in range(options.devices)
        ]  # fmt: skip
        self._intervals = [self._stream_intervals(device) for device in self.devices]
        self._heap: list[tuple[float, int, int, int, float]] = []
        self._order = itertools.count()
        self._scheduled: set[int] = set()
        self._sent = [0] * len(self.devices)
        self._ends: dict[int, float] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._rng = random.Random(options.seed)

    def _stream_intervals(self, device: Device) -> list[float]:
        streams = device.profile.telemetry
        if not streams:
            return []
        if self.options.rate is None:
            return [stream.every for stream in streams]
        # --rate is the device's total: each stream keeps its share of the profile's own rate.
        scale = device.profile.rate / self.options.rate
        return [stream.every * scale for stream in streams]

    @property
    def bounded(self) -> bool:
        return self.options.duration is not None or self.options.count is not None

    def stop(self) -> None:
        self._stop.set()
        _wake(self._waiter)

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> Stats:
        """Connect every device, publish until done or ``stop()``, then disconnect cleanly."""
        loop = asyncio.get_running_loop()
        for device in self.devices:
            device.on_first_online = self._schedule
        tasks = [loop.create_task(self._start_devices())]
        tasks.append(loop.create_task(self._keepalive()))
        try:
            await self._publish_until_done()
        finally:
            for task in tasks:
                task.cancel()
            await self._shutdown()
        return self.stats

    async def _start_devices(self) -> None:
        ramp = self.options.ramp
        started = time.monotonic()
        self._runs = []
        for index, device in enumerate(self.devices):
            if ramp:
                delay = started + index / ramp - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            self._runs.append(asyncio.get_running_loop().create_task(device.connection.run()))
        await asyncio.gather(*self._runs, return_exceptions=True)

    def _schedule(self, device: Device) -> None:
        if device.index in self._scheduled:
            return
        self._scheduled.add(device.index)
        now = time.monotonic()
        if self.options.duration is not None:
            self._ends[device.index] = now + self.options.duration
        for stream, interval in enumerate(self._intervals[device.index]):
            first = now + self._rng.uniform(0, interval)
            self._push(first, device.index, stream, interval, device.streams[stream].jitter)
        _wake(self._waiter)

    def _push(self, due: float, device: int, stream: int, interval: float, jitter: float) -> None:
        end = self._ends.get(device)
        if end is not None and due >= end:
            return
        when = due + (self._rng.uniform(-jitter, jitter) * interval / 2 if jitter else 0.0)
        heapq.heappush(self._heap, (when, next(self._order), device, stream, due))

    async def _publish_until_done(self) -> None:
        heap = self._heap
        count = self.options.count
        while not self._stop.is_set():
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                when, _, index, stream, due = heapq.heappop(heap)
                self.stats.late(now - when)
                if count is not None and self._sent[index] >= count:
                    continue
                self.devices[index].publish_stream(stream)
                self._sent[index] += 1
                interval = self._intervals[index][stream]
                jitter = self.devices[index].streams[stream].jitter
                self._push(due + interval, index, stream, interval, jitter)
            if self.bounded and not heap and len(self._scheduled) == len(self.devices):
                return
            delay = heap[0][0] - time.monotonic() if heap else 1.0
            # A few milliseconds late is fine (the grid keeps the rate); waking for every
            # message of 10,000 devices is not.
            await self._sleep(max(delay, 0.002))

    async def _sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if a device comes online or ``stop()`` is called."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(delay, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    async def _keepalive(self) -> None:
        interval = max(0.5, self.target.keepalive / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for device in self.devices:
                device.connection.ping_if_idle(now)

    async def _shutdown(self) -> None:
        for device in self.devices:
            device.stop()
        runs = getattr(self, "_runs", [])
        if runs:
            await asyncio.wait(runs, timeout=5)
        for run in runs:
            run.cancel()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
