"""Fixtures for the SDK tests: a real capture server, and handlers with test-speed settings that clean up."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from oglogstream import OgLogHandler

from .capture_server import BlackHoleServer

#: Small intervals and backoff so failure paths take milliseconds, not seconds.
FAST: dict[str, Any] = {
    "flush_interval": 0.05,
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "shutdown_timeout": 5.0,
    "connect_timeout": 1.0,
    "read_timeout": 2.0,
}


@pytest.fixture
def make_handler() -> Iterator[Callable[..., OgLogHandler]]:
    """Build handlers with FAST settings (overridable); every one is closed after the test."""
    made: list[OgLogHandler] = []

    def make(url: str, service: str = "sdk-test", **kwargs: Any) -> OgLogHandler:
        handler = OgLogHandler(url, service, **{**FAST, **kwargs})
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close(timeout=2.0)


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A DEBUG logger private to the test (no propagation); its handlers are removed afterwards."""
    log = logging.getLogger(f"sdktest.{request.node.name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


@pytest.fixture
def stuck_handler(logger: logging.Logger) -> Iterator[OgLogHandler]:
    """A handler with default settings on `logger`, whose worker is stuck in a send to a server that never
    answers (the memory-bound tests: what waits stays waiting)."""
    server = BlackHoleServer()
    handler = OgLogHandler(server.url, "stuck")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        worker = handler._pipeline._thread
        handler.close(0.5)
        server.close()
        # The abandoned worker frees its buffers once its send fails: before the next test measures.
        if worker is not None:
            worker.join(30)


def attach(log: logging.Logger, handler: logging.Handler) -> logging.Logger:
    log.addHandler(handler)
    return log


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The test's own proxy settings only (none inherited from the machine)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch
