"""Fixtures for the integration tests: the SDK's real capture server, a shipping handler on the root logger,
and Django settings that exist only while a Django test module runs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from oglogstream import OgLogHandler

from tests.conftest import require
from tests.sdk.capture_server import CaptureServer
from tests.sdk.conftest import FAST

ACCESS = "oglogstream.access"
#: The logger the test views write to.
APP = "tests.integrations.app"

Shipped = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def clean_root() -> Iterator[logging.Logger]:
    """Restore the root logger (handlers, level) and the levels of the loggers the tests use afterwards."""
    root = logging.getLogger()
    saved_handlers = list(root.handlers)
    saved_levels = {name: logging.getLogger(name).level for name in ("", ACCESS, APP, "django.request")}
    logging.getLogger(APP).setLevel(logging.INFO)
    yield root
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
            if isinstance(handler, OgLogHandler):
                handler.close(2)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def shipping(server: CaptureServer, clean_root: logging.Logger) -> Iterator[Shipped]:
    """An OgLogHandler on the root logger; the fixture value flushes it and returns the entries it delivered
    (optionally only those of one logger)."""
    handler = OgLogHandler(server.url, "integrations-test", **FAST)
    clean_root.addHandler(handler)

    def shipped(logger: str | None = None) -> list[dict[str, Any]]:
        assert handler.flush(5)
        assert not server.problems, server.problems
        return [e for e in server.entries if logger is None or e.get("logger") == logger]

    yield shipped
    clean_root.removeHandler(handler)
    handler.close(2)


def access_entries(shipped: Shipped) -> list[dict[str, Any]]:
    return shipped(ACCESS)


DJANGO_MIDDLEWARE = [
    "oglogstream.integrations.django.RequestLogMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


def django_settings(db: Path) -> dict[str, Any]:
    return {
        "DEBUG": False,
        "SECRET_KEY": "tests-only-not-secret",
        "ALLOWED_HOSTS": ["testserver", "localhost"],
        "ROOT_URLCONF": "tests.integrations.django_app",
        "INSTALLED_APPS": [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "django.contrib.messages",
        ],
        "MIDDLEWARE": DJANGO_MIDDLEWARE,
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db)}},
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "USE_TZ": True,
        # Django must not configure logging itself: each test decides where records go.
        "LOGGING_CONFIG": None,
    }


@pytest.fixture(scope="session")
def django_db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file for every Django module: Django caches the database settings once per process."""
    return tmp_path_factory.mktemp("django") / "db.sqlite3"


@pytest.fixture(scope="module")
def django_env(django_db_path: Path) -> Iterator[Any]:
    """Django configured for this module only (settings are unset again afterwards), with a migrated
    file-based SQLite database (a file, so sync_to_async's thread sees the same tables)."""
    require("django")
    import django
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections
    from django.utils.functional import empty

    saved = settings._wrapped
    settings._wrapped = empty
    settings.configure(**django_settings(django_db_path))
    try:
        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        yield settings
    finally:
        connections.close_all()
        settings._wrapped = saved
