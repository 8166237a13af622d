"""``python -m bench.storage [--quick] [--repeat N]``: readings stored per second through
``mqttbridge.django.batch.BatchWriter``, into SQLite and into PostgreSQL, against one INSERT per
message (``await database_sync_to_async(obj.save)()``), with CPU time per reading.

* **writer**: in this process, 100 concurrent "devices", each saving its readings one after
  the other as a device instance does. CPU is this process's (event loop and ORM thread).
* **bridge**: end to end. ``mqttbridge run`` with a Django project's settings (a Reading model,
  routes from config.yaml), a private Mosquitto, ``bench.publisher`` sending QoS 1 over 100
  devices as fast as the broker takes them; the rate runs from the first publish to the last
  row counted in the table. CPU is the bridge process's. MQTT 5 and 3.1.1; Mosquitto's
  ``max_inflight_messages`` 1000, or 20 (its default; it applies to MQTT 3.1.1 clients only,
  docs/django.md#store-readings-in-batches). Each end-to-end row runs ``--repeat`` times (3);
  the median is shown.

PostgreSQL is a private cluster (durable defaults: fsync and synchronous_commit on), SQLite a
file (Django's defaults). Results go to stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from bench.procs import ROOT
from bench.report import cpu_seconds
from harness.postgres import PostgresProcess
from harness.processes import MosquittoProcess

DEVICES = 100
# The console script users run.
MQTTBRIDGE = str(Path(sys.executable).with_name("mqttbridge"))

# The Django project measured end to end: settings, a Reading model, and the consumers. Its
# database comes from the environment: BENCH_PG_PORT (a cluster's port) or BENCH_SQLITE (a file).
PROJECT = {
    "benchsite/__init__.py": "",
    "benchsite/settings.py": """
        import os

        SECRET_KEY = "bench-only"
        INSTALLED_APPS = ["channels", "readings"]
        USE_TZ = True
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
        if os.environ.get("BENCH_PG_PORT"):
            DATABASES = {"default": {
                "ENGINE": "django.db.backends.postgresql", "NAME": "postgres",
                "USER": "postgres", "HOST": "127.0.0.1", "PORT": os.environ["BENCH_PG_PORT"],
                "CONN_MAX_AGE": 60,
            }}
        else:
            DATABASES = {"default": {
                "ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["BENCH_SQLITE"],
            }}
    """,
    "readings/__init__.py": "",
    "readings/models.py": """
        from django.db import models


        class Reading(models.Model):
            device = models.CharField(max_length=64)
            seq = models.IntegerField()
            value = models.FloatField(default=0)
    """,
    "readings/consumers.py": """
        import os

        from channels.db import database_sync_to_async

        from mqttbridge.consumers import JsonMqttConsumer
        from mqttbridge.django.batch import BatchWriter

        from .models import Reading

        writer = BatchWriter(Reading, max_batch=500, max_delay=0.05)


        class Batched(JsonMqttConsumer):
            async def receive_json(self, content, message):
                device = self.topic_kwargs["device_id"]
                await writer.save(Reading(device=device, seq=0, value=content["temperature"]))


        class OneInsert(JsonMqttConsumer):
            async def receive_json(self, content, message):
                device = self.topic_kwargs["device_id"]
                reading = Reading(device=device, seq=0, value=content["temperature"])
                await database_sync_to_async(reading.save)()


        # The same work without the database: what the bridge and consumer cost on their own.
        # It tells the end by creating a file, having no table to count.
        handled = [0]


        class NoStorage(JsonMqttConsumer):
            async def receive_json(self, content, message):
                Reading(device=self.topic_kwargs["device_id"], seq=0, value=content["temperature"])
                handled[0] += 1
                if handled[0] == int(os.environ["BENCH_COUNT"]):
                    open("nostorage.done", "w").close()
    """,
}
ROUTES = """
routes:
  - topic: bench/{device_id}/batched
    consumer: readings.consumers:Batched
  - topic: bench/{device_id}/single
    consumer: readings.consumers:OneInsert
  - topic: bench/{device_id}/none
    consumer: readings.consumers:NoStorage
