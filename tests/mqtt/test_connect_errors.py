"""A connection that cannot work says why, in one line naming the setting, and ``serve()`` stops;
a network blip is retried at WARNING. Against a real private Mosquitto with a TLS listener and
certificates made for each run (tests/services/certs.py).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from mqttbridge.config.schema import BrokerConfig, Config, parse_config
from mqttbridge.mqtt.client import BrokerUnusable
from mqttbridge.mqtt.connect_errors import refused
from mqttbridge.server.server import Server
from tests.bridge_fixtures import recording_route, wait_until
from tests.services import MosquittoProcess, ServiceBinaryNotFound, TlsListener, find_binary
from tests.services.certs import Pki


def config(url: str, tls: dict[str, Path] | None = None, extra: str = "") -> Config:
    tls_yaml = "".join(f"    {key}: {path}\n" for key, path in (tls or {}).items())
    return parse_config(
        f"broker:\n  url: {url}\n  protocol: '5'\n  keepalive: 10\n"
        "  reconnect: {min_delay: 0.1, max_delay: 1}\n"
        + (f"  tls:\n{tls_yaml}" if tls_yaml else "")
        + extra,
        source="test_connect_errors.yaml",
    )


async def serve_until_it_gives_up(config: Config) -> str:
    """Run a bridge as ``mqttbridge run`` does; return the message it stopped with."""
    server = Server(config, install_signal_handlers=False, routes=[recording_route()])
    # A deadline for the old behaviour (retrying forever), not a measure of promptness.
    with pytest.raises(BrokerUnusable) as caught:
        await asyncio.wait_for(server.serve(), 30)
    assert not server.ready.is_set()
    return str(caught.value)


def client_log(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "mqttbridge.mqtt.client" and r.levelno == level
    ]


def assert_said_once(caplog: pytest.LogCaptureFixture, message: str) -> None:
    """The reason was logged once at ERROR, and nothing blamed a timeout or the network."""
    assert client_log(caplog, logging.ERROR) == [f"{message} (not retrying)"]
    assert client_log(caplog, logging.WARNING) == []
    assert "timed out" not in caplog.text


@pytest.fixture
def tls_broker(mosquitto_factory: Callable[..., MosquittoProcess], pki: Pki) -> MosquittoProcess:
    """Mosquitto with a plain listener and a TLS one that requires a client certificate."""
    listener = TlsListener(pki.ca.cert, pki.server.cert, pki.server.key, require_certificate=True)
    return mosquitto_factory(tls=listener)


def where(broker: MosquittoProcess, port: int | None = None) -> str:
    return f"{broker.host}:{port or broker.tls_port}"


# -- settings that can never work: one ERROR line, and serve() stops ----------------------------


async def test_a_missing_client_certificate_is_named_at_once(tls_broker, pki, caplog):
    message = await serve_until_it_gives_up(config(tls_broker.tls_url, {"ca_file": pki.ca.cert}))
    assert message == (
        f"broker {where(tls_broker)} requires a client certificate (tlsv13 alert certificate "
        "required): set broker.tls.cert_file and broker.tls.key_file"
    )
    assert_said_once(caplog, message)
    # What the broker saw, for comparison.
    assert "peer did not return a certificate" in tls_broker.log_path.read_text()


async def test_plain_mqtt_to_a_tls_port_is_named_at_once(tls_broker, caplog):
    message = await serve_until_it_gives_up(config(f"mqtt://127.0.0.1:{tls_broker.tls_port}"))
    assert message == (
        f"broker {where(tls_broker)} expects TLS on port {tls_broker.tls_port} and closed the "
        "connection when sent plain MQTT: use mqtts:// in broker.url"
    )
    assert_said_once(caplog, message)


async def test_tls_to_a_plain_port_is_named_at_once(tls_broker, pki, caplog):
    url = f"mqtts://127.0.0.1:{tls_broker.port}"
    message = await serve_until_it_gives_up(config(url, {"ca_file": pki.ca.cert}))
    assert message == (
        f"broker {where(tls_broker, tls_broker.port)} speaks plain MQTT on port "
        f"{tls_broker.port}, not TLS, and closed the connection during the TLS handshake: "
        "use mqtt:// in broker.url"
    )
    assert_said_once(caplog, message)


async def test_a_server_certificate_from_an_untrusted_ca_names_ca_file(tls_broker, pki, caplog):
    tls = {"ca_file": pki.other_ca.cert, "cert_file": pki.client.cert, "key_file": pki.client.key}
    message = await serve_until_it_gives_up(config(tls_broker.tls_url, tls))
    assert message.startswith(f"cannot verify the certificate of broker {where(tls_broker)} (")
    assert message.endswith(
        "): set broker.tls.ca_file to the CA certificate that signed it "
        f"(now {str(pki.other_ca.cert)!r})"
    )
    assert_said_once(caplog, message)


async def test_a_server_certificate_for_another_name_says_so(mosquitto_factory, pki, caplog):
    elsewhere = pki.ca.issue("elsewhere", hosts=("broker.invalid",))
    broker = mosquitto_factory(tls=TlsListener(pki.ca.cert, elsewhere.cert, elsewhere.key))
    message = await serve_until_it_gives_up(config(broker.tls_url, {"ca_file": pki.ca.cert}))
    assert message == (
        f"the certificate of broker {where(broker)} is not valid for the host in broker.url, "
        "'127.0.0.1': put a name the certificate lists in broker.url, or have the broker's "
        "certificate reissued for it"
    )
    assert_said_once(caplog, message)


async def test_a_client_certificate_the_broker_does_not_trust_is_named(tls_broker, pki, caplog):
    stranger = pki.other_ca.issue("stranger", client=True)
    tls = {"ca_file": pki.ca.cert, "cert_file": stranger.cert, "key_file": stranger.key}
    message = await serve_until_it_gives_up(config(tls_broker.tls_url, tls))
    assert message == (
        f"broker {where(tls_broker)} rejected the client certificate in broker.tls.cert_file "
        f"({str(stranger.cert)!r}): tlsv1 alert unknown ca; use one signed by a CA the broker "
        "trusts"
    )
    assert_said_once(caplog, message)


def _password_file(directory: Path, user: str, password: str) -> Path:
    binary = find_binary("mosquitto_passwd", "MOSQUITTO_PASSWD_BIN")
    if binary is None:
        error = ServiceBinaryNotFound("mosquitto_passwd", "mosquitto", "MOSQUITTO_PASSWD_BIN")
        pytest.skip(str(error))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "passwords"
    subprocess.run([binary, "-c", "-b", str(path), user, password], check=True, timeout=30)
    return path


async def test_a_refused_password_is_named_and_not_echoed(mosquitto_factory, tmp_path, caplog):
    passwords = _password_file(tmp_path / "auth", "alice", "right")
    broker = mosquitto_factory(extra_config=[f"password_file {passwords}"])
    settings = config(broker.url, extra="  username: alice\n  password: WRONG-s3cret\n")
    message = await serve_until_it_gives_up(settings)
    assert message.startswith(f"broker {broker.host}:{broker.port} refused the connection: ")
    assert "broker.password" in message and "WRONG-s3cret" not in caplog.text
    assert_said_once(caplog, message)


def test_transient_connack_refusals_are_retried() -> None:
    busy = ReasonCode(PacketTypes.CONNACK, "Server busy")
    failure = refused(busy, BrokerConfig(url="mqtt://h"), "h:1883", "c1")
    assert not failure.permanent
    assert failure.message == "broker h:1883 refused the connection: Server busy (client id 'c1')"


# -- a network blip is still a blip --------------------------------------------------------------


async def test_a_broker_that_is_not_up_yet_is_waited_for_at_warning(mosquitto_factory, caplog):
    broker = mosquitto_factory(start=False)
    server = Server(config(broker.url), install_signal_handlers=False, routes=[recording_route()])
    serving = asyncio.get_running_loop().create_task(server.serve())
    try:
        await wait_until(
            lambda: any(
                "cannot connect to broker" in m for m in client_log(caplog, logging.WARNING)
            ),
            timeout=10,
            what="a WARNING about the refused connection",
        )
        await asyncio.to_thread(broker.start)
        await wait_until(server.ready.is_set, timeout=20, what="the bridge to connect")
        assert server.failure is None and not serving.done()
        assert client_log(caplog, logging.ERROR) == []
    finally:
        server.request_stop()
        await asyncio.wait_for(serving, 10)


# -- after the bridge has run: retried, at ERROR, each failure in full once ---------------------


async def test_a_certificate_gone_bad_while_running_is_retried_at_error_and_recovers(
    tls_broker, pki, run_bridge, caplog
):
    tls = {"ca_file": pki.ca.cert, "cert_file": pki.client.cert, "key_file": pki.client.key}
    server = await run_bridge(config(tls_broker.tls_url, tls), routes=[recording_route()])
    good = tls_broker.tls

    # The broker comes back with a certificate the bridge cannot verify.
    stranger = pki.other_ca.issue("impostor", hosts=("127.0.0.1",))
    await asyncio.to_thread(tls_broker.stop)
    tls_broker.tls = TlsListener(pki.ca.cert, stranger.cert, stranger.key)
    await asyncio.to_thread(tls_broker.start)

    def errors() -> list[str]:
        return client_log(caplog, logging.ERROR)

    await wait_until(lambda: len(errors()) >= 2, timeout=20, what="two failed attempts")
    first, again = errors()[:2]
    assert first.startswith(f"cannot verify the certificate of broker {where(tls_broker)} (")
    assert again.startswith(f"still cannot connect to broker {where(tls_broker)}: ")
    assert server.failure is None  # it ran before: keep trying, the broker may be fixed

    await asyncio.to_thread(tls_broker.stop)
    tls_broker.tls = good
    await asyncio.to_thread(tls_broker.start)
    await wait_until(server.ready.is_set, timeout=20, what="the bridge to reconnect")
