"""HTTP requests/s of a plain Django view served by the bridge's process while it carries MQTT
load, against the same view under uvicorn alone:

    python -m bench.http_load [--mqtt-rates 1000 10000] [--repeat 3] [--seconds 10]
                              [--connections 16] [--view sync|async] [--no-pin]

One small project (written to a temporary directory): ``GET /hello/`` is a sync view answering
"hello" (``/hello-async/`` the same as an async view), and an MQTT consumer only counts, read
back over HTTP with ``GET /count/``. Servers of that one application, each started afresh:

* ``uvicorn benchsite.asgi:application``: the baseline, HTTP only;
* ``mqttbridge run --asgi benchsite.asgi:application --http``, no MQTT traffic;
* the same while ``bench.publisher`` sends each ``--mqtt-rates`` QoS 0 messages/s to it through
  a private Mosquitto: first ``--seconds`` of MQTT alone (its CPU cost), then ``wrk`` on top.

The same settings on both sides: one process, asyncio's loop and h11 (uvicorn's "auto" when
neither uvloop nor httptools is installed: the run records which are), no access log
(``--log-level warning``), DEBUG off. Every round runs every server once, the order rotating
from round to round, and the table gives medians over ``--repeat`` rounds.

With two or more cores the server runs pinned to the last core and everything else (wrk, the
publisher, Mosquitto, this script) to the others, so the load generator never takes the
server's core; each measurement records how busy each core was, hence what other processes
took of the server's core. ``wrk`` is Debian's package (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.cli import RESULTS
from bench.procs import BenchError, Child
from bench.report import core_busy_seconds, cpu_seconds, machine_info, write_json
from harness.processes import MosquittoProcess, find_binary, free_port

__all__ = ["main"]

_FILES = {
    "benchsite/__init__.py": "",
    "benchsite/settings.py": """
        SECRET_KEY = "bench-only"
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1"]
        ROOT_URLCONF = "benchsite.urls"
        INSTALLED_APPS = ["channels"]
        DATABASES = {}
        USE_TZ = True
        CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    """,
    "benchsite/urls.py": """
        from django.http import HttpResponse, JsonResponse
        from django.urls import path

        from benchsite import counter


        def hello(request):
            return HttpResponse("hello")


        async def hello_async(request):
            return HttpResponse("hello")


        async def count(request):  # no thread hop: the instrument waits the least it can
            return JsonResponse({"messages": counter.messages})


        urlpatterns = [
            path("hello/", hello),
            path("hello-async/", hello_async),
            path("count/", count),
        ]
    """,
    "benchsite/counter.py": """
        from mqttbridge.consumers import MqttConsumer

        messages = 0


        class Count(MqttConsumer):
            async def receive(self, message):
                global messages
                messages += 1
    """,
    "benchsite/asgi.py": """
        import os

        from django.core.asgi import get_asgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
        django_app = get_asgi_application()

        from channels.routing import ProtocolTypeRouter  # noqa: E402

        from mqttbridge.routing import TopicRouter, topic  # noqa: E402
        from benchsite.counter import Count  # noqa: E402

        application = ProtocolTypeRouter({
            "http": django_app,
            "mqtt": TopicRouter([topic("bench/{device_id}/data", Count.as_asgi())]),
        })
    """,
}

UVICORN = "uvicorn alone"
IDLE = "bridge, no MQTT"


def loaded_name(rate: float) -> str:
    return f"bridge, {rate:,.0f} MQTT msg/s"


def write_project(root: Path) -> Path:
    for name, text in _FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


@dataclass(frozen=True)
class Layout:
    """Which cores the server under test gets, and which the load (None: not pinned)."""

    server: frozenset[int] | None
    load: frozenset[int] | None

    @classmethod
    def choose(cls, pin: bool) -> Layout:
        cores = sorted(os.sched_getaffinity(0))
        if not pin or len(cores) < 2:
            return cls(None, None)
        return cls(frozenset(cores[-1:]), frozenset(cores[:-1]))

    def describe(self) -> str:
        if self.server is None or self.load is None:
            return "not pinned: every process may run on every core"
        return (
            f"server on core {_cores(self.server)}; wrk, publisher, Mosquitto and this script "
            f"on core {_cores(self.load)}"
        )

    def pin_server(self) -> Callable[[], None] | None:
        """For Popen's ``preexec_fn``: set before exec, so every thread of the server has it."""
        cores = self.server
        return None if cores is None else lambda: os.sched_setaffinity(0, cores)


