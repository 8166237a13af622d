"""Fixtures for real services: private Mosquitto and Redis processes, TCP proxies, and a
headless Chromium (``browser``, one per run, and a fresh ``page`` per test).

A missing binary skips the test locally but fails it when CI is set, so a CI image without
Mosquitto or Redis cannot turn the integration suite green by skipping all of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.services import (
    MosquittoProcess,
    PostgresProcess,
    RedisProcess,
    ServiceBinaryNotFound,
    TcpProxy,
    chromium,
    find_chromium,
    psql,
)
from tests.services.certs import Pki, make_pki

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# Tests using any of these talk to a real service and get the `integration` marker, so
# `pytest -m "not integration"` gives the quick, broker-free run.
_SERVICE_FIXTURES = {
    "mosquitto",
    "mosquitto_factory",
    "shared_mosquitto",
    "redis_server",
    "tcp_proxy",
    "pki",
    "postgres_database",
    "postgres_cluster",
    "browser",
    "page",
}
# Tests in a real browser also get `browser`, so `-m browser` picks (or deselects) just them.
_BROWSER_FIXTURES = {"browser", "page"}
# A page waits this long for what a test expects (Playwright's default, 5 s, is short for two
# cores shared by a bridge, a broker and Chromium); it is a hang guard, not a measurement.
PAGE_TIMEOUT_MS = 30_000


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml declares the marker; repeat it only when run with another ini file.
    if not any(line.startswith("integration") for line in config.getini("markers")):
        config.addinivalue_line("markers", "integration: talks to real Mosquitto or Redis")
    if not any(line.startswith("browser") for line in config.getini("markers")):
        config.addinivalue_line("markers", "browser: drives a headless Chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if _SERVICE_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.integration)
        if _BROWSER_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.browser)


def _unavailable(error: Exception) -> None:
    if _in_ci():
        pytest.fail(f"CI=true and a required service is missing: {error}", pytrace=False)
    pytest.skip(str(error))


def _mosquitto(workdir: Path, **options: Any) -> MosquittoProcess:
    try:
        return MosquittoProcess(workdir=workdir, **options)
    except ServiceBinaryNotFound as error:
        _unavailable(error)
        raise  # unreachable: skip/fail raise; keeps type checkers sure of the return


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoProcess]]:
    """`mosquitto_factory(start=True, **options)` for brokers with non-default options
    (`websockets=True`, `extra_config=[...]`, a fixed `port`) or several brokers per test."""
    brokers: list[MosquittoProcess] = []

    def make(start: bool = True, **options: Any) -> MosquittoProcess:
        broker = _mosquitto(tmp_path / f"mosquitto-{len(brokers)}", **options)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., MosquittoProcess]) -> MosquittoProcess:
    """A fresh broker per test, free to be stopped, killed, paused or restarted."""
    return mosquitto_factory()


@pytest.fixture(scope="session")
def shared_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProcess]:
    """One broker for the whole run, for tests that only publish and subscribe through it.

    Never stop, kill or pause it; use unique topics (and client ids), since other tests share it.
    """
    with _mosquitto(tmp_path_factory.mktemp("shared-mosquitto")) as broker:
        yield broker


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A fresh, empty, non-persistent Redis per test."""
    try:
        server = RedisProcess(workdir=tmp_path / "redis")
    except ServiceBinaryNotFound as error:
        _unavailable(error)
        raise
    with server:
        yield server


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database on the shared PostgreSQL of 127.0.0.1:5432 (trust auth, user postgres)
    for the whole run, dropped at the end. Never stop that server: use ``postgres_cluster``."""
    name = f"mqttbridge_test_{os.getpid()}"
    try:
        psql(f"DROP DATABASE IF EXISTS {name}")
        psql(f"CREATE DATABASE {name}")
    except (OSError, RuntimeError) as error:
        _unavailable(error)
    yield name
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_cluster() -> Iterator[PostgresProcess]:
    """A private PostgreSQL cluster on a free port, free to be stopped and started again."""
    try:
        cluster = PostgresProcess()
    except ServiceBinaryNotFound as error:
        _unavailable(error)
        raise
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates for TLS tests: see ``tests.services.certs.Pki``."""
    try:
        return make_pki(tmp_path_factory.mktemp("pki"))
    except ServiceBinaryNotFound as error:
        _unavailable(error)
        raise


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    """A factory `tcp_proxy(host, port) -> TcpProxy`; every proxy made is closed afterwards."""
    proxies: list[TcpProxy] = []

    def make(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


# Module, not session: Playwright's sync API keeps its event loop marked as running on the main
# thread for as long as it is open, and pytest-asyncio then refuses to run async tests
# ("Runner.run() cannot be called from a running event loop"). So a browser lives for one test
# module (a launch is about a second), and a module with browser tests has no async tests.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from Debian's package (see ``harness.browser``), for the module."""
    try:
        executable = find_chromium()
    except ServiceBinaryNotFound as error:
        _unavailable(error)
        raise
    with chromium(executable=executable) as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in its own context (no cookies or storage shared between tests)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


# The bridge needs Django settings for Channels; tests use the in-memory layer unless a test
# overrides CHANNEL_LAYERS (Channels resets its layers on setting_changed).
from mqttbridge.django_setup import ensure_django  # noqa: E402

ensure_django({"default": {"BACKEND": "mqttbridge.layers.memory.InMemoryChannelLayer"}})

from tests.bridge_fixtures import run_bridge  # noqa: E402, F401

# --- the Django project on disk (tests.django_project) -----------------------------------------


@pytest.fixture(scope="session")
def django_project_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.django_project import make_project

    return make_project(tmp_path_factory.mktemp("django"))


@pytest.fixture
def django_project(django_project_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the project, its settings and database included, for one test."""
    import shutil

    return Path(shutil.copytree(django_project_template, tmp_path / "myproject"))


@pytest.fixture
def start_project() -> Iterator[Callable[..., Any]]:
    """``start_project(project, *args, **options)`` starts a ``ProjectProcess``; each is killed
    at the end of the test if it still runs."""
    from tests.django_project import ProjectProcess

    started: list[ProjectProcess] = []

    def start(project: Path, *args: str, **options: Any) -> ProjectProcess:
        process = ProjectProcess(project, *args, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()
