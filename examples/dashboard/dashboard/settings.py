"""Settings for the dashboard example: SQLite by default, PostgreSQL through DATABASE_URL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dashboard make dashboard

Everything runs in one process (``manage.py mqttbridge run --http ...``), so the in-memory
channel layer joins MQTT consumers, WebSocket consumers and views, and no Redis is needed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

# An example on loopback: set DJANGO_SECRET_KEY (and DJANGO_ALLOWED_HOSTS) before exposing it.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dashboard-example-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "mqttbridge.django",
    "telemetry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the page's and the admin's) from this process: no web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
ASGI_APPLICATION = "dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Connections are kept (CONN_MAX_AGE) and checked before reuse: otherwise the batch writer's
# thread opens a new one for every batch (with SQLite, its PRAGMAs too), which was a fifth of
# that thread's time at 1,000 readings/s (docs/benchmarks.md). A connection broken by a
# database restart fails the health check, or the batch writer drops it and retries.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=600, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the page read while the batch writer commits; IMMEDIATE takes the write lock at
    # BEGIN, so two writers wait for each other (busy timeout) instead of failing mid-batch.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One process: MQTT device instances, browser sockets and views share this layer.
# mqttbridge's subclass of Channels' in-memory layer sweeps expired messages once a second
# rather than on every receive (thousands of device instances wait on it). A browser's socket
# follows every device: room for a burst of readings before the layer drops any for it.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "mqttbridge.layers.memory.InMemoryChannelLayer",
        "CONFIG": {"capacity": 1000},
    }
}

# The bridge (`manage.py mqttbridge run`; every key in docs/config.md). Routes are in asgi.py.
MQTTBRIDGE = {
    "broker": {
        # "embedded" runs the MQTT broker inside the process; or mqtt://host:1883 to bridge a
        # Mosquitto the devices already use.
        "url": os.environ.get("DASHBOARD_BROKER", "embedded"),
        # Not 1883 (Mosquitto's, often taken) nor 18830 (`make run`'s demo): all may run at once.
        "listen": os.environ.get("DASHBOARD_MQTT_LISTEN", "127.0.0.1:18831"),
        "keepalive": 30,
    },
    "limits": {
        # The simulated devices publish every 5 s: their instances, which carry the commands,
        # stay up between readings.
        "idle_timeout": 300,
        "shutdown_timeout": 10,
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Without a STATIC_ROOT, static files are served from the apps' static/ folders as found at
# start-up (the admin's too): the example needs no collectstatic step. A deployment sets
# DJANGO_STATIC_ROOT, runs `manage.py collectstatic`, and whitenoise serves that folder.
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = STATIC_ROOT is None
# Under ASGI, Django warns for every response that streams a file through a synchronous
# iterator, which is what whitenoise (6.x, WSGI-first) returns for each static file. Django then
# reads the file in a worker thread, as an asynchronous iterator would have to: only the
# warning is wrong here, and it would be logged for every file the page and the admin load.
warnings.filterwarnings(
    "ignore", message="StreamingHttpResponse must consume synchronous iterators", category=Warning
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"telemetry": {"level": os.environ.get("DASHBOARD_LOG_LEVEL", "INFO")}},
}