def _cores(cores: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cores))


class Window:
    """CPU over one measurement: the server process's, and each core's (others' share)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.cpu = cpu_seconds(pid)
        self.cores = core_busy_seconds()

    def close(self, layout: Layout) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        cpu = (cpu_seconds(self.pid) - self.cpu) / elapsed
        busy = [
            (end - start) / elapsed
            for start, end in zip(self.cores, core_busy_seconds(), strict=True)
        ]
        result: dict[str, Any] = {
            "elapsed": elapsed,
            "cpu_per_s": cpu,
            "core_busy": [round(b, 3) for b in busy],
        }
        if layout.server is not None and layout.load is not None:
            # What the server's core did besides the server: other helpers' processes, and
            # loopback traffic's kernel time not charged to the server.
            result["others_on_server_core"] = max(sum(busy[c] for c in layout.server) - cpu, 0.0)
            result["load_cores_busy"] = sum(busy[c] for c in layout.load) / len(layout.load)
        return result


@contextlib.contextmanager
def server(
    command: Sequence[str], cwd: Path, port: int, log: Path, layout: Layout
) -> Iterator[psutil.Process]:
    # A user's shell in the project directory: both servers find `benchsite` there.
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=layout.pin_server(),
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{command[0]} did not serve\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(url: str, seconds: float, connections: int) -> dict[str, Any]:
    binary = shutil.which("wrk")
    if binary is None:
        raise BenchError("wrk not found; install it: apt-get install -y wrk")
    out = subprocess.run(
        [binary, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    latency = {
        pct: float(m.group(1)) * scale[m.group(2)]
        for pct in ("50", "99")
        if (m := re.search(rf"{pct}%\s+([\d.]+)(us|ms|s)\b", out))
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if rate is None or total is None:
        raise BenchError(f"could not read wrk's output:\n{out}")
    return {
        "requests_per_s": float(rate.group(1)),
        "requests": int(total.group(1)),
        "p50_ms": latency.get("50"),
        "p99_ms": latency.get("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": "Socket errors" in out,
    }


def measure_http(
    process: psutil.Process,
    url: str,
    args: argparse.Namespace,
    layout: Layout,
    count_port: int | None = None,
) -> dict[str, Any]:
    """wrk's run, and the server's CPU over it; with ``count_port``, the MQTT messages the
    server's consumer counted meanwhile."""
    wrk(url, args.warmup, args.connections)  # imports, URL resolver, first threads: not measured
    base = messages_counted(count_port) if count_port else 0
    window = Window(process.pid)
    result = wrk(url, args.seconds, args.connections)
    result.update(window.close(layout))
    if count_port:
        result["mqtt_per_s"] = (messages_counted(count_port) - base) / result["elapsed"]
    result["cpu_ms_per_request"] = 1000 * result["cpu_per_s"] / max(result["requests_per_s"], 1)
    return result


def messages_counted(port: int) -> int:
    # Under MQTT load any request may wait seconds for the loop (see the 10,000 msg/s rows).
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count/", timeout=60) as response:
        return int(json.load(response)["messages"])