"""
TABLE = "readings_reading"


# -- in process -----------------------------------------------------------------------------------


def _setup_django(sqlite_path: Path, pg_port: int) -> Any:
    import django
    from django.conf import settings
    from django.db import connections, models

    settings.configure(
        INSTALLED_APPS=["channels"],
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(sqlite_path)},
            "postgres": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "postgres",
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": str(pg_port),
                "CONN_MAX_AGE": 60,
            },
        },
        USE_TZ=True,
    )
    django.setup()

    class Reading(models.Model):
        device = models.CharField(max_length=64)
        seq = models.IntegerField()
        value = models.FloatField(default=0)

        class Meta:
            app_label = "bench"

    for alias in ("default", "postgres"):
        with connections[alias].schema_editor() as editor:
            editor.create_model(Reading)
    connections.close_all()
    return Reading


async def _devices(count: int, save: Callable[[int, int], Awaitable[None]]) -> None:
    async def device(number: int) -> None:
        for i in range(number, count, DEVICES):
            await save(number, i)

    await asyncio.gather(*(device(n) for n in range(DEVICES)))


def measure_writer(model: Any, alias: str, count: int, batched: bool) -> dict[str, float]:
    from channels.db import database_sync_to_async

    from mqttbridge.django.batch import BatchWriter

    async def run() -> int:
        if batched:
            writer = BatchWriter(model, using=alias, max_batch=500, max_delay=0.05)

            async def save(number: int, i: int) -> None:
                await writer.save(model(device=f"d{number}", seq=i, value=21.5))

            await _devices(count, save)
            await writer.aclose()
            return writer.stats.flushes

        async def save_one(number: int, i: int) -> None:
            reading = model(device=f"d{number}", seq=i, value=21.5)
            await database_sync_to_async(reading.save)(using=alias)

        await _devices(count, save_one)
        return count

    cpu, wall = time.process_time(), time.perf_counter()
    flushes = asyncio.run(run())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stored = model.objects.using(alias).filter(seq__lt=count).count()
    assert stored >= count, f"{alias}: {stored} of {count} stored"
    model.objects.using(alias).all().delete()
    return {"rate": count / wall, "cpu_us": cpu / count * 1e6, "per_flush": count / flushes}


# -- end to end ----------------------------------------------------------------------------------


def _count(db: Path | PostgresProcess, project: Path, route: str, count: int) -> int:
    if route == "none":
        return count if (project / "nostorage.done").exists() else 0
    if isinstance(db, PostgresProcess):
        return int(db.psql(f"SELECT count(*) FROM {TABLE}"))
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])


def _make_project(root: Path, env: dict[str, str]) -> Path:
    """Write the bench's Django project under ``root``; create its table."""
    for name, text in PROJECT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v", "0"],
        cwd=root, env=env, check=True, timeout=120,
    )  # fmt: skip
    return root


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} not logged:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def measure_bridge(
    workdir: Path,
    db: Path | PostgresProcess,
    route: str,
    count: int,
    inflight: int,
    protocol: str = "5",
) -> dict[str, float]:
    """Readings/s and the bridge's CPU per reading, publisher to committed row."""
    root = Path(tempfile.mkdtemp(dir=workdir))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env |= {"BENCH_COUNT": str(count), "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
    env["DJANGO_SETTINGS_MODULE"] = "benchsite.settings"
    if isinstance(db, PostgresProcess):
        env["BENCH_PG_PORT"] = str(db.port)
        db.psql(f"DROP TABLE IF EXISTS {TABLE}")
    else:
        env["BENCH_SQLITE"] = str(root / "db.sqlite3")
    project = _make_project(root, env)
    table: Path | PostgresProcess = db if isinstance(db, PostgresProcess) else root / "db.sqlite3"
    log = root / "bridge.log"
    with MosquittoProcess(
        workdir=root / "mosquitto", extra_config=[f"max_inflight_messages {inflight}"]
    ) as broker:
        (project / "config.yaml").write_text(
            f"broker:\n  url: {broker.url}\n  protocol: '{protocol}'\n{ROUTES}"
        )
        with open(log, "wb") as output:
            bridge = subprocess.Popen(
                [MQTTBRIDGE, "run", "--config", "config.yaml"],
                cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            _wait_for_line(log, "bridge ready", bridge, 60)
            cpu0 = cpu_seconds(bridge.pid)
            start = time.perf_counter()
            publisher = subprocess.Popen(
                [sys.executable, "-m", "bench.publisher", "--port", str(broker.port),
                 "--count", str(count), "--devices", str(DEVICES), "--qos", "1",
                 "--topic", f"bench/{{device_id}}/{route}", "--window", "1000"],
                stdout=subprocess.DEVNULL, cwd=ROOT,
            )  # fmt: skip
            deadline = start + 600
            while _count(table, project, route, count) < count:
                if time.perf_counter() > deadline or bridge.poll() is not None:
                    raise RuntimeError(f"{route}: not all {count} stored; see {log}")
                time.sleep(0.1)
            seconds = time.perf_counter() - start
            cpu = cpu_seconds(bridge.pid) - cpu0
            publisher.wait(60)
        finally:
            bridge.kill()
            bridge.wait(10)
    result = {"rate": count / seconds, "cpu_us": cpu / count * 1e6}
    if isinstance(db, PostgresProcess) and route != "none":  # a transaction's rows share xmin
        transactions = db.psql(f"SELECT count(DISTINCT xmin::text) FROM {TABLE}")
        result["per_flush"] = count / int(transactions)
    return result


# -- the report ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="end-to-end runs per row (the median is shown)"
    )
    args = parser.parse_args(argv)
    many, few = (2000, 300) if args.quick else (20000, 3000)
    load = os.getloadavg()
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load {load[0]:.2f}")
    rows: list[tuple[str, str, str, int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp, PostgresProcess() as pg:
        workdir = Path(tmp)
        model = _setup_django(workdir / "writer.sqlite3", pg.port)
        for alias, name in (("default", "SQLite"), ("postgres", "PostgreSQL")):
            for batched, how in ((True, "BatchWriter"), (False, "one INSERT per message")):
                n = many if batched else few
                result = measure_writer(model, alias, n, batched)
                rows.append(("writer", name, how, n, result))
                print(rows[-1], flush=True)
        for target, name in ((Path("sqlite"), "SQLite"), (pg, "PostgreSQL")):
            for route, how, n, inflight, protocol in (
                ("batched", "BatchWriter", many, 1000, "5"),
                ("batched", "BatchWriter", many, 1000, "3.1.1"),
                ("batched", "BatchWriter", many, 20, "3.1.1"),
                ("single", "one INSERT per message", few, 1000, "5"),
                ("none", "no storage (the bridge alone)", many, 1000, "5"),
                ("none", "no storage (the bridge alone)", many, 1000, "3.1.1"),
            ):
                samples = [
                    measure_bridge(workdir, target, route, n, inflight, protocol)
                    for _ in range(1 if route == "single" else args.repeat)
                ]
                result: dict[str, Any] = sorted(samples, key=lambda r: r["rate"])[
                    (len(samples) - 1) // 2
                ]  # the median run (the lower one of an even count)
                result["samples"] = [round(r["rate"]) for r in samples]
                label = f"{how}, MQTT {protocol}, broker in-flight {inflight}"
                rows.append(("bridge", name, label, n, result))
                print(rows[-1], flush=True)
    print(f"# load after: {os.getloadavg()[0]:.2f}; cpus {psutil.cpu_count()}\n")
    print("| path | database | how | readings | readings/s | CPU µs/reading | rows/flush | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for path, name, how, n, r in rows:
        per_flush = f"{r['per_flush']:.0f}" if "per_flush" in r else ""
        runs = ", ".join(f"{rate:,}" for rate in r.get("samples", []))
        print(
            f"| {path} | {name} | {how} | {n:,} | {r['rate']:,.0f} | {r['cpu_us']:.0f} "
            f"| {per_flush} | {runs} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
