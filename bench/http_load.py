"""HTTP requests/s of a plain Django view served by the bridge's process while it carries MQTT
load, against the same view under uvicorn alone:

    python -m bench.http_load [--mqtt-rate 10000] [--seconds 10] [--connections 16]

Three runs of ``wrk`` against ``GET /hello/`` of one small project (written to a temporary
directory: a view answering "hello", and an MQTT consumer that only counts):

1. ``uvicorn benchsite.asgi:application``: the baseline, HTTP only;
2. ``mqttbridge run --asgi benchsite.asgi:application --http``, no MQTT traffic;
3. the same while ``bench.publisher`` sends ``--mqtt-rate`` QoS 0 messages/s to it through a
   private Mosquitto.

Reports requests/s, the server process's CPU seconds per second and per request (psutil),
and for the third run the MQTT messages the consumer counted (read from the same process
over HTTP, ``GET /count/``) against those sent. ``wrk`` is Debian's package (``apt-get
install -y wrk``); it takes a core of its own, so on two cores the numbers are relative ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from bench.cli import RESULTS
from bench.procs import BenchError, Child
from bench.report import cpu_seconds, machine_info, write_json
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


        def count(request):
            return JsonResponse({"messages": counter.messages})


        urlpatterns = [path("hello/", hello), path("count/", count)]
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


def write_project(root: Path) -> Path:
    for name, text in _FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def _env() -> dict[str, str]:
    # A user's shell in the project directory: both servers find `benchsite` there.
    return {
        k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")
    }


@contextlib.contextmanager
def server(command: Sequence[str], cwd: Path, port: int, log: Path) -> Iterator[psutil.Process]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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


def wrk(url: str, seconds: int, connections: int) -> dict[str, Any]:
    binary = shutil.which("wrk")
    if binary is None:
        raise BenchError("wrk not found; install it: apt-get install -y wrk")
    out = subprocess.run(
        [binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if rate is None or total is None:
        raise BenchError(f"could not read wrk's output:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "requests_per_s": float(rate.group(1)),
        "requests": int(total.group(1)),
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def measure(process: psutil.Process, url: str, args: argparse.Namespace) -> dict[str, Any]:
    before = cpu_seconds(process.pid)
    started = time.monotonic()
    result = wrk(url, args.seconds, args.connections)
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(process.pid) - before
    result["cpu_per_s"] = cpu / elapsed
    result["cpu_ms_per_request"] = 1000 * cpu / max(result["requests"], 1)
    return result


def messages_counted(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count/", timeout=10) as response:
        return int(json.load(response)["messages"])


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    project = write_project(workdir / "project")
    results: dict[str, Any] = {}
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    mqttbridge = str(Path(sys.executable).with_name("mqttbridge"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/hello/"
    quiet = ["--log-level", "warning"]
    print("== uvicorn alone", flush=True)
    with server(
        [uvicorn, "benchsite.asgi:application", "--port", str(port), "--no-access-log", *quiet],
        project,
        port,
        workdir / "uvicorn.log",
    ) as process:
        results["uvicorn"] = measure(process, url, args)
    print(json.dumps(results["uvicorn"]), flush=True)

    with MosquittoProcess(
        workdir=workdir / "mosquitto", extra_config=["max_queued_messages 0"]
    ) as broker:
        bridge = [
            mqttbridge,
            "run",
            "--asgi",
            "benchsite.asgi:application",
            "--http",
            f"127.0.0.1:{port}",
            "--broker",
            broker.url,
            *quiet,
        ]
        print("== mqttbridge run --http, no MQTT traffic", flush=True)
        with server(bridge, project, port, workdir / "bridge-idle.log") as process:
            results["bridge_idle"] = measure(process, url, args)
        print(json.dumps(results["bridge_idle"]), flush=True)

        print(f"== mqttbridge run --http, {args.mqtt_rate:g} MQTT msg/s", flush=True)
        with server(bridge, project, port, workdir / "bridge-loaded.log") as process:
            # Long enough to cover the load's ramp and wrk's run with room to spare.
            count = int(args.mqtt_rate * (args.seconds + 6))
            publisher_args = [
                "--port",
                str(broker.port),
                "--count",
                str(count),
                "--rate",
                str(args.mqtt_rate),
                "--devices",
                "100",
            ]
            with Child("publisher", "bench.publisher", publisher_args, workdir) as publisher:
                time.sleep(2)  # the load is flowing before wrk starts
                base = messages_counted(port)
                loaded = measure(process, url, args)
                loaded["mqtt_messages_during"] = messages_counted(port) - base
                done = publisher.expect("done", timeout=args.seconds + 60)
            time.sleep(1)
            loaded["mqtt_sent"] = done["published"]
            loaded["mqtt_counted"] = messages_counted(port)
            loaded["mqtt_rate_during"] = loaded["mqtt_messages_during"] / args.seconds
            results["bridge_loaded"] = loaded
        print(json.dumps(results["bridge_loaded"]), flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mqtt-rate", type=float, default=10000.0)
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    print("machine: " + json.dumps(machine_info(find_binary("mosquitto", "MOSQUITTO_BIN"), None)))
    print(f"load before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mqttbridge-http-bench-") as tmp:
        try:
            results = run(args, Path(tmp))
        except BenchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    base = results["uvicorn"]["requests_per_s"]
    print("\n| server | req/s | ratio to uvicorn | p99 ms | CPU s/s | CPU ms/req |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in results.items():
        print(
            f"| {name} | {row['requests_per_s']:.0f} | {row['requests_per_s'] / base:.2f} | "
            f"{row['p99_ms']} | {row['cpu_per_s']:.2f} | {row['cpu_ms_per_request']:.2f} |"
        )
    loaded = results["bridge_loaded"]
    print(
        f"MQTT during wrk: {loaded['mqtt_rate_during']:.0f} msg/s counted by the consumer; "
        f"{loaded['mqtt_counted']} of {loaded['mqtt_sent']} messages in all"
    )
    out = RESULTS / f"http-load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json(out, results)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
