"""The soak: QoS 1 at a steady pace through bridge SIGKILLs and broker restarts; nothing lost.

A private Mosquitto (persistence on, restarted here), one bridge subprocess (``python -m
mqttbridge run``) with a persistent session (fixed client id, MQTT 5, ``clean_start: false``,
``session_expiry: 3600``) routing ``soak/{device_id}`` to ``tests.soak.recorder:SoakRecorder``,
and ``tests.soak.publisher`` publishing ``p000000``.. over 100 devices from a persistent session
of its own. Spaced evenly through the stream, in turn:

* **bridge SIGKILL**: no PUBACK for what was in flight, no DISCONNECT; a new bridge process is
  started at once with the same client id.
* **broker restart**: SIGTERM (Mosquitto writes its persistence file on the way out), then
  started again on the same port. The last broker fault of the run is a **crash** instead:
  the publisher is SIGSTOPped, the broker saves (SIGUSR1) and is SIGKILLed, the publisher
  continued. The pause matters: a message the broker acknowledged after its last save is lost
  by the broker, whatever the bridge does, so the crash is taken at a checkpoint.

Then every payload published must be in the record, and the broker must have kept the bridge's
session on every reconnect. Printed (``pytest -s``), for docs/benchmarks.md: handled more than
once (and why: redelivered with DUP, replayed by the broker from its file, or sent twice by the
publisher), records with DUP set, first handlings out of order per device, and per fault the
time from the fault to the next message handled over the new connection.

100,000 messages at 1,000 msg/s take about 105 s: marked ``slow`` (``-m "not slow"`` leaves it
out); ``MQTTBRIDGE_SOAK_MESSAGES=10000`` makes a short run.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.children import Child, ChildError
from tests.apps import RECORD_ENV
from tests.services import MosquittoProcess

BRIDGE_CLIENT_ID = "soak-bridge"
MESSAGES = int(os.environ.get("MQTTBRIDGE_SOAK_MESSAGES", "100000"))
RATE = 1_000  # msg/s
BRIDGE_KILLS = BROKER_FAULTS = 5
SESSION_RE = re.compile(r"session present: (True|False)")


@dataclass
class Fault:
    kind: str  # "bridge-kill", "broker-restart" or "broker-crash"
    at_message: int  # planned; then messages the publisher had sent when it was injected
    at: float = 0.0  # time.monotonic() of the signal
    back: float = 0.0  # new bridge spawned / broker answering again
    ready: float = 0.0  # new bridge logged "bridge ready" (bridge faults only)
    recovered: float = float("nan")  # first message handled after ``back``

    @property
    def label(self) -> str:
        return {
            "bridge-kill": "bridge SIGKILL, restarted",
            "broker-restart": "broker SIGTERM, restarted",
            "broker-crash": "broker save + SIGKILL, restarted",
        }[self.kind]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at_message": self.at_message,
            "down_seconds": self.down,
            "recovery_seconds": self.recovery,
        }

    @property
    def down(self) -> float:
        """Broker: until it answered again. Bridge: until the new one was ready."""
        return (self.ready or self.back) - self.at

    @property
    def recovery(self) -> float:
        return self.recovered - self.at


@dataclass
class Record:
    """The recorder's file, read incrementally: (topic, payload, dup, monotonic time)."""

    path: Path
    lines: list[tuple[str, str, bool, float]] = field(default_factory=list)
    payloads: set[str] = field(default_factory=set)
    _offset: int = 0
    _partial: bytes = b""

    def read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        *whole, self._partial = data.split(b"\n")  # a line being written is not whole yet
        for raw in whole:
            topic, payload, dup, at = raw.decode().split(" ")
            self.lines.append((topic, payload, dup == "1", float(at)))
            self.payloads.add(payload)


class _Bridges:
    """The bridge under test, one process after another (each SIGKILL starts the next)."""

    def __init__(self, workdir: Path, config: Path) -> None:
        self.workdir = workdir
        self.config = config
        self.current: Child | None = None
        self.logs: list[Path] = []

    def start(self) -> float:
        name = f"bridge-{len(self.logs) + 1}"
        self.current = Child(
            name, "mqttbridge", ["run", "--config", str(self.config)], self.workdir
        )
        self.logs.append(self.current.log_path)
        return time.monotonic()

    def wait_ready(self, timeout: float = 30.0) -> float:
        child = self.current
        assert child is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if "bridge ready" in child.log_path.read_text(errors="replace"):
                    return time.monotonic()
            if child.proc.poll() is not None:
                raise ChildError(f"{child.name} exited with {child.proc.returncode}\n"
                                 f"{child.log_tail()}")  # fmt: skip
            time.sleep(0.01)
        raise ChildError(f"{child.name}: not ready within {timeout:g} s\n{child.log_tail()}")

    def kill(self) -> float:
        assert self.current is not None
        at = time.monotonic()
        self.current.kill()  # SIGKILL, and reaped
        return at

    def alive(self) -> bool:
        return self.current is not None and self.current.proc.poll() is None

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop(timeout=15)

    def sessions(self) -> list[bool]:
        """``session present`` of every connection any of the bridges made, in order."""
        found = []
        for path in self.logs:
            with contextlib.suppress(FileNotFoundError):
                found += [m == "True" for m in SESSION_RE.findall(path.read_text())]
        return found

    def tracebacks(self) -> int:
        count = 0
        for path in self.logs:
            with contextlib.suppress(FileNotFoundError):
                count += path.read_text(errors="replace").count("Traceback")
        return count