def measure_loaded(
    process: psutil.Process,
    port: int,
    url: str,
    rate: float,
    broker: MosquittoProcess,
    args: argparse.Namespace,
    layout: Layout,
    workdir: Path,
) -> dict[str, Any]:
    """MQTT alone for ``--seconds``, then wrk on top, with the publisher running throughout."""
    ramp = 2.0
    count = int(rate * (ramp + args.seconds + args.warmup + args.seconds + 3))
    publisher_args = ["--port", str(broker.port), "--count", str(count), "--rate", str(rate)]
    with Child("publisher", "bench.publisher", [*publisher_args, "--devices", "100"], workdir) as p:
        time.sleep(ramp)
        base = messages_counted(port)
        window = Window(process.pid)
        time.sleep(args.seconds)
        alone = window.close(layout)
        alone["mqtt_per_s"] = (messages_counted(port) - base) / alone["elapsed"]
        result = measure_http(process, url, args, layout, count_port=port)
        done = p.expect("done", timeout=args.seconds + 60)
    time.sleep(1)
    result["mqtt_alone"] = alone
    # Mosquitto and the publisher share the load core with wrk and whatever else runs there:
    # a run in which they did not deliver the rate measured HTTP alone, and is left out.
    result["valid"] = result["mqtt_per_s"] >= 0.9 * rate and alone["mqtt_per_s"] >= 0.9 * rate
    # The CPU HTTP took beside MQTT, if MQTT cost what it cost alone.
    result["http_cpu_ms_per_request"] = (
        1000 * (result["cpu_per_s"] - alone["cpu_per_s"]) / max(result["requests_per_s"], 1)
    )
    result["mqtt_sent"] = done["published"]
    result["mqtt_counted"] = messages_counted(port)
    return result


