"""mqttasgi's master/worker mode: the master's scope, workers spawned and killed by it."""

from __future__ import annotations

from typing import Any

from mqttbridge.protocol.build import mqttasgi_scope
from tests.server.parts import server_with, settle

SCOPES: list[dict[str, Any]] = []


async def worker(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A worker application, importable by path as mqttasgi spawns them."""
    SCOPES.append(scope)
    while (await receive())["type"] != "mqtt.disconnect":
        pass


async def _master(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive())["type"] != "mqtt.disconnect":
        pass


async def test_the_master_spawns_and_kills_a_worker_with_its_params():
    SCOPES.clear()
    server, _ = server_with(application=_master)
    server.workers.start_master()
    master = server.instances[("app", 0)]
    assert master.scope == mqttasgi_scope(server.client_id, server.link.broker_url, 0)
    command = {
        "app_id": "w1",
        "consumer_path": "tests.server.test_mqttasgi:worker",
        "consumer_params": {"room": "r1", "type": "not the bridge's"},
    }
    await master.send({"type": "mqttasgi.worker.spawn", "command": command})
    await settle(lambda: SCOPES)
    (scope,) = SCOPES
    assert (scope["app_id"], scope["instance_type"], scope["room"]) == ("w1", "worker", "r1")
    assert scope["type"] == "mqtt"  # the bridge's keys win
    worker_inst = server.instances[("app", "w1")]
    await master.send({"type": "mqttasgi.worker.kill", "command": {"app_id": "w1"}})
    await settle(lambda: worker_inst.task.done())
    assert ("app", "w1") not in server.instances and ("app", 0) in server.instances


async def test_no_master_is_started_while_stopping():
    server, _ = server_with(application=_master)
    server.registry.stopping = True
    server.workers.start_master()
    assert not server.instances
