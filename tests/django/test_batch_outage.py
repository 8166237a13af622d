"""Must hold (issue 9): PostgreSQL stopped while readings flow through the bridge into a
``BatchWriter``; the bridge stays up, logs the outage once, and after the database returns every
QoS 1 reading the broker acknowledged to its publisher is in the table.

Everything is a real process: a private PostgreSQL cluster and Mosquitto, the bridge run as a
user runs it (``mqttbridge run --asgi`` in a Django project directory), and a paho publisher.
Each step waits for an event (rows counted, a log line, PUBACKs counted), never for a duration.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.django_project import ProjectProcess, clean_env, make_project
from tests.services import MosquittoProcess, PahoClient, PostgresProcess
from tests.services.mqtt_client import NumberedPublisher

DEVICES = 20
OUTAGE_LINE = "unavailable (OperationalError"
RECOVERY_LINE = "is back after"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll; the timeout only turns a hang into a failure that says what was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.integration
def test_no_acknowledged_reading_is_lost_while_postgresql_is_down(
    postgres_cluster: PostgresProcess, mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    env = clean_env(DATABASE_URL=postgres_cluster.url)
    project = make_project(tmp_path, env=env)
    (project / "config.yaml").write_text(
        f"broker:\n  url: {mosquitto.url}\nroutes:\n"
        "  - topic: sensors/{device_id}/batched\n    consumer: telemetry.batched:BatchedReadings\n"
    )
    bridge = ProjectProcess(project, "run", "--asgi", "myproject.asgi:application", env=env)
    client = PahoClient(mosquitto.host, mosquitto.port, client_id="numbered-publisher")
    try:
        bridge.wait_for("bridge ready")
        client.connect()
        topics = [f"sensors/d{n}/batched" for n in range(DEVICES)]
        publisher = NumberedPublisher(client, topics).start()

        def stored() -> int:
            return int(postgres_cluster.psql("SELECT count(*) FROM telemetry_reading"))

        wait_for(lambda: stored() >= 300, "300 readings stored before the outage")
        postgres_cluster.stop()  # fast shutdown, as pg_ctl stop -m fast
        bridge.wait_for(OUTAGE_LINE)
        # Readings keep coming and the broker keeps acknowledging them while nothing is stored:
        # every device has a reading held, and thousands more wait in the bridge and the broker.
        during = len(publisher.acked)
        wait_for(lambda: len(publisher.acked) >= during + 15000, "15000 PUBACKs during the outage")
        postgres_cluster.start()
        bridge.wait_for(RECOVERY_LINE)
        after = len(publisher.acked)
        wait_for(lambda: len(publisher.acked) >= after + 300, "300 PUBACKs after the outage")
        publisher.stop()
        acked = set(publisher.acked)

        def distinct() -> int:
            return int(postgres_cluster.psql("SELECT count(DISTINCT seq) FROM telemetry_reading"))

        wait_for(lambda: distinct() >= len(acked), f"{len(acked)} distinct readings stored")
        rows = postgres_cluster.psql("SELECT seq FROM telemetry_reading").split()
        seqs = [int(seq) for seq in rows]
        assert acked <= set(seqs), f"lost: {sorted(acked - set(seqs))[:20]}"
        # The bridge kept its MQTT connection, so the broker redelivered nothing: no repeats.
        assert len(seqs) == len(set(seqs)), f"{len(seqs) - len(set(seqs))} duplicated rows"
        assert bridge.proc.poll() is None, bridge.output
        assert bridge.output.count(OUTAGE_LINE) == 1, bridge.output
        assert bridge.output.count(RECOVERY_LINE) == 1, bridge.output
        assert "Traceback" not in bridge.output, bridge.output
        bridge.proc.send_signal(signal.SIGTERM)
        assert bridge.proc.wait(30) == 0, bridge.output
    finally:
        client.close()
        bridge.close()
