"""The protocol server's lifecycle: MQTT publishes in, "mqtt" ASGI events out, and back.

Lifecycle as in uvicorn: ``serve()`` = startup (embedded broker, connection, subscriptions,
channel-layer intake) -> main loop (until ``request_stop()`` or a signal) -> shutdown (stop
intake, ``mqtt.disconnect`` to every instance, wait up to ``limits.shutdown_timeout``, cancel
stragglers, disconnect cleanly).

``Server`` builds the parts and wires them with callbacks; it is on no message's path. Inbound
messages go through ``dispatch``, instances live in ``registry``, what they send goes through
``outbound``; see the package docstring for one message's way through.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Iterable
from typing import Any

from mqttbridge.config.schema import Config
from mqttbridge.config.values import generate_client_id
from mqttbridge.layers.redis_timeouts import fit_channel_layers
from mqttbridge.mqtt.client import BrokerUnusable, MqttClient
from mqttbridge.protocol.topics import shared_filter
from mqttbridge.routing import Route, TopicRouter, find_topic_router
from mqttbridge.server.acks import AckTracker
from mqttbridge.server.deadletter import DeadLetters
from mqttbridge.server.dispatch import Dispatcher
from mqttbridge.server.http import HttpFront
from mqttbridge.server.instances import Ending, Instance
from mqttbridge.server.intake import PublishIntake
from mqttbridge.server.link import BrokerLink
from mqttbridge.server.logfields import plural
from mqttbridge.server.mqttasgi import MqttasgiWorkers
from mqttbridge.server.outbound import Outbound
from mqttbridge.server.registry import InstanceRegistry
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
        http_application: Any = None,
    ) -> None:
        self.config = config
        self.limits = config.limits
        user_router = find_topic_router(application) if application is not None else None
        python_routes = list(user_router.routes) if user_router is not None else []
        yaml_routes = list(routes)
        all_routes = python_routes + yaml_routes
        self.router: TopicRouter | None = TopicRouter(all_routes) if all_routes else None
        # The application receives routed scopes through its own TopicRouter and middleware;
        # YAML routes have no wrapping application, so their instances call the route's app.
        apps: dict[Route, Any] = {route: application for route in python_routes}
        apps.update((route, route.app) for route in yaml_routes)
        self.master_app = application if user_router is None else None
        self.install_signal_handlers = install_signal_handlers
        # The loader always fills client_id; a BrokerConfig built in code may leave it out.
        client_id = config.broker.client_id or generate_client_id()
        self.link = BrokerLink(client_id, config.broker.url)
        self.embedded: Any = None
        self.stats: collections.Counter[str] = collections.Counter()
        self.acks = AckTracker(self.link.ack)
        self.subscriptions = DynamicSubscriptions()
        self.dead_letters = DeadLetters(
            self.link, config.dead_letter_topic, config.limits.max_payload_bytes
        )
        # An instance gets only release, drained and send (see instances.py).
        self.registry = InstanceRegistry(
            config.limits, self.stats, release=self.acks.release, ended=self._instance_ended
        )
        self.workers = MqttasgiWorkers(self.link, self.registry, self.master_app)
        self.dispatch = Dispatcher(
            self.link,
            self.router,
            apps,
            self.registry,
            self.acks,
            self.subscriptions,
            self.dead_letters,
            config.limits,
            self.stats,
            v5=config.broker.protocol == "5",
        )
        self.outbound = Outbound(
            self.link,
            self.subscriptions,
            self.dead_letters,
            self.workers,
            self.registry,
            config.limits.max_payload_bytes,
            self.stats,
        )
        self.registry.set_callbacks(
            drained=self.dispatch.queue_drained, send=self.outbound.handle_send
        )
        self.intake = PublishIntake(
            lambda: self.link.client,
            config.channel_layer.publish_channel,
            config.limits.max_payload_bytes,
            self.stats,
        )
        self.http: HttpFront | None = None
        # What http.listen serves: the application, or one that serves only HTTP and
        # WebSocket while the config's routes carry MQTT (http_application).
        web = http_application if http_application is not None else application
        if config.http.listen is not None and web is not None:
            self.http = HttpFront(config.http, web, config.limits.shutdown_timeout)
        self._shut_down = False
        self._stop_event: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ready = asyncio.Event()
        # Why serve() stopped on its own: a broker no retry can reach as configured.
        self.failure: BrokerUnusable | None = None

    @property
    def client(self) -> MqttClient | None:
        return self.link.client

    @property
    def client_id(self) -> str:
        return self.link.client_id

    @property
    def instances(self) -> collections.OrderedDict[Any, Instance]:
        """Running instances by key, least recently used first."""
        return self.registry.instances

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
        if self._stop_event.is_set() and self._shut_down:
            logger.warning("second stop request: cancelling remaining instances now")
            self.registry.cancel_all()
            if self.http is not None:
                self.http.stop(force=True)
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
        if self.http is not None:
            self.http.bind()  # a port in use fails before any connection is made
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
            self.link.broker_url = self.embedded.url
            host, port = self.embedded.url.rsplit("//", 1)[1].rsplit(":", 1)
            # The bridge logs in to its own broker whether or not devices need passwords.
            username, password = self.embedded.owner_credentials
            broker = dataclasses.replace(broker, username=username, password=password)
        if self.http is not None:
            # Before the first MQTT message: the application's lifespan startup sets up what
            # its consumers may need. Raises HttpStartupError if it failed.
            task = await self.http.start()
            task.add_done_callback(self._http_ended)
        client = self.link.client = MqttClient(
            broker,
            self.dispatch.on_message,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_unusable=self._on_unusable,
            client_id=self.client_id,
            host=host,
            port=int(port) if port else None,
        )
        if self.router is not None:
            for route in self.router.routes:
                topic_filter = shared_filter(route.pattern.filter, broker.shared_group)
                self.subscriptions.add_route(client, topic_filter, route.qos)
                logger.info("route %s -> %s (qos %d)", route.pattern.pattern, route.name, route.qos)
        await client.start()
        self._spawn_task(self.intake.run(), "channel-layer-intake")
        self._spawn_task(self.registry.reap_idle(), "idle-reaper")
        self.workers.start_master()

    def _http_ended(self, task: asyncio.Task[None]) -> None:
        if not self._shut_down:
            # uvicorn logged why (a failed lifespan startup); the bridge does not run half-way.
            logger.error("the HTTP server stopped on its own; stopping the bridge")
            self.request_stop()

    async def shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        # From here on nothing is restarted, handed on or resumed (see registry.stopping).
        self.registry.stopping = True
        self.ready.clear()
        if self.http is not None:
            self.http.stop()  # drains beside the bridge, within the same shutdown_timeout
        client = self.client
        if client is not None:
            client.stop_reading()  # stop intake first: nothing new starts
        # Stop intake and timers; replies still owed to confirm=True callers are sent below.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.registry.stop(self.limits.shutdown_timeout)
        if client is not None:
            await client.stop()  # fails what is still unacknowledged: callers get "failed"
        await self.intake.wait_replies(timeout=2.0)
        if self.http is not None:
            await self.http.wait_stopped()
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

    # -- the one callback that fans out ------------------------------------------------------

    def _instance_ended(self, inst: Instance, ending: Ending, error: BaseException | None) -> None:
        self.outbound.forget(inst)  # its mqtt.sub filters
        self.dispatch.instance_ended(inst, ending, error)  # its current and queued messages
        self.workers.instance_ended(inst)  # the mqttasgi master restarts
