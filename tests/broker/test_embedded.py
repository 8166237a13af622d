"""The embedded amqtt broker, exercised by real paho-mqtt 2.x clients in their own threads."""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import logging
import queue
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from mqttbridge.broker import embedded
from mqttbridge.broker.embedded import EmbeddedBroker, EmbeddedBrokerError
from mqttbridge.broker.passwords import hash_password

pytestmark = pytest.mark.integration

TIMEOUT = 5.0
# One iteration: these tests are about who gets in, not about the hash's cost.
ALICE = {"alice": hash_password("s3cret", iterations=1)}


class PahoClient:
    """A paho client on its own network thread; waits are awaitable so the broker's loop runs."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 60,
        will: tuple[str, bytes] | None = None,
        client_id: str = "",
        clean_session: bool = True,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311,
    ) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        self.host, self.port, self.keepalive = parts.hostname, parts.port, keepalive
        # paho refuses clean_session for MQTT 5 (it has clean_start in connect instead).
        session = {"clean_session": clean_session} if protocol != mqtt.MQTTv5 else {}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **session
        )
        self.client.reconnect_delay_set(60, 60)  # a refused client must not retry during a test
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.disconnected = threading.Event()
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc)
        self.client.on_subscribe = lambda _c, _u, _m, rcs, _p: self.subacks.put(rcs)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_disconnect = lambda *_: self.disconnected.set()

    async def connect(self) -> ReasonCode:
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        return await asyncio.to_thread(self.connack.get, timeout=TIMEOUT)

    async def subscribe(self, topic: str, qos: int) -> None:
        self.client.subscribe(topic, qos)
        granted = await asyncio.to_thread(self.subacks.get, timeout=TIMEOUT)
        assert [rc.value for rc in granted] == [qos], f"SUBACK {granted} for {topic!r} at {qos}"

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos, retain)
        await asyncio.to_thread(info.wait_for_publish, TIMEOUT)
        assert info.is_published(), f"no acknowledgement for the QoS {qos} PUBLISH to {topic!r}"

    async def next_message(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage:
        return await asyncio.to_thread(self.messages.get, timeout=timeout)

    async def assert_no_message(self, wait: float = 0.3) -> None:
        with pytest.raises(queue.Empty):
            message = await self.next_message(timeout=wait)
            pytest.fail(f"expected no message, got {message.payload!r} on {message.topic!r}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(port=0) as running:
        yield running


@pytest.fixture
def clients() -> Iterator[list[PahoClient]]:
    made: list[PahoClient] = []
    yield made
    for client in made:
        client.close()


async def connected(clients: list[PahoClient], url: str, **options: Any) -> PahoClient:
    client = PahoClient(url, **options)
    clients.append(client)
    reason = await client.connect()
    assert not reason.is_failure, f"CONNACK {reason} from {url}"
    return client


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def assert_closed_by_peer(sock: socket.socket) -> None:
    try:
        data = sock.recv(1)
    except ConnectionResetError:  # closed with unread data, or never accepted from the backlog
        return
    assert data == b"", f"expected the broker to close the connection, read {data!r}"


async def test_port_0_binds_a_free_port_and_url_reports_it(broker: EmbeddedBroker) -> None:
    parts = urlsplit(broker.url)
    assert (parts.scheme, parts.hostname) == ("mqtt", "127.0.0.1"), broker.url
    assert parts.port, f"url {broker.url!r} should report the bound port, not 0"
    with socket.create_connection(("127.0.0.1", parts.port), timeout=TIMEOUT):
        pass


async def test_subscriber_receives_qos0_and_qos1_publishes(
    broker: EmbeddedBroker, clients: list[PahoClient]
) -> None:
    subscriber = await connected(clients, broker.url)
    await subscriber.subscribe("sensors/+/temp", qos=1)
    publisher = await connected(clients, broker.url)

    await publisher.publish("sensors/a/temp", b"20.5", qos=0)
    message = await subscriber.next_message()
    assert (message.topic, message.payload) == ("sensors/a/temp", b"20.5")

    await publisher.publish("sensors/b/temp", b"21.0", qos=1)
    message = await subscriber.next_message()
    assert (message.topic, message.payload, message.qos) == ("sensors/b/temp", b"21.0", 1)

    await publisher.publish("sensors/c/humidity", b"40", qos=1)
    await subscriber.assert_no_message()


async def test_stop_disconnects_clients_releases_the_port_and_is_idempotent(
    clients: list[PahoClient],
) -> None:
    broker = EmbeddedBroker(port=0)
    await broker.start()
    with pytest.raises(EmbeddedBrokerError, match="already running"):
        await broker.start()
    port = urlsplit(broker.url).port
    client = await connected(clients, broker.url)
    # A connection that never sends CONNECT is not amqtt's yet; stop must not wait for it.
    silent = socket.create_connection(("127.0.0.1", port or 0), timeout=TIMEOUT)

    started = time.monotonic()
    await broker.stop()
    assert time.monotonic() - started < 3, "stop() waited on a client"
    await broker.stop()

    assert await asyncio.to_thread(client.disconnected.wait, TIMEOUT), "client still connected"
    assert_closed_by_peer(silent)
    silent.close()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port or 0))
        again.listen()


async def test_stopped_broker_can_start_again() -> None:
    broker = EmbeddedBroker(port=0)
    async with broker:
        pass
    async with broker:
        assert broker.running
    assert not broker.running


async def test_taken_port_is_reported_with_how_to_fix_it() -> None:
    with listening_socket() as taken:
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedBrokerError) as caught:
            await EmbeddedBroker("127.0.0.1", port).start()
    assert str(caught.value) == (
        f"cannot start the embedded broker: 127.0.0.1:{port} is already in use (another MQTT "
        "broker such as Mosquitto may be running there). Set broker.listen to a free address "
        f"(e.g. 127.0.0.1:{port + 1}) or point broker.url at the running broker "
        f"(mqtt://127.0.0.1:{port})."
    )


def test_non_loopback_host_without_authentication_is_refused() -> None:
    with pytest.raises(EmbeddedBrokerError) as caught:
        EmbeddedBroker("0.0.0.0", 1883)
    assert str(caught.value) == (
        "refusing to start the embedded broker: broker.listen: 0.0.0.0:1883 is not a loopback "
        "address, and without broker.users the embedded broker would accept anonymous clients "
        "from the network; add broker.users (`mqttbridge passwd <username>` makes an entry), "
        "listen on 127.0.0.1:1883, or set broker.allow_anonymous: true if that is intended"
    )
    # Either explicit choice is accepted.
    assert EmbeddedBroker("0.0.0.0", allow_anonymous=True).allow_anonymous
    assert not EmbeddedBroker("0.0.0.0", users=ALICE).allow_anonymous


def test_a_broker_nobody_could_use_is_refused() -> None:
    with pytest.raises(EmbeddedBrokerError, match=r"false without broker\.users admits no device"):
        EmbeddedBroker(allow_anonymous=False)


def test_a_plaintext_password_is_refused_without_being_shown() -> None:
    with pytest.raises(ValueError) as caught:
        EmbeddedBroker(users={"alice": "s3cret"})
    assert "s3cret" not in str(caught.value)
    assert str(caught.value).startswith("users['alice']: expected a password hash ($7$...)")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True),
     ("[::1]", True), ("192.168.1.10", False), ("broker.example.com", False)],
)  # fmt: skip
def test_anonymous_is_allowed_by_default_only_on_loopback(host: str, allowed: bool) -> None:
    if allowed:
        assert EmbeddedBroker(host).allow_anonymous
    else:
        with pytest.raises(EmbeddedBrokerError, match="accept anonymous clients"):
            EmbeddedBroker(host)


async def test_users_need_the_right_password(clients: list[PahoClient]) -> None:
    async with EmbeddedBroker(port=0, users=ALICE) as broker:
        for username, password in [("alice", "wrong"), ("mallory", "s3cret"), (None, None)]:
            refused = PahoClient(broker.url, username=username, password=password)
            clients.append(refused)
            reason = await refused.connect()
            assert reason.is_failure, f"{username!r}/{password!r} was accepted: {reason}"
            assert reason.getName() == "Not authorized"

        alice = await connected(clients, broker.url, username="alice", password="s3cret")
        await alice.subscribe("private", qos=1)
        await alice.publish("private", b"hello", qos=1)
        assert (await alice.next_message()).payload == b"hello"


async def test_refused_client_cannot_disturb_the_client_whose_id_it_claims(
    clients: list[PahoClient],
) -> None:
    # amqtt alone would drop the victim's session (and subscriptions) before checking the password.
    async with EmbeddedBroker(port=0, users=ALICE) as broker:
        alice = await connected(
            clients, broker.url, username="alice", password="s3cret", client_id="dev1"
        )
        await alice.subscribe("private", qos=1)
        for clean_session in (True, False):
            mallory = PahoClient(
                broker.url, username="alice", password="guess", client_id="dev1",
                clean_session=clean_session,
            )  # fmt: skip
            clients.append(mallory)
            assert (await mallory.connect()).is_failure

        await alice.publish("private", b"still here", qos=1)
        assert (await alice.next_message()).payload == b"still here"
        assert not alice.disconnected.is_set()


async def test_persistent_session_keeps_qos1_messages_while_offline(
    broker: EmbeddedBroker, clients: list[PahoClient]
) -> None:
    # amqtt's AnonymousAuthPlugin would mark the session anonymous and forget it on disconnect.
    subscriber = await connected(clients, broker.url, client_id="bridge", clean_session=False)
    await subscriber.subscribe("jobs", qos=1)
    subscriber.close()
    publisher = await connected(clients, broker.url)
    await publisher.publish("jobs", b"while you were away", qos=1)

    back = await connected(clients, broker.url, client_id="bridge", clean_session=False)
    assert (await back.next_message()).payload == b"while you were away"


async def test_anonymous_is_accepted_next_to_users_when_allowed(clients: list[PahoClient]) -> None:
    async with EmbeddedBroker(port=0, users=ALICE, allow_anonymous=True) as broker:
        await connected(clients, broker.url)
        wrong = PahoClient(broker.url, username="alice", password="wrong")
        clients.append(wrong)
        assert (await wrong.connect()).is_failure


async def test_a_mosquitto_passwd_hash_lets_its_user_in(
    tmp_path: Path, clients: list[PahoClient]
) -> None:
    # Devices move between Mosquitto and the embedded broker with the same password file lines.
    password_file = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(password_file), "alice", "s3cret"],
        check=True,
        capture_output=True,
    )
    username, _, hashed = password_file.read_text().strip().partition(":")
    async with EmbeddedBroker(port=0, users={username: hashed}) as broker:
        await connected(clients, broker.url, username="alice", password="s3cret")
        wrong = PahoClient(broker.url, username="alice", password="s3cret!")
        clients.append(wrong)
        assert (await wrong.connect()).getName() == "Not authorized"


async def test_the_owner_credentials_get_in_whatever_the_settings(
    clients: list[PahoClient],
) -> None:
    # The bridge's own client: no anonymous access and no configured user for it.
    async with EmbeddedBroker(port=0, users=ALICE, allow_anonymous=False) as broker:
        username, password = broker.owner_credentials
        await connected(clients, broker.url, username=username, password=password)
        guess = PahoClient(broker.url, username=username, password="guess")
        clients.append(guess)
        assert (await guess.connect()).getName() == "Not authorized"
    assert EmbeddedBroker(port=0).owner_credentials != broker.owner_credentials


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_oversized_payload_is_dropped_but_acknowledged(
    qos: int, clients: list[PahoClient], caplog: pytest.LogCaptureFixture
) -> None:
    async with EmbeddedBroker(port=0, max_payload_bytes=10) as broker:
        subscriber = await connected(clients, broker.url)
        await subscriber.subscribe("big/#", qos=2)
        publisher = await connected(clients, broker.url)

        await publisher.publish("big/one", b"x" * 11, qos=qos)  # acknowledged: no resends
        await publisher.publish("big/two", b"y" * 10, qos=qos)  # the stream is still in step

        message = await subscriber.next_message()
        assert (message.topic, message.payload) == ("big/two", b"y" * 10)
        await subscriber.assert_no_message()
    assert "dropped a PUBLISH to 'big/one'" in caplog.text
    assert "max_payload_bytes=10" in caplog.text


async def test_large_payload_within_the_limit_passes(
    broker: EmbeddedBroker, clients: list[PahoClient]
) -> None:
    subscriber = await connected(clients, broker.url)
    await subscriber.subscribe("blob", qos=1)
    publisher = await connected(clients, broker.url)
    payload = bytes(range(256)) * 4096  # 1 MiB: read in chunks, across several TCP segments
    await publisher.publish("blob", payload, qos=1)
    assert (await subscriber.next_message()).payload == payload


async def test_silent_client_is_dropped_after_1_5_keepalive_and_its_will_published(
    broker: EmbeddedBroker, clients: list[PahoClient]
) -> None:
    watcher = await connected(clients, broker.url)
    await watcher.subscribe("devices/+/status", qos=1)
    device = await connected(clients, broker.url, keepalive=1, will=("devices/d1/status", b"lost"))
    started = time.monotonic()
    # The socket stays open but goes silent: no PINGREQ any more. (Joining paho's thread can
    # take up to 1 s, which the bound below allows for.)
    await asyncio.to_thread(device.client.loop_stop)

    message = await watcher.next_message()
    assert (message.topic, message.payload) == ("devices/d1/status", b"lost")
    assert time.monotonic() - started < 4, "took much longer than 1.5 x keep-alive to notice"


async def test_connection_without_connect_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "_CONNECT_TIMEOUT", 0.3)
    async with EmbeddedBroker(port=0) as broker:
        port = urlsplit(broker.url).port or 0
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as silent:
            await asyncio.to_thread(assert_closed_by_peer, silent)


async def test_amqtt_logs_stay_at_warning_unless_root_is_debug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("amqtt", "transitions"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger(), "level", logging.INFO)
    async with EmbeddedBroker(port=0):
        assert logging.getLogger("amqtt").level == logging.WARNING
        assert logging.getLogger("transitions").level == logging.WARNING

    for name in ("amqtt", "transitions"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger(), "level", logging.DEBUG)
    async with EmbeddedBroker(port=0):
        assert logging.getLogger("amqtt").level == logging.NOTSET


# --- retained messages: MQTT-3.3.1-6 (sent on SUBSCRIBE, to matching filters) and -3.3.1-9 -------


async def retain(clients: list[PahoClient], url: str, *messages: tuple[str, bytes]) -> None:
    """Publish retained messages, with a client subscribed to them as the bridge would be."""
    bridge = await connected(clients, url, client_id="bridge", clean_session=False)
    await bridge.subscribe("devices/+/status", qos=1)
    await bridge.subscribe("devices/+/commands", qos=1)
    device = await connected(clients, url)
    for topic, payload in messages:
        await device.publish(topic, payload, qos=1, retain=True)
    for _ in messages:  # the broker has stored each once its live copy is out
        await bridge.next_message()


async def test_retained_message_does_not_reach_a_subscription_it_does_not_match(
    broker: EmbeddedBroker, clients: list[PahoClient]
) -> None:
    await retain(clients, broker.url, ("devices/t1/status", b"online"))
    # amqtt 0.12 sent it on CONNECT, for the bridge's filter, to every client.
    client = await connected(clients, broker.url)
    await client.subscribe("nothing/here", qos=1)
    await client.assert_no_message()


async def test_device_gets_its_own_retained_messages_exactly_once(
    broker: EmbeddedBroker, clients: list[PahoClient]
) -> None:
    await retain(
        clients,
        broker.url,
        ("devices/t1/commands", b"fan on"),
        ("devices/t2/commands", b"fan off"),
        ("devices/t1/status", b"online"),
    )
    device = await connected(clients, broker.url, client_id="t1")
    await device.subscribe("devices/t1/commands", qos=1)
    message = await device.next_message()
    assert (message.topic, message.payload, message.retain) == (
        "devices/t1/commands",
        b"fan on",
        True,
    )
    await device.assert_no_message()


async def test_reconnecting_client_gets_no_retained_messages_again(
    broker: EmbeddedBroker, clients: list[PahoClient]
) -> None:
    await retain(
        clients, broker.url, ("devices/t1/commands", b"fan on"), ("devices/t2/status", b"up")
    )
    device = await connected(clients, broker.url, client_id="t1", clean_session=False)
    await device.subscribe("devices/t1/commands", qos=1)
    assert (await device.next_message()).payload == b"fan on"
    device.close()
    # MQTT-3.3.1-6: retained messages are sent when a subscription is made, not on reconnect.
    for clean_session in (False, True):
        again = await connected(clients, broker.url, client_id="t1", clean_session=clean_session)
        await again.assert_no_message()
        again.close()


async def test_message_queued_while_offline_arrives_without_the_retain_flag(
    broker: EmbeddedBroker, clients: list[PahoClient]
) -> None:
    subscriber = await connected(clients, broker.url, client_id="t1", clean_session=False)
    await subscriber.subscribe("devices/t1/commands", qos=1)
    subscriber.close()
    publisher = await connected(clients, broker.url)
    await publisher.publish("devices/t1/commands", b"fan on", qos=1, retain=True)

    back = await connected(clients, broker.url, client_id="t1", clean_session=False)
    message = await back.next_message()
    # MQTT-3.3.1-9: delivered for an established subscription, so not flagged as retained.
    assert (message.payload, message.retain) == (b"fan on", False)
    await back.assert_no_message()


def test_amqtt_private_methods_we_override_are_still_there() -> None:
    # broker/embedded.py:_Broker overrides these; if amqtt renames or reshapes them, the overrides
    # would silently stop applying and retained messages leak again. Then re-read amqtt's broker
    # and update _Broker and AMQTT_VERSIONS together.
    from amqtt.broker import Broker

    expected = {
        "_handle_subscription": ["self", "client_session", "handler", "subscribe_waiter"],
        "_publish_retained_messages_for_subscription": ["self", "subscription", "session"],
        "_publish_session_retained_messages": ["self", "session"],
        "_get_handler": ["self", "session"],
    }
    for name, parameters in expected.items():
        method = getattr(Broker, name, None)
        assert method is not None, f"amqtt's Broker has no {name} any more"
        assert list(inspect.signature(method).parameters) == parameters, name
    connect = inspect.getsource(Broker._handle_client_session)
    assert "_publish_session_retained_messages(" in connect
    assert "_publish_retained_messages_for_subscription(" in connect
    assert "self._publish_retained_messages_for_subscription(" in inspect.getsource(
        Broker._handle_subscription
    )
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert f'"amqtt{embedded.AMQTT_VERSIONS}"' in pyproject
    installed = tuple(int(part) for part in importlib.metadata.version("amqtt").split(".")[:3])
    assert (0, 12, 1) <= installed < (0, 13), installed


# --- protocol versions: MQTT-3.1.2-2 --------------------------------------------------------------


@pytest.mark.parametrize("users", [None, ALICE], ids=["anonymous", "users"])
async def test_mqtt_5_client_is_told_the_protocol_version_is_unacceptable(
    users: dict[str, str] | None, clients: list[PahoClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mqttbridge.broker.embedded")
    async with EmbeddedBroker(port=0, users=users) as broker:
        device = PahoClient(broker.url, protocol=mqtt.MQTTv5, username="alice", password="s3cret")
        clients.append(device)
        reason = await device.connect()
    # paho reads return code 1 (unacceptable protocol version) from a 3.1.1 broker this way.
    assert reason.getName() == "Unsupported protocol version", reason
    refusals = [r.getMessage() for r in caplog.records if r.name == "mqttbridge.broker.embedded"]
    refusals = [message for message in refusals if message.startswith("refused")]
    assert refusals == [
        f"refused MQTT client {device.host}:{refusals[0].split(':')[1].split(' ')[0]}: it speaks "
        "MQTT 5 and the embedded broker speaks MQTT 3.1.1 only; configure the device for MQTT "
        "3.1.1, or run an MQTT 5 broker such as Mosquitto and point broker.url at it"
    ], caplog.text
    assert "malformed" not in caplog.text


async def test_mqtt_3_1_client_is_told_the_protocol_version_is_unacceptable(
    broker: EmbeddedBroker, clients: list[PahoClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mqttbridge.broker.embedded")
    device = PahoClient(broker.url, protocol=mqtt.MQTTv31)
    clients.append(device)
    assert (await device.connect()).getName() == "Unsupported protocol version"
    assert "it speaks MQTT 3.1 and the embedded broker speaks MQTT 3.1.1 only" in caplog.text


async def test_connect_of_another_protocol_is_closed_without_connack(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mqttbridge.broker.embedded")
    port = urlsplit(broker.url).port or 0
    body = b"\x00\x04HTTP\x04\x02\x00\x3c\x00\x00"
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        await asyncio.to_thread(assert_closed_by_peer, sock)  # MQTT-3.1.2-1
    assert "not MQTT: protocol name 'HTTP'" in caplog.text
