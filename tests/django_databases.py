"""Databases for in-process tests of ORM code (``mqttbridge.django.batch``).

The test session configures Django with no database (tests/conftest.py); ``use_databases``
points it at real ones afterwards: a SQLite file, and a fresh database on the PostgreSQL server
of 127.0.0.1:5432 made by ``postgres_database`` (tests/conftest.py) and dropped at the end.
"""

from __future__ import annotations

from typing import Any

from asgiref.local import Local

__all__ = ["postgres_settings", "sqlite_settings", "use_databases"]


def sqlite_settings(path: str) -> dict[str, Any]:
    # A short lock timeout: a test holding the database locked models an outage in 0.1 s.
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": {"timeout": 0.1}}


def postgres_settings(name: str, port: int = 5432, host: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": "postgres",
        "HOST": host,
        "PORT": str(port),
        "CONN_MAX_AGE": 60,
    }


def use_databases(databases: dict[str, dict[str, Any]]) -> None:
    """Replace ``settings.DATABASES`` in this process, closing what was open."""
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    settings.DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}, **databases}
    # ConnectionHandler caches the settings and keeps connections per thread: start afresh.
    connections._settings = None  # type: ignore[attr-defined]
    connections.__dict__.pop("settings", None)
    connections._connections = Local(connections.thread_critical)  # type: ignore[attr-defined]