def _config_text(port: int) -> str:
    return (
        "broker:\n"
        f"  url: mqtt://127.0.0.1:{port}\n"
        "  protocol: '5'\n"
        f"  client_id: {BRIDGE_CLIENT_ID}\n"
        "  clean_start: false\n"
        "  session_expiry: 3600\n"
        "  keepalive: 5\n"
        "  reconnect: {min_delay: 0.1, max_delay: 1}\n"
        "channel_layer:\n"
        "  url: memory://\n"
        "routes:\n"
        "  - topic: soak/{device_id}\n"
        "    consumer: tests.soak.recorder:SoakRecorder\n"
        "    qos: 1\n"
    )


def _plan(count: int, bridge_kills: int, broker_faults: int) -> list[Fault]:
    """Faults spaced evenly through the stream, bridge and broker in turn; the last broker
    fault is the crash (when there is more than one)."""
    kinds: list[str] = []
    bridges, brokers = bridge_kills, broker_faults
    while bridges or brokers:
        if bridges:
            kinds.append("bridge-kill")
            bridges -= 1
        if brokers:
            brokers -= 1
            kinds.append("broker-crash" if brokers == 0 and broker_faults > 1 else "broker-restart")
    total = len(kinds)
    return [Fault(kind, count * (n + 1) // (total + 1)) for n, kind in enumerate(kinds)]


def _broker_fault(fault: Fault, broker: MosquittoProcess, publisher: Child) -> None:
    if fault.kind == "broker-restart":
        fault.at = time.monotonic()
        broker.stop(timeout=30)  # SIGTERM: Mosquitto saves sessions and queues, then exits
    else:
        os.kill(publisher.pid, signal.SIGSTOP)
        try:
            time.sleep(0.3)  # what the publisher already sent is read and acknowledged
            broker.save()  # SIGUSR1, waits for mosquitto.db to be rewritten
            fault.at = time.monotonic()
            broker.kill()  # SIGKILL: a crash right after that checkpoint
        finally:
            os.kill(publisher.pid, signal.SIGCONT)
    broker.start(timeout=30)
    fault.back = time.monotonic()


@pytest.mark.slow
@pytest.mark.timeout(MESSAGES / RATE + 300)
def test_persistent_sessions_carry_every_qos1_message_through_bridge_and_broker_faults(
    mosquitto: MosquittoProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = Record(tmp_path / "handled.txt")
    config = tmp_path / "bridge.yaml"
    config.write_text(_config_text(mosquitto.port))
    plan = _plan(MESSAGES, BRIDGE_KILLS, BROKER_FAULTS)
    _log(
        f"{MESSAGES:,} QoS 1 messages at {RATE:,} msg/s over 100 devices; faults at "
        + ", ".join(f"{f.at_message:,} ({f.kind})" for f in plan)
    )
    monkeypatch.setenv(RECORD_ENV, str(record.path))  # inherited by every bridge process
    bridges = _Bridges(tmp_path, config)
    started = time.monotonic()
    try:
        bridges.start()
        bridges.wait_ready()
        published = _publish_through_faults(mosquitto, bridges, plan, tmp_path)
        _wait_for_all(record, MESSAGES, bridges)
        bridge_alive = bridges.alive()
        bridges.stop()
        record.read()
    finally:
        bridges.stop()
    result = _analyse(record, MESSAGES, plan, published, bridges)
    result |= {
        "seconds": time.monotonic() - started,
        "publishing_seconds": published["seconds"],
        "bridge_alive_at_end": bridge_alive,
        "record": str(record.path),
    }
    (tmp_path / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    _print_summary(result)
    _print_faults(plan)
    _log(f"run took {result['seconds']:.0f} s; results in {tmp_path / 'soak.json'}")

    assert result["lost"] == 0, f"lost {result['lost']}: {result['lost_first'][:10]}"
    assert (result["invented"], result["wrong_topic"]) == ([], 0)
    assert result["bridge_sessions_lost"] == 0, "the broker dropped the bridge's session"
    assert result["bridge_tracebacks"] == 0, f"tracebacks in {bridges.logs}"
    assert bridge_alive


def _publish_through_faults(
    broker: MosquittoProcess, bridges: _Bridges, plan: list[Fault], workdir: Path
) -> dict[str, Any]:
    """Publish every message, injecting each fault at its mark; the publisher's ``done``."""
    load = [
        "--port", str(broker.port), "--count", str(MESSAGES), "--rate", str(RATE),
        "--timeout", "60", "--progress", "100",
    ]  # fmt: skip
    with Child("publisher", "tests.soak.publisher", load, workdir) as pub:
        pub.expect("ready", timeout=30)
        for fault in plan:
            while (sent := pub.expect("progress", timeout=60)["sent"]) < fault.at_message:
                pass
            fault.at_message = sent  # the plan's mark, to within one progress report
            if fault.kind == "bridge-kill":
                fault.at = bridges.kill()
                fault.back = bridges.start()
                fault.ready = bridges.wait_ready()
            else:
                _broker_fault(fault, broker, pub)
            _log(f"fault at message {fault.at_message:>7,}: {fault.label}")
        return pub.expect("done", timeout=MESSAGES / RATE + 120)


def _log(message: str) -> None:
    print(f"  {message}", flush=True)


def _wait_for_all(record: Record, count: int, bridges: _Bridges, timeout: float = 60.0) -> None:
    """Until every payload is in the record, then 2 s without a new line (late duplicates)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record.read()
        if len(record.payloads) >= count:
            break
        if not bridges.alive():
            break
        time.sleep(0.2)
    quiet_since, seen = time.monotonic(), len(record.lines)
    while time.monotonic() - quiet_since < 2.0 and time.monotonic() < deadline + 5:
        time.sleep(0.2)
        record.read()
        if len(record.lines) != seen:
            quiet_since, seen = time.monotonic(), len(record.lines)


def _analyse(
    record: Record, count: int, plan: list[Fault], published: dict[str, Any], bridges: _Bridges
) -> dict[str, Any]:
    expected = {f"p{i:06d}" for i in range(count)}
    counts = collections.Counter(payload for _, payload, _, _ in record.lines)
    lost = sorted(expected - counts.keys())
    invented = sorted(counts.keys() - expected)
    resent = set(published["resent"])
    again: collections.Counter[str] = collections.Counter()
    seen: set[str] = set()
    first_with_dup = wrong_topic = out_of_order = 0
    last_index: dict[str, int] = {}
    for topic, payload, dup, _ in record.lines:
        index = int(payload[1:]) if payload in expected else -1
        if index >= 0 and topic != f"soak/d{index % 100}":
            wrong_topic += 1
        if payload in seen:
            # Why it came again: the broker redelivered it (DUP), the publisher sent it twice
            # (resent after a broker restart), or neither: replayed from the broker's file.
            again["dup" if dup else "publisher" if index in resent else "no-dup"] += 1
            continue
        seen.add(payload)
        first_with_dup += dup
        if index >= 0:
            if index < last_index.get(topic, -1):
                out_of_order += 1
            last_index[topic] = max(index, last_index.get(topic, -1))
    times = [t for *_, t in record.lines]
    for fault in plan:
        fault.recovered = next((t for t in times if t > fault.back), float("nan"))
    sessions = bridges.sessions()
    return {
        "published": published["published"],
        "publisher": {k: v for k, v in published.items() if k != "resent"}
        | {"resent_count": len(published["resent"]), "resent_first": published["resent"][:50]},
        "handled": len(record.lines),
        "distinct": len(counts),
        "lost": len(lost),
        "lost_first": lost[:50],
        "invented": invented[:50],
        "handled_more_than_once": sum(1 for n in counts.values() if n > 1),
        "extra_handlings": sum(again.values()),
        "extra_by_cause": dict(again),
        "records_with_dup": sum(dup for _, _, dup, _ in record.lines),
        "first_handlings_with_dup": first_with_dup,
        "wrong_topic": wrong_topic,
        "first_handlings_out_of_order": out_of_order,
        "bridge_connections": len(sessions),
        "bridge_sessions_lost": sessions[1:].count(False),
        "bridge_tracebacks": bridges.tracebacks(),
        "faults": [f.as_dict() for f in plan],
    }


def _print_summary(r: dict[str, Any]) -> None:
    by, pub = r["extra_by_cause"], r["publisher"]
    _log(
        f"published {r['published']:,}, handled {r['handled']:,} ({r['distinct']:,} distinct),"
        f" LOST {r['lost']}" + (f": {', '.join(r['lost_first'][:10])}" if r["lost"] else "")
    )
    _log(
        f"handled more than once: {r['handled_more_than_once']} payloads,"
        f" {r['extra_handlings']} extra handlings ({by.get('dup', 0)} redelivered with DUP,"
        f" {by.get('publisher', 0)} sent twice by the publisher,"
        f" {by.get('no-dup', 0)} replayed without DUP)"
    )
    _log(
        f"records with DUP: {r['records_with_dup']} ({r['first_handlings_with_dup']} first"
        f" handlings); first handlings out of order: {r['first_handlings_out_of_order']}"
    )
    _log(
        f"bridge: {r['bridge_connections']} connections, session lost on"
        f" {r['bridge_sessions_lost']} reconnects, {r['bridge_tracebacks']} tracebacks;"
        f" publisher: {pub['reconnects']} reconnects, session present"
        f" {pub['session_present'][1:]}, {pub['resent_count']} resent"
    )


def _print_faults(plan: list[Fault]) -> None:
    _log(f"{'#':>2}  {'fault':<34} {'at msg':>8} {'down s':>7} {'recovery s':>10}")
    for n, f in enumerate(plan, 1):
        _log(f"{n:>2}  {f.label:<34} {f.at_message:>8,} {f.down:>7.2f} {f.recovery:>10.2f}")
