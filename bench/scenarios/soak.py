"""6. Soak: QoS 1 at a steady pace through bridge SIGKILLs and broker restarts; nothing lost.

Its own Mosquitto (persistence on, restarted here, so never the run's shared broker), one bridge
subprocess (``python -m mqttbridge run``) with a persistent session (fixed client id, MQTT 5,
``clean_start: false``, ``session_expiry: 3600``) routing ``soak/{device_id}`` to
``bench.recorder:SoakRecorder``, and ``bench.soak_publisher`` publishing ``p000000``.. over
100 devices from a persistent session of its own. Spaced evenly through the stream, in turn:

* **bridge SIGKILL**: no PUBACK for what was in flight, no DISCONNECT; a new bridge process is
  started at once with the same client id.
* **broker restart**: SIGTERM (Mosquitto writes its persistence file on the way out), then
  started again on the same port. The last broker fault of the run is a **crash** instead:
  the publisher is SIGSTOPped, the broker saves (SIGUSR1) and is SIGKILLed, the publisher
  continued. The pause matters: a message the broker acknowledged after its last save is lost
  by the broker, whatever the bridge does, so the crash is taken at a checkpoint.

Then every payload published must be in the record. Reported: lost, handled more than once
(and why: redelivered with DUP, replayed by the broker from its file, or sent twice by the
publisher), records with DUP set, first handlings out of order per device, and per fault the
time from the fault to the next message handled over the new connection.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import BenchError, Child
from bench.report import Row
from bench.scenarios.context import Context, log
from tests.apps import RECORD_ENV
from tests.services import MosquittoProcess

GROUP = "6 soak"
BRIDGE_CLIENT_ID = "bench-soak-bridge"
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

    def __init__(self, ctx: Context, config: Path) -> None:
        self.ctx = ctx
        self.config = config
        self.current: Child | None = None
        self.logs: list[Path] = []

    def start(self) -> float:
        self.current = self.ctx.child(
            "soak-bridge", "bridge", ["run", "--config", str(self.config)], broker=False
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
                raise BenchError(f"{child.name} exited with {child.proc.returncode}\n"
                                 f"{child.log_tail()}")  # fmt: skip
            time.sleep(0.01)
        raise BenchError(f"{child.name}: not ready within {timeout:g} s\n{child.log_tail()}")

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
        "    consumer: bench.recorder:SoakRecorder\n"
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


def soak(ctx: Context) -> list[Row]:
    s = ctx.sizes
    count = s.soak
    workdir = ctx.logdir / "soak"
    workdir.mkdir(parents=True, exist_ok=True)
    record = Record(workdir / "handled.txt")
    config = workdir / "bridge.yaml"
    plan = _plan(count, s.soak_bridge_kills, s.soak_broker_restarts)
    log(
        f"{count:,} QoS 1 messages at {s.soak_rate:,} msg/s over 100 devices; faults at "
        + ", ".join(f"{f.at_message:,} ({f.kind})" for f in plan)
    )
    saved_env = os.environ.get(RECORD_ENV)
    os.environ[RECORD_ENV] = str(record.path)  # inherited by every bridge process
    broker = MosquittoProcess(workdir=workdir / "mosquitto")
    bridges = _Bridges(ctx, config)
    started = time.monotonic()
    try:
        broker.start()
        config.write_text(_config_text(broker.port))
        bridges.start()
        bridges.wait_ready()
        load = [
            "--port", str(broker.port), "--count", str(count), "--rate", str(s.soak_rate),
            "--timeout", "60", "--progress", "100",
        ]  # fmt: skip
        with ctx.child("soak-publisher", "bench.soak_publisher", load, broker=False) as pub:
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
                log(f"fault at message {fault.at_message:>7,}: {fault.label}")
            published = pub.expect("done", timeout=count / s.soak_rate + 120)
        _wait_for_all(record, count, bridges)
        publishing_seconds = published["seconds"]
        bridge_alive = bridges.alive()
        bridges.stop()
        record.read()
    finally:
        bridges.stop()
        broker.close()
        if saved_env is None:
            os.environ.pop(RECORD_ENV, None)
        else:
            os.environ[RECORD_ENV] = saved_env
    result = _analyse(record, count, plan, published, bridges)
    result |= {
        "seconds": time.monotonic() - started,
        "publishing_seconds": publishing_seconds,
        "bridge_alive_at_end": bridge_alive,
        "record": str(record.path),
    }
    ctx.data["soak"] = result
    _print_summary(result)
    _print_faults(plan)
    return _rows(result, count, s.soak_rate)


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
    log(
        f"published {r['published']:,}, handled {r['handled']:,} ({r['distinct']:,} distinct),"
        f" LOST {r['lost']}" + (f": {', '.join(r['lost_first'][:10])}" if r["lost"] else "")
    )
    log(
        f"handled more than once: {r['handled_more_than_once']} payloads,"
        f" {r['extra_handlings']} extra handlings ({by.get('dup', 0)} redelivered with DUP,"
        f" {by.get('publisher', 0)} sent twice by the publisher,"
        f" {by.get('no-dup', 0)} replayed without DUP)"
    )
    log(
        f"records with DUP: {r['records_with_dup']} ({r['first_handlings_with_dup']} first"
        f" handlings); first handlings out of order: {r['first_handlings_out_of_order']}"
    )
    log(
        f"bridge: {r['bridge_connections']} connections, session lost on"
        f" {r['bridge_sessions_lost']} reconnects, {r['bridge_tracebacks']} tracebacks;"
        f" publisher: {pub['reconnects']} reconnects, session present"
        f" {pub['session_present'][1:]}, {pub['resent_count']} resent"
    )


def _print_faults(plan: list[Fault]) -> None:
    log(f"{'#':>2}  {'fault':<34} {'at msg':>8} {'down s':>7} {'recovery s':>10}")
    for n, f in enumerate(plan, 1):
        log(f"{n:>2}  {f.label:<34} {f.at_message:>8,} {f.down:>7.2f} {f.recovery:>10.2f}")


def _rows(r: dict[str, Any], count: int, rate: int) -> list[Row]:
    by = r["extra_by_cause"]
    pub = r["publisher"]
    sessions = (
        f"{r['bridge_connections']} bridge connections, session kept on all but the first"
        if not r["bridge_sessions_lost"]
        else f"SESSION LOST on {r['bridge_sessions_lost']} of {r['bridge_connections']} connects"
    )
    rows = [
        Row(GROUP, "published (acknowledged by the broker)", r["published"], "msgs",
            note=f"paced at {rate:,}/s, 100 devices, {pub['reconnects']} publisher reconnects,"
                 f" session kept: {all(pub['session_present'][1:])}"),
        Row(GROUP, "lost (published, never handled)", r["lost"], "msgs", ("<=", 0),
            note=", ".join(r["lost_first"][:5])),
        Row(GROUP, "handled in all", r["handled"], "msgs", note=sessions),
        Row(GROUP, "handled more than once", r["handled_more_than_once"], "msgs",
            note=f"{r['extra_handlings']} extra handlings: {by.get('dup', 0)} redelivered with"
                 f" DUP, {by.get('publisher', 0)} published twice, {by.get('no-dup', 0)}"
                 " replayed without DUP"),
        Row(GROUP, "records with DUP set", r["records_with_dup"], "msgs",
            note=f"{r['first_handlings_with_dup']} of them first handlings"),
        Row(GROUP, "first handlings out of order", r["first_handlings_out_of_order"], "msgs",
            note="per device, diagnostic"),
    ]  # fmt: skip
    for kind, name in (("bridge-kill", "bridge SIGKILL"), ("broker", "broker restart")):
        faults = [f for f in r["faults"] if f["kind"].startswith(kind)]
        if not faults:
            continue
        recoveries = [f["recovery_seconds"] for f in faults]
        rows.append(
            Row(GROUP, f"recovery after {name}, max", max(recoveries), "s",
                note=f"median {statistics.median(recoveries):.2f} s over {len(faults)};"
                     " fault -> next message handled")
        )  # fmt: skip
    if r["wrong_topic"] or r["invented"] or r["bridge_tracebacks"] or not r["bridge_alive_at_end"]:
        rows.append(
            Row(GROUP, "anomalies", r["wrong_topic"] + len(r["invented"]), "", ("<=", 0),
                note=f"wrong topic {r['wrong_topic']}, invented {len(r['invented'])}, tracebacks"
                     f" {r['bridge_tracebacks']}, bridge alive {r['bridge_alive_at_end']}")
        )  # fmt: skip
    return rows
