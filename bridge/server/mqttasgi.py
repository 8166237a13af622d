"""mqttasgi's master/worker mode: an application given without routes runs as the master
(``app_id`` 0), restarted a second after it ends, and may spawn and kill workers
(``mqttasgi.worker.spawn`` / ``mqttasgi.worker.kill``), each an instance of its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mqttbridge.protocol.build import mqttasgi_scope
from mqttbridge.protocol.events import InvalidEvent
from mqttbridge.routing import as_application, label
from mqttbridge.server.instances import Instance
from mqttbridge.server.link import BrokerLink
from mqttbridge.server.logfields import instance_fields
from mqttbridge.server.registry import InstanceRegistry

__all__ = ["MqttasgiWorkers"]

logger = logging.getLogger(__name__)

_MASTER = ("app", 0)


class MqttasgiWorkers:
    """The master application (if any) and the workers it spawns."""

    def __init__(self, link: BrokerLink, registry: InstanceRegistry, master_app: Any) -> None:
        self._link = link
        self._registry = registry
        self.master_app = master_app

    def start_master(self) -> None:
        registry = self._registry
        if self.master_app is None or registry.stopping or _MASTER in registry.instances:
            return
        link = self._link
        scope = mqttasgi_scope(link.client_id, link.broker_url, 0)
        self._registry.spawn(_MASTER, label(self.master_app), self.master_app, scope)

    def instance_ended(self, inst: Instance) -> None:
        if inst.app_id == 0 and self.master_app is not None and not self._registry.stopping:
            logger.error(
                "the master application ended; restarting it in 1 s", extra=instance_fields(inst)
            )
            asyncio.get_running_loop().call_later(1.0, self.start_master)

    def spawn(self, master: Instance, command: dict[str, Any]) -> None:
        self._check_master(master, "spawn")
        from mqttbridge.config.schema import import_string

        app_id = command.get("app_id")
        app = as_application(import_string(command["consumer_path"]))
        key = ("app", app_id)
        if key in self._registry.instances:
            logger.error("a worker with app_id %r already exists; ignoring spawn", app_id)
            return
        link = self._link
        scope = mqttasgi_scope(
            link.client_id, link.broker_url, app_id, command.get("consumer_params")
        )
        self._registry.spawn(key, command["consumer_path"], app, scope)

    def kill(self, master: Instance, command: dict[str, Any]) -> None:
        self._check_master(master, "kill")
        worker = self._registry.instances.get(("app", command.get("app_id")))
        if worker is not None:
            self._registry.close(worker, "killed by master")

    def _check_master(self, inst: Instance, what: str) -> None:
        if inst.app_id != 0:
            raise InvalidEvent(
                f"only the master application (app_id 0) may {what} workers, not {inst.app_id!r}"
            )
