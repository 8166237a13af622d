"""InstanceRegistry: spawn on demand, least recently used eviction, idle reaping, shutdown,
and the one classification of how each instance ended."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest

from mqttbridge.config.schema import LimitsConfig
from mqttbridge.protocol.events import LayerEventFailed
from mqttbridge.server.acks import AckTracker
from mqttbridge.server.instances import Ending, Instance
from mqttbridge.server.registry import InstanceRegistry
from tests.server.parts import settle


class _Registry:
    def __init__(self, **limits: Any) -> None:
        self.stats: collections.Counter[str] = collections.Counter()
        self.ended: list[tuple[Any, Ending, BaseException | None]] = []
        self.registry = InstanceRegistry(
            LimitsConfig(**limits),
            self.stats,
            release=AckTracker(lambda mid, qos: None).release,
            ended=lambda inst, ending, error: self.ended.append((inst.key, ending, error)),
        )
        self.registry.set_callbacks(drained=lambda inst: None, send=lambda inst, event: None)

    def spawn(self, key: Any, app: Any, app_id: Any = None) -> Instance:
        scope = {"type": "mqtt"} if app_id is None else {"type": "mqtt", "app_id": app_id}
        return self.registry.spawn(key, "tests.App", app, scope)


async def _until_disconnect(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive())["type"] != "mqtt.disconnect":
        pass


async def test_the_least_recently_used_instance_is_closed_at_the_limit():
    r = _Registry(max_instances=2)
    for key in ("a", "b"):
        r.spawn(key, _until_disconnect)
    r.registry.lookup("a")  # a is used again: b is now the least recently used
    r.spawn("c", _until_disconnect)
    assert list(r.registry.instances) == ["a", "c"]
    await settle(lambda: r.ended)
    assert r.ended == [("b", Ending.RETURNED, None)] and r.stats["instances_evicted"] == 1


async def test_the_mqttasgi_master_is_never_evicted():
    r = _Registry(max_instances=1)
    r.spawn(("app", 0), _until_disconnect, app_id=0)
    r.spawn("a", _until_disconnect)
    assert list(r.registry.instances) == [("app", 0), "a"]


async def test_an_idle_instance_is_closed_and_a_busy_one_is_not():
    r = _Registry(idle_timeout=0.05)
    idle = r.spawn("idle", _until_disconnect)
    reaper = asyncio.create_task(r.registry.reap_idle())
    try:
        await asyncio.wait_for(idle.task, 2)  # type: ignore[arg-type]
    finally:
        reaper.cancel()
    assert r.ended == [("idle", Ending.RETURNED, None)]


@pytest.mark.parametrize(
    ("error", "ending"),
    [
        (RuntimeError("x"), Ending.CRASHED_OUTSIDE_MESSAGE),
        (LayerEventFailed(ValueError("x")), Ending.CRASHED_ON_LAYER_EVENT),
    ],
)
async def test_a_crash_is_counted_logged_once_and_handed_on_classified(error, ending, caplog):
    r = _Registry()

    async def crash(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise error

    r.spawn("a", crash)
    await settle(lambda: r.ended)
    assert r.ended == [("a", ending, error)] and r.stats["instance_errors"] == 1
    assert caplog.text.count("Exception inside application") == 1
    assert not r.registry.instances and not r.registry.live


async def test_stop_closes_every_instance_and_cancels_those_that_do_not_finish():
    r = _Registry()

    async def stubborn(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await receive()  # mqtt.disconnect, ignored
        await asyncio.Event().wait()

    r.spawn("polite", _until_disconnect)
    r.spawn("stubborn", stubborn)
    await r.registry.stop(timeout=0.05)
    assert r.registry.stopping
    assert sorted((key, ending) for key, ending, _ in r.ended) == [
        ("polite", Ending.RETURNED),
        ("stubborn", Ending.CANCELLED),
    ]
