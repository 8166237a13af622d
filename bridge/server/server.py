"""The protocol server: MQTT publishes in, "mqtt" ASGI events out, and back.

Lifecycle as in uvicorn: ``serve()`` = startup (embedded broker, connection, subscriptions,
channel-layer intake) -> main loop (until ``request_stop()`` or a signal) -> shutdown (stop
intake, ``mqtt.disconnect`` to every instance, wait up to ``limits.shutdown_timeout``, cancel
stragglers, disconnect cleanly).

The per-message path is ``_on_message``: called by paho on the event-loop thread for each
PUBLISH, it validates, picks the instance (one per route and parameter values) and appends the
event to that instance's deque. See bridge/instances.py for the hand-off and acknowledgements.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import signal
import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as paho

from mqttbridge.cli.logs import plural
from mqttbridge.config.schema import Config
from mqttbridge.layers.redis_timeouts import fit_channel_layers
from mqttbridge.mqtt.client import BrokerUnusable, MqttClient, OutboundQueueFull
from mqttbridge.protocol import properties as props_
from mqttbridge.protocol.events import (
    InvalidEvent,
    validate_dead_letter,
    validate_publish,
    validate_subscribe,
)
from mqttbridge.protocol.topics import shared_filter
from mqttbridge.protocol.typing import ASGI_SPEC_VERSION
from mqttbridge.routing import Route, TopicRouter, find_topic_router
from mqttbridge.server.deadletter import dead_letter_record
from mqttbridge.server.instances import AckToken, AckTracker, Instance
from mqttbridge.server.intake import PublishIntake
from mqttbridge.server.subscriptions import DynamicSubscriptions

__all__ = ["Server"]

logger = logging.getLogger(__name__)


class Server:
    """Runs routed instances (``routes``) and/or an mqttasgi-style master application."""

    def __init__(
        self,
        config: Config,
        *,
        application: Any = None,
        routes: Iterable[Route] = (),
        install_signal_handlers: bool = True,
    ) -> None:
        self.config = config
        self.limits = config.limits
        router = find_topic_router(application) if application is not None else None
        all_routes = list(router.routes) if router is not None else []
        all_routes += list(routes)
        self.router: TopicRouter | None = TopicRouter(all_routes) if all_routes else None
        # The application receives routed scopes through its own TopicRouter and middleware;
        # YAML routes have no wrapping application, so their instances call the route's app.
        self._routed_app = application if router is not None else None
        self._python_routes = {id(r) for r in router.routes} if router is not None else set()
        self.master_app = application if router is None else None
        self.install_signal_handlers = install_signal_handlers
        self.client_id = (
            config.broker.client_id or f"mqttbridge-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        )
        self.broker_url = config.broker.url
        self.client: MqttClient | None = None
        self.embedded: Any = None
        self.acks = AckTracker(self._send_ack)
        self.instances: collections.OrderedDict[Any, Instance] = collections.OrderedDict()
        # Every instance whose task runs, including closing ones no longer in ``instances``.
        self._live: set[Instance] = set()
        self.paused_by: set[Instance] = set()
        # Dynamic (mqtt.sub) subscriptions: match filter -> instances; subscribe filter per match.
        self.dynamic = DynamicSubscriptions()
        self._v5 = config.broker.protocol == "5"
        self._max_payload = config.limits.max_payload_bytes
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ready = asyncio.Event()
        # Why serve() stopped on its own: a broker no retry can reach as configured.
        self.failure: BrokerUnusable | None = None
        self.stats: collections.Counter[str] = collections.Counter()
        self.intake = PublishIntake(
            lambda: self.client,
            config.channel_layer.publish_channel,
            config.limits.max_payload_bytes,
            self.stats,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until ``request_stop()`` or SIGINT/SIGTERM, then shut down gracefully.

        Raises :class:`~mqttbridge.mqtt.client.BrokerUnusable` after shutting down if the first
        connection to the broker failed in a way no retry can fix (docs/guarantees.md).
        """
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        restore = self._install_signals(loop) if self.install_signal_handlers else []
        try:
            await self.startup()
            await self._stop_event.wait()
        finally:
            await self.shutdown()
            for sig, handler in restore:
                signal.signal(sig, handler)
        if self.failure is not None:
            raise self.failure

    def request_stop(self) -> None:
        if self._stop_event is None:
            return
        if self._stop_event.is_set() and self._stopping:
            logger.warning("second stop request: cancelling remaining instances now")
            for inst in list(self._live):
                if inst.task is not None:
                    inst.task.cancel()
        self._stop_event.set()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[tuple[int, Any]]:
        restore: list[tuple[int, Any]] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                restore.append((sig, signal.getsignal(sig)))
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests) or not supported
        return restore

    def _on_signal(self, sig: int) -> None:
        logger.info("received %s, shutting down", signal.Signals(sig).name)
        self.request_stop()

    async def startup(self) -> None:
        cfg = self.config
        broker = cfg.broker
        # Before the intake or any consumer opens a Redis connection: a stock channels_redis
        # layer from CHANNEL_LAYERS would otherwise time out on every idle read (redis-py 8).
        fit_channel_layers()
        host = port = None
        if broker.scheme == "embedded":
            from mqttbridge.broker.embedded import EmbeddedBroker

            self.embedded = EmbeddedBroker(
                broker.host,
                broker.port,
                allow_anonymous=broker.allow_anonymous,
                users=broker.users,
                # Above the bridge's own limit, so oversized messages reach the bridge and are
                # dead-lettered; the broker's cap only protects its memory.
                max_payload_bytes=max(4 * cfg.limits.max_payload_bytes, 1 << 20),
            )
            await self.embedded.start()
            self.broker_url = self.embedded.url
            host, port = self.embedded.url.rsplit("//", 1)[1].rsplit(":", 1)
            # The bridge logs in to its own broker whether or not devices need passwords.
            username, password = self.embedded.owner_credentials
            broker = dataclasses.replace(broker, username=username, password=password)
        self.client = MqttClient(
            broker,
            self._on_message,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_unusable=self._on_unusable,
            client_id=self.client_id,
            host=host,
            port=int(port) if port else None,
        )
        if self.router is not None:
            for route in self.router.routes:
                topic_filter = self._subscribe_filter(route.pattern.filter)
                self.dynamic.route_filters[topic_filter] = route.qos
                self.client.subscribe(topic_filter, route.qos)
                logger.info("route %s -> %s (qos %d)", route.pattern.pattern, route.name, route.qos)
        await self.client.start()
        self._spawn_task(self.intake.run(), "channel-layer-intake")
        self._spawn_task(self._reap_idle(), "idle-reaper")
        if self.master_app is not None:
            self._start_master()

    def _subscribe_filter(self, topic_filter: str) -> str:
        return shared_filter(topic_filter, self.config.broker.shared_group)

    async def shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.ready.clear()
        client = self.client
        if client is not None:
            client.stop_reading()  # stop intake first: nothing new starts
        # Stop intake and timers; replies still owed to confirm=True callers are sent below.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        instances = list(self._live)
        for inst in instances:
            self._close_instance(inst, "shutdown")
        tasks = [inst.task for inst in instances if inst.task is not None and not inst.task.done()]
        if tasks:
            logger.info(
                "waiting up to %ss for %d instances to finish",
                self.limits.shutdown_timeout,
                len(tasks),
            )
            _, pending = await asyncio.wait(tasks, timeout=self.limits.shutdown_timeout)
            if pending:
                logger.warning(
                    "cancelling %d instances still running after %ss",
                    len(pending),
                    self.limits.shutdown_timeout,
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=1.0)
        if client is not None:
            await client.stop()  # fails what is still unacknowledged: callers get "failed"
        await self.intake.wait_replies(timeout=2.0)
        if self.embedded is not None:
            await self.embedded.stop()
        logger.info("bridge stopped")

    def _spawn_task(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- connection events --------------------------------------------------------------------

    def _on_connect(self, session_present: bool) -> None:
        assert self.client is not None
        if not self.ready.is_set():
            self._spawn_task(self._announce_ready(), "ready")

    async def _announce_ready(self) -> None:
        # Ready once the broker has confirmed our subscriptions: tests and scripts wait for it.
        assert self.client is not None
        await asyncio.sleep(0)
        if self.client.subscriptions:
            marker = f"mqttbridge/ready/{self.client_id}"
            future = self.client.subscribe(marker, 0)
            if future is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(future, 10)
            self.client.unsubscribe(marker)
        self.ready.set()
        logger.info(
            "bridge ready: %s, %s, broker %s",
            plural(len(self.router.routes) if self.router else 0, "route"),
            plural(len(self.client.subscriptions), "subscription"),
            self.client.broker,
        )

    def _on_unusable(self, error: BrokerUnusable) -> None:
        self.failure = error
        self.request_stop()

    def _on_disconnect(self, reason: str) -> None:
        self.ready.clear()
        # Unacknowledged messages will be redelivered by the broker under their new ids.
        self.acks.connection_lost()

    def _send_ack(self, mid: int, qos: int) -> None:
        if self.client is not None:
            self.client.ack(mid, qos)

    # -- the per-message path -----------------------------------------------------------------

    def _on_message(self, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError as exc:
            self._reject(message, None, f"topic is not valid UTF-8: {exc}")
            return
        payload = message.payload
        if len(payload) > self._max_payload:
            self._reject(
                message,
                topic,
                f"payload is {len(payload)} bytes, "
                f"over limits.max_payload_bytes={self._max_payload}",
            )
            return
        qos = message.qos
        token = self.acks.track(message.mid, qos) if qos else None
        event = {
            "type": "mqtt.msg",
            "mqtt": {
                "topic": topic,
                "payload": payload,
                "qos": qos,
                "retain": bool(message.retain),
                "dup": bool(message.dup),
                "properties": props_.from_paho(message.properties) if self._v5 else {},
            },
        }
        routed: Instance | None = None
        router = self.router
        if router is not None:
            matched = router.match(topic)
            if matched is not None:
                route, kwargs = matched
                routed = self._routed_instance(route, kwargs, topic)
                self._deliver(routed, event, token)
        delivered = routed is not None
        if self.dynamic:
            for targets in self.dynamic.instances_for(topic):
                for inst in targets:
                    if inst is not routed:
                        self._deliver(inst, event, token)
                        delivered = True
        if not delivered:
            self.stats["unrouted"] += 1
            if logger.isEnabledFor(logging.DEBUG):  # no fields dict per message otherwise
                logger.debug(
                    "no route or subscription for topic %r; acknowledged",
                    topic,
                    extra={"topic": topic},
                )
        if token is not None:
            self.acks.settle(token)

    def _deliver(self, inst: Instance, event: dict[str, Any], token: AckToken | None) -> None:
        inst.put(event, token)
        if len(inst.items) >= self.limits.queue_size:
            self._backpressure(inst)

    def _reject(self, message: paho.MQTTMessage, topic: str | None, reason: str) -> None:
        """Refuse a message: log, record it on the dead-letter topic, acknowledge it."""
        self.stats["rejected"] += 1
        shown = topic if topic is not None else repr(message._topic)  # raw bytes
        logger.warning(
            "rejected and dead-lettered message on %s: %s",
            shown,
            reason,
            extra=self._route_fields(topic),
        )
        self.dead_letter(topic, None, reason, payload_size=len(message.payload))
        if message.qos:
            # Through the tracker: acknowledgements keep arrival order (MQTT 4.6).
            self.acks.settle(self.acks.track(message.mid, message.qos))

    def dead_letter(
        self,
        topic: str | None,
        payload: bytes | None,
        error: str,
        *,
        consumer: str | None = None,
        payload_size: int | None = None,
    ) -> None:
        """Publish a record of a message that could not be handled (docs/guarantees.md)."""
        if self.client is None:
            return
        data = dead_letter_record(
            topic,
            payload,
            error,
            consumer=consumer,
            payload_size=payload_size,
            max_bytes=self._max_payload,
        )
        try:
            self.client.publish(self.config.dead_letter_topic, data, 1, False)
        except OutboundQueueFull:
            logger.error(
                "dead-letter record lost, outbound queue full: %s",
                data.decode(),
                extra=_log_fields(topic=topic, consumer=consumer),
            )

    def _route_fields(self, topic: str | None) -> dict[str, Any]:
        """Log fields for a message no instance holds: the route it would have gone to."""
        matched = self.router.match(topic) if self.router is not None and topic else None
        if matched is None:
            return _log_fields(topic=topic)
        route, kwargs = matched
        return _log_fields(
            topic=topic, route=route.pattern.pattern, route_kwargs=kwargs, consumer=route.name
        )

    def _backpressure(self, inst: Instance) -> None:
        assert self.client is not None
        self.paused_by.add(inst)
        self.stats["backpressure"] += 1
        self.client.pause_reading()

    def queue_drained(self, inst: Instance) -> None:
        if len(inst.items) <= self.limits.queue_size // 2:
            self.paused_by.discard(inst)
            self._maybe_resume_reading()

    def _maybe_resume_reading(self) -> None:
        if not self.paused_by and self.client is not None and not self._stopping:
            self.client.resume_reading()

    # -- instances ----------------------------------------------------------------------------

    def _routed_instance(self, route: Route, kwargs: dict[str, str], topic: str) -> Instance:
        key = (route.pattern.pattern, *kwargs.values())
        inst = self.instances.get(key)
        if inst is not None:
            self.instances.move_to_end(key)
            inst.last_used = time.monotonic()
            return inst
        scope = self._base_scope()
        scope["topic_route"] = {
            "pattern": route.pattern.pattern,
            "filter": route.pattern.filter,
            "kwargs": kwargs,
        }
        app = self._routed_app if id(route) in self._python_routes else route.app
        return self._spawn(key, route.name, app, scope)

    def _base_scope(self) -> dict[str, Any]:
        return {
            "type": "mqtt",
            "asgi": {"version": "3.0", "spec_version": ASGI_SPEC_VERSION},
            "client_id": self.client_id,
            "broker": self.broker_url,
            # mqttasgi's scope keys, for its applications.
            "version": "2.4",
            "spec_version": ASGI_SPEC_VERSION,
        }

    def _spawn(self, key: Any, label: str, app: Any, scope: dict[str, Any]) -> Instance:
        if len(self.instances) >= self.limits.max_instances:
            self._evict_one()
        inst = Instance(self, key, label, scope)
        self.instances[key] = inst
        self._live.add(inst)
        inst.put({"type": "mqtt.connect", "mqtt": {}}, None)
        # No task name: a formatted name per instance is memory, and errors log the key.
        inst.task = asyncio.get_running_loop().create_task(self._run_instance(inst, app))
        self.stats["instances_started"] += 1
        return inst

    def _evict_one(self) -> None:
        for key, inst in self.instances.items():
            if inst.app_id != 0:
                logger.warning(
                    "instance limit %d reached (limits.max_instances); "
                    "closing least recently used %r",
                    self.limits.max_instances,
                    key,
                    extra=_instance_fields(inst),
                )
                self.stats["instances_evicted"] += 1
                self._close_instance(inst, "instance limit reached")
                return

    def _close_instance(self, inst: Instance, reason: str) -> None:
        if self.instances.get(inst.key) is inst:
            del self.instances[inst.key]
        if inst.closing:
            return
        inst.closing = True
        inst.put({"type": "mqtt.disconnect", "mqtt": {"reason": reason}}, None)

    async def _run_instance(self, inst: Instance, app: Any) -> None:
        error: Exception | None = None
        cancelled = False
        try:
            await app(inst.scope, inst.receive, inst.send)
        except asyncio.CancelledError:
            cancelled = True
            logger.warning(
                "instance %s %r cancelled", inst.label, inst.key, extra=_instance_fields(inst)
            )
        except Exception as exc:
            error = exc
        finally:
            self._instance_ended(inst, error, cancelled)

    def _instance_ended(self, inst: Instance, error: Exception | None, cancelled: bool) -> None:
        self._live.discard(inst)
        if inst in self.paused_by:
            self.paused_by.discard(inst)
            self._maybe_resume_reading()
        if self.instances.get(inst.key) is inst:
            del self.instances[inst.key]
        for topic_filter in list(inst.subscriptions):
            self._drop_dynamic(inst, topic_filter)
        current = inst.current
        leftovers = [item for item in inst.items if item[0]["type"] == "mqtt.msg"]
        inst.items.clear()
        handling_message = current is not None and current[0]["type"] == "mqtt.msg"
        if cancelled:
            # Cut off mid-handler (shutdown timeout, second signal): not handled, so not
            # acknowledged; the broker redelivers it to a persistent session.
            inst.current = None
        elif error is not None:
            self._instance_crashed(inst, error, current)
        if not cancelled:
            # A poison message is dead-lettered above and acknowledged here: once, not forever.
            inst.finish_current()
        if self._stopping:
            return  # queued, never handled, never acknowledged: the broker redelivers them
        if (
            error is not None
            and not handling_message
            and not getattr(error, "mqttbridge_layer_event", False)
        ):
            # It failed starting up (connect(), groups): a fresh instance would fail the same
            # way, so record what was queued instead of restarting in a loop.
            for event, token in leftovers:
                self.dead_letter(
                    event["mqtt"]["topic"],
                    event["mqtt"]["payload"],
                    f"not handled: the instance failed ({type(error).__name__}: {error})",
                    consumer=inst.label,
                )
                if token is not None:
                    self.acks.release(token)
        else:
            # Messages queued behind the one that ended the instance go to a fresh instance.
            for event, token in leftovers:
                if not self._redeliver(inst, event, token):
                    self.dead_letter(
                        event["mqtt"]["topic"],
                        event["mqtt"]["payload"],
                        "not handled: the application instance ended",
                        consumer=inst.label,
                    )
                if token is not None:
                    self.acks.release(token)  # the old instance's hold on it
        if inst.app_id == 0 and self.master_app is not None:
            logger.error(
                "the master application ended; restarting it in 1 s", extra=_instance_fields(inst)
            )
            asyncio.get_running_loop().call_later(1.0, self._start_master)

    def _instance_crashed(
        self, inst: Instance, exc: Exception, current: tuple[dict[str, Any], Any] | None
    ) -> None:
        self.stats["instance_errors"] += 1
        from_layer = getattr(exc, "mqttbridge_layer_event", False)
        kind = current[0]["type"] if current is not None else "mqtt.connect"
        event = (
            current[0] if current is not None and kind == "mqtt.msg" and not from_layer else None
        )
        topic = event["mqtt"]["topic"] if event is not None else None
        if topic is not None:
            where = f"a message on {topic!r} (dead-lettered)"
        elif from_layer:
            where = "a channel-layer event"
        else:
            where = "start-up (mqtt.connect)" if kind == "mqtt.connect" else f"{kind!r}"

        logger.error(
            "Exception inside application %s (instance %r) while handling %s",
            inst.label,
            inst.key,
            where,
            exc_info=exc,
            extra=_instance_fields(inst, topic),
        )
        if event is not None:
            self.dead_letter(
                topic, event["mqtt"]["payload"], f"{type(exc).__name__}: {exc}", consumer=inst.label
            )

    def _redeliver(self, old: Instance, event: dict[str, Any], token: Any) -> bool:
        if self.router is None or "topic_route" not in old.scope:
            return False
        matched = self.router.match(event["mqtt"]["topic"])
        if matched is None:
            return False
        route, kwargs = matched
        if (route.pattern.pattern, *kwargs.values()) != old.key:
            return False  # it came through the old instance's own mqtt.sub, not its route
        self._routed_instance(route, kwargs, event["mqtt"]["topic"]).put(event, token)
        return True

    def _start_master(self) -> None:
        if self._stopping or ("app", 0) in self.instances:
            return
        scope = self._base_scope() | {"app_id": 0, "instance_type": "master"}
        self._spawn(("app", 0), _label(self.master_app), self.master_app, scope)

    async def _reap_idle(self) -> None:
        idle = self.limits.idle_timeout
        while True:
            await asyncio.sleep(min(max(idle / 4, 0.05), 5.0))
            deadline = time.monotonic() - idle
            for inst in list(self.instances.values()):
                if inst.last_used > deadline:
                    break  # LRU order: everything after this is newer
                if inst.app_id is None and inst.idle():
                    logger.debug("closing idle instance %r", inst.key)
                    self._close_instance(inst, "idle timeout")

    # -- what applications send ---------------------------------------------------------------

    def handle_send(self, inst: Instance, event: dict[str, Any]) -> None:
        client = self.client
        assert client is not None
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "mqtt.pub":
            pub = validate_publish(event.get("mqtt"), self._max_payload)
            client.publish(pub.topic, pub.payload, pub.qos, pub.retain, pub.properties)
        elif kind == "mqtt.sub":
            topic_filter, qos = validate_subscribe(event.get("mqtt"), need_qos=True)
            self.dynamic.add(client, inst, topic_filter, qos)
        elif kind == "mqtt.usub":
            topic_filter, _ = validate_subscribe(event.get("mqtt"), need_qos=False)
            self._drop_dynamic(inst, topic_filter)
        elif kind == "mqtt.dead_letter":
            current = inst.current
            error = validate_dead_letter(event.get("mqtt"), current[0] if current else None)
            assert current is not None
            self._refused_by_app(inst, current[0]["mqtt"], error)
        elif kind == "mqttasgi.worker.spawn":
            self._spawn_worker(inst, event.get("command") or {})
        elif kind == "mqttasgi.worker.kill":
            self._kill_worker(inst, event.get("command") or {})
        else:
            raise InvalidEvent(
                f"unknown event type {kind!r}: an mqtt application may send 'mqtt.pub', "
                "'mqtt.sub', 'mqtt.usub' or 'mqtt.dead_letter'"
            )

    def _refused_by_app(self, inst: Instance, message: dict[str, Any], error: str) -> None:
        """The application refused the message it is handling as bad input (mqtt.dead_letter):
        record it; it is acknowledged once the handler returns, and the instance lives on."""
        self.stats["dead_lettered_by_app"] += 1
        topic = message["topic"]
        params = _instance_params(inst)
        logger.warning(
            "dead-lettered message on %s for %s%s: %s",
            topic,
            inst.label,
            f" ({params})" if params else "",
            error,
            extra=_instance_fields(inst, topic),
        )
        self.dead_letter(topic, message["payload"], error, consumer=inst.label)

    def _drop_dynamic(self, inst: Instance, topic_filter: str) -> None:
        self.dynamic.drop(None if self._stopping else self.client, inst, topic_filter)

    def _spawn_worker(self, inst: Instance, command: dict[str, Any]) -> None:
        if inst.app_id != 0:
            raise InvalidEvent(
                f"only the master application (app_id 0) may spawn workers, not {inst.app_id!r}"
            )
        from mqttbridge.config.schema import import_string

        app_id = command.get("app_id")
        app = import_string(command["consumer_path"])
        if isinstance(app, type):
            app = app.as_asgi() if hasattr(app, "as_asgi") else app
        key = ("app", app_id)
        if key in self.instances:
            logger.error("a worker with app_id %r already exists; ignoring spawn", app_id)
            return
        scope = {
            **(command.get("consumer_params") or {}),
            **self._base_scope(),
            "app_id": app_id,
            "instance_type": "worker",
        }
        self._spawn(key, command["consumer_path"], app, scope)

    def _kill_worker(self, inst: Instance, command: dict[str, Any]) -> None:
        if inst.app_id != 0:
            raise InvalidEvent(
                f"only the master application (app_id 0) may kill workers, not {inst.app_id!r}"
            )
        worker = self.instances.get(("app", command.get("app_id")))
        if worker is not None:
            self._close_instance(worker, "killed by master")


def _log_fields(**fields: Any) -> dict[str, Any]:
    """``extra=`` for a log line about a message: JSON logs show each field as a key."""
    return {key: value for key, value in fields.items() if value is not None}


def _instance_fields(inst: Instance, topic: str | None = None) -> dict[str, Any]:
    route = inst.scope.get("topic_route")
    return _log_fields(
        topic=topic,
        route=route["pattern"] if route else None,
        route_kwargs=route["kwargs"] if route else None,
        consumer=inst.label,
        app_id=inst.app_id,
    )


def _instance_params(inst: Instance) -> str:
    """Which instance, for people: ``device_id=t1``, or ``app_id=0`` for the master."""
    route = inst.scope.get("topic_route")
    if route:
        return ", ".join(f"{name}={value}" for name, value in route["kwargs"].items())
    return f"app_id={inst.app_id!r}" if inst.app_id is not None else ""


def _label(app: Any) -> str:
    target = getattr(app, "consumer_class", app)
    name = getattr(target, "__qualname__", type(target).__name__)
    return f"{getattr(target, '__module__', '')}.{name}"