def run(args: argparse.Namespace, workdir: Path, layout: Layout) -> dict[str, list[Any]]:
    project = write_project(workdir / "project")
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    mqttbridge = str(Path(sys.executable).with_name("mqttbridge"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/{'hello' if args.view == 'sync' else 'hello-async'}/"
    quiet = ["--log-level", "warning"]
    names = [UVICORN, IDLE, *(loaded_name(rate) for rate in args.mqtt_rates)]
    runs: dict[str, list[Any]] = {name: [] for name in names}
    with MosquittoProcess(
        workdir=workdir / "mosquitto", extra_config=["max_queued_messages 0"]
    ) as broker:
        bridge = [mqttbridge, "run", "--asgi", "benchsite.asgi:application"]
        bridge += ["--http", f"127.0.0.1:{port}", "--broker", broker.url, *quiet]
        alone = [uvicorn, "benchsite.asgi:application", "--port", str(port), "--no-access-log"]
        for round_ in range(args.repeat):
            # Rotated from round to round: no server always runs first, or after another.
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                load = os.getloadavg()[0]
                print(f"== round {round_ + 1}: {name} (load average {load:.2f})", flush=True)
                log = workdir / f"{re.sub(r'[^a-z0-9]+', '-', name)}-{round_}.log"
                command = [*alone, *quiet] if name == UVICORN else bridge
                with server(command, project, port, log, layout) as process:
                    if name in (UVICORN, IDLE):
                        result = measure_http(process, url, args, layout)
                    else:
                        rate = args.mqtt_rates[names.index(name) - 2]
                        result = measure_loaded(
                            process, port, url, rate, broker, args, layout, workdir
                        )
                result["load_average_before"] = load
                runs[name].append(result)
                print(json.dumps(result), flush=True)
    return runs


def _median(rows: list[dict[str, Any]], key: str, sub: str | None = None) -> float:
    values = [(row[sub] if sub else row)[key] for row in rows]
    return float(statistics.median(v for v in values if v is not None))


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    base = runs[UVICORN]
    summary = {}
    for name, every in runs.items():
        pairs = [(r, b) for r, b in zip(every, base, strict=True) if r.get("valid", True)]
        if not pairs:
            continue
        rows = [r for r, _ in pairs]
        row = {
            "requests_per_s": statistics.median(r["requests_per_s"] for r in rows),
            "requests_per_s_runs": [r["requests_per_s"] for r in every],
            "left_out": [i for i, r in enumerate(every) if not r.get("valid", True)],
            # Round by round: each bridge run against the uvicorn run of the same round.
            "ratio": statistics.median(r["requests_per_s"] / b["requests_per_s"] for r, b in pairs),
            "p99_ms": _median(rows, "p99_ms"),
            "cpu_per_s": _median(rows, "cpu_per_s"),
            "cpu_ms_per_request": _median(rows, "cpu_ms_per_request"),
            "load_average_before": [r["load_average_before"] for r in rows],
        }
        if "others_on_server_core" in rows[0]:
            others = [r["others_on_server_core"] for r in rows]
            row["others_on_server_core"] = [min(others), statistics.median(others), max(others)]
            row["load_cores_busy"] = _median(rows, "load_cores_busy")
        if "mqtt_alone" in rows[0]:
            row["mqtt_per_s"] = _median(rows, "mqtt_per_s")
            row["mqtt_alone_per_s"] = _median(rows, "mqtt_per_s", "mqtt_alone")
            row["mqtt_alone_cpu_per_s"] = _median(rows, "cpu_per_s", "mqtt_alone")
            row["http_cpu_ms_per_request"] = _median(rows, "http_cpu_ms_per_request")
            row["mqtt_lost"] = sum(r["mqtt_sent"] - r["mqtt_counted"] for r in rows)
        summary[name] = row
    return summary


def print_tables(summary: dict[str, dict[str, Any]]) -> None:
    print(
        "\n| server | req/s, median (runs) | ratio to uvicorn | p99 ms | CPU s/s | CPU ms/req "
        "| others on server core |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, row in summary.items():
        runs = " / ".join(
            f"{r:.0f}{'*' if i in row['left_out'] else ''}"
            for i, r in enumerate(row["requests_per_s_runs"])
        )
        others = row.get("others_on_server_core")
        shown = f"{others[1]:.2f} ({others[0]:.2f}–{others[2]:.2f})" if others else "n/a"
        print(
            f"| {name} | {row['requests_per_s']:.0f} ({runs}) | {row['ratio']:.2f} | "
            f"{row['p99_ms']:.0f} | {row['cpu_per_s']:.2f} | {row['cpu_ms_per_request']:.2f} | "
            f"{shown} |"
        )
    if any(row["left_out"] for row in summary.values()):
        print("* left out: the broker delivered under 90% of the MQTT rate (load core starved)")
    idle = summary[IDLE]
    loaded = {name: row for name, row in summary.items() if "mqtt_per_s" in row}
    if not loaded:
        return
    print(
        "\n| bridge | MQTT alone: msg/s, CPU s/s | with wrk: MQTT msg/s, req/s, CPU s/s "
        "| HTTP CPU ms/req | req/s if HTTP had the rest of the core | lost |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in loaded.items():
        # At the idle bridge's CPU per request, in what MQTT alone left of one core.
        expected = (1 - row["mqtt_alone_cpu_per_s"]) * 1000 / idle["cpu_ms_per_request"]
        print(
            f"| {name} | {row['mqtt_alone_per_s']:,.0f}, {row['mqtt_alone_cpu_per_s']:.2f} | "
            f"{row['mqtt_per_s']:,.0f}, {row['requests_per_s']:.0f}, {row['cpu_per_s']:.2f} | "
            f"{row['http_cpu_ms_per_request']:.2f} | {expected:.0f} | {row['mqtt_lost']} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--mqtt-rates", type=float, nargs="*", default=[1000.0, 10000.0], help="none: HTTP only"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the table has medians")
    parser.add_argument("--seconds", type=float, default=10, help="each wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="wrk before each measured run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--view", choices=["sync", "async"], default="sync")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no taskset layout")
    args = parser.parse_args(argv)
    layout = Layout.choose(args.pin)
    machine = machine_info(find_binary("mosquitto", "MOSQUITTO_BIN"), None)
    machine["uvicorn_extras"] = {
        name: importlib.util.find_spec(name) is not None for name in ("uvloop", "httptools")
    }
    print("machine: " + json.dumps(machine))
    print(f"layout: {layout.describe()}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    affinity = os.sched_getaffinity(0)
    if layout.load is not None:
        os.sched_setaffinity(0, layout.load)  # inherited by wrk, the publisher and Mosquitto
    try:
        with tempfile.TemporaryDirectory(prefix="mqttbridge-http-bench-") as tmp:
            runs = run(args, Path(tmp), layout)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        os.sched_setaffinity(0, affinity)
    summary = summarize(runs)
    print_tables(summary)
    print(f"load average after: {os.getloadavg()}")
    out = RESULTS / f"http-load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json(
        out,
        {
            "machine": machine,
            "layout": layout.describe(),
            "args": vars(args),
            "summary": summary,
            "runs": runs,
        },
    )
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
