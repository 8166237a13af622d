"""Password hashes for the embedded broker, and that they are Mosquitto's own format."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from mqttbridge.broker.passwords import DEFAULT_ITERATIONS, PasswordHash, hash_password
from tests.services import MosquittoProcess


def test_a_hash_verifies_its_password_only() -> None:
    hashed = PasswordHash.parse(hash_password("s3cret"))
    assert hashed.iterations == DEFAULT_ITERATIONS
    assert hashed.verify(b"s3cret")
    assert not hashed.verify(b"s3cret ")
    assert not hashed.verify(b"")


def test_each_hash_has_its_own_salt_and_reads_back_as_written() -> None:
    first, second = hash_password("s3cret", iterations=5), hash_password("s3cret", iterations=5)
    assert first != second
    assert str(PasswordHash.parse(first)) == first
    assert first.startswith("$7$5$")


def test_repr_shows_no_digest() -> None:
    hashed = PasswordHash.parse(hash_password("s3cret", iterations=1))
    assert hashed.digest.hex() not in repr(hashed)
    assert str(hashed).rsplit("$", 1)[1] not in repr(hashed)


def test_mosquitto_passwd_hashes_verify(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(path), "alice", "s3cret"],
        check=True,
        capture_output=True,
    )
    hashed = PasswordHash.parse(path.read_text().strip().partition(":")[2])
    assert hashed.verify(b"s3cret") and not hashed.verify(b"guess")


def connack(broker: MosquittoProcess, username: str, password: str) -> str:
    """The reason Mosquitto gives a CONNECT with these credentials (paho's synchronous API)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set(username, password)
    reasons: list[str] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: reasons.append(reason.getName())
    client.connect(broker.host, broker.port)
    try:
        while not reasons:
            client.loop(timeout=1.0)
    finally:
        client.disconnect()
    return reasons[0]


@pytest.mark.integration
def test_mosquitto_accepts_our_hashes(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoProcess]
) -> None:
    password_file = tmp_path / "passwd"
    password_file.write_text(f"alice:{hash_password('s3cret')}\n")
    password_file.chmod(0o600)
    broker = mosquitto_factory(extra_config=[f"password_file {password_file}"])
    assert connack(broker, "alice", "s3cret") == "Success"
    assert connack(broker, "alice", "guess") == "Not authorized"
