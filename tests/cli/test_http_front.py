"""The HTTP side of ``run --http`` beyond the happy path: the application's lifespan, HTTPS
and ``wss://`` with a real certificate, and proxy headers. A real Django project on disk
(``tests.django_project``), a private Mosquitto and real HTTP and WebSocket clients."""

from __future__ import annotations

import signal
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.django_project import ProjectProcess, clean_env, make_project, mqttbridge
from tests.services import MosquittoProcess, free_port
from tests.services.certs import Pki, make_pki

ASGI = "myproject.asgi:application"

# An ASGI application around the project's that speaks the lifespan protocol, as a Starlette
# or a hand-written app does (Django's own handler does not). Its startup fails when the
# environment says so, the way a missing database would make it fail.
_LIFESPAN_APP = """
    import os

    from myproject.asgi import application as project


    async def application(scope, receive, send):
        if scope["type"] != "lifespan":
            return await project(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("FAIL_STARTUP"):
                    await send({"type": "lifespan.startup.failed", "message": "cache unreachable"})
                    return
                print("app: startup done", flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("app: shutdown done", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
"""

# What the view sees of the client, after uvicorn applied (or ignored) the proxy's headers.
_URLS = """
    from django.http import HttpResponse
    from django.urls import path


    def hello(request):
        return HttpResponse("hello")


    def whoami(request):
        return HttpResponse(f"{request.META['REMOTE_ADDR']} {request.scheme}")


    urlpatterns = [path("hello/", hello), path("whoami/", whoami)]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(
        tmp_path_factory.mktemp("django-http-front"),
        {"myproject/lifespan_asgi.py": _LIFESPAN_APP, "myproject/urls.py": _URLS},
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("http-pki"))


@pytest.fixture
def processes() -> Iterator[list[ProjectProcess]]:
    started: list[ProjectProcess] = []
    yield started
    for process in started:
        process.close()


def write_config(project: Path, mosquitto: MosquittoProcess, http: str) -> int:
    port = free_port()
    (project / "config.yaml").write_text(
        f"broker:\n  url: {mosquitto.url}\nhttp:\n  listen: 127.0.0.1:{port}\n{http}"
    )
    return port


def test_lifespan_startup_completes_before_mqtt_and_shutdown_runs_on_sigterm(
    project: Path, mosquitto: MosquittoProcess, processes: list[ProjectProcess]
) -> None:
    port = write_config(project, mosquitto, "")
    process = ProjectProcess(project, "run", "--asgi", "myproject.lifespan_asgi:application")
    processes.append(process)
    process.wait_for("bridge ready")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/", timeout=20) as response:
        assert response.read() == b"hello"
    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(30) == 0  # a hang guard, not a timing threshold
    process.wait_for("bridge stopped")
    lines = process.output.splitlines()

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    # What the application's startup sets up is there before the first MQTT message.
    assert first("app: startup done") < first("connected to") < first("bridge ready")
    assert first("app: shutdown done") < first("bridge stopped")


def test_a_failed_lifespan_startup_is_one_line_exit_1_before_connecting(
    project: Path, mosquitto: MosquittoProcess
) -> None:
    write_config(project, mosquitto, "")
    result = mqttbridge(
        project,
        "run",
        "--asgi",
        "myproject.lifespan_asgi:application",
        env=clean_env(FAIL_STARTUP="1"),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the ASGI application's lifespan startup failed (its reason is logged above); "
        "fix the application's startup, or its lifespan handler"
    )
    assert "cache unreachable" in result.stdout + result.stderr  # uvicorn logs the app's reason
    assert "Traceback" not in result.stdout + result.stderr
    assert "connected to" not in result.stdout + result.stderr


def test_https_and_wss_with_the_configured_certificate(
    project: Path, mosquitto: MosquittoProcess, pki: Pki, processes: list[ProjectProcess]
) -> None:
    port = write_config(
        project,
        mosquitto,
        f"  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n",
    )
    process = ProjectProcess(project, "run", "--asgi", ASGI)
    processes.append(process)
    process.wait_for("bridge ready")
    assert f"serving HTTP and WebSocket on https://127.0.0.1:{port}" in process.output
    trusted = ssl.create_default_context(cafile=str(pki.ca.cert))
    url = f"https://127.0.0.1:{port}/hello/"
    with urllib.request.urlopen(url, timeout=20, context=trusted) as response:
        assert response.read() == b"hello"
    with connect(f"wss://127.0.0.1:{port}/ws/live/", ssl=trusted, open_timeout=20) as websocket:
        assert websocket.recv(timeout=20) == '{"joined": "live"}'
    # Verification is real: a client trusting another CA is refused.
    untrusted = ssl.create_default_context(cafile=str(pki.other_ca.cert))
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(url, timeout=20, context=untrusted)


def whoami(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/whoami/",
        headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return str(response.read().decode())


@pytest.mark.parametrize(
    ("http", "seen"),
    [
        ("", "203.0.113.7 https"),  # the defaults: trust a proxy on loopback
        ("  proxy_headers: false\n", "127.0.0.1 http"),
        ("  forwarded_allow_ips: 192.0.2.1\n", "127.0.0.1 http"),  # not this proxy
    ],
    ids=["trusted-proxy", "proxy-headers-off", "untrusted-proxy"],
)
def test_proxy_headers_are_applied_only_from_trusted_proxies(
    project: Path,
    mosquitto: MosquittoProcess,
    processes: list[ProjectProcess],
    http: str,
    seen: str,
) -> None:
    port = write_config(project, mosquitto, http)
    process = ProjectProcess(project, "run", "--asgi", ASGI)
    processes.append(process)
    process.wait_for("serving HTTP and WebSocket on")
    assert whoami(port) == seen
