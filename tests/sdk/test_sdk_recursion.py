"""No recursion, no deadlock: worker-caused records are never shipped; logging re-config cannot hang it."""

from __future__ import annotations

import logging
import logging.config
import threading
import time
from typing import Any

import pytest

from .capture_server import CaptureServer
from .conftest import FAST


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root_debug():
    """The root logger at DEBUG (so httpx/httpcore log every request); restored afterwards."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    root.setLevel(logging.DEBUG)
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def test_httpx_logging_from_the_worker_is_not_shipped(
    server: CaptureServer, make_handler, root_debug
) -> None:
    """On a DEBUG root, the httpx/httpcore records that sending causes never come back as entries, and no
    other handler sees them either (they are filtered at their loggers: no application-visible noise)."""
    collect = _Collect()
    handler = make_handler(server.url, batch_size=50)
    root_debug.addHandler(collect)
    root_debug.addHandler(handler)
    app = logging.getLogger("app")
    for i in range(500):
        app.info("app %d", i)
    assert handler.flush(10)
    time.sleep(0.3)  # give a loop, if there were one, time to show up
    assert handler.flush(5)
    assert not any(r.name.startswith(("httpx", "httpcore")) for r in collect.records)
    assert server.entry_count == 500
    assert {e["logger"] for e in server.entries} == {"app"}


def test_app_httpx_records_are_still_shipped(server: CaptureServer, make_handler, logger) -> None:
    """Only worker-caused records are skipped: an httpx record from an application thread is shipped."""
    handler = make_handler(server.url)
    httpx_logger = logging.getLogger("httpx")
    httpx_logger.addHandler(handler)
    try:
        httpx_logger.warning("app-side httpx record")
        assert handler.flush(5)
    finally:
        httpx_logger.removeHandler(handler)
    assert [e["logger"] for e in server.entries] == ["httpx"]


def _config(url: str, service: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "oglog": {
                "class": "oglogstream.OgLogHandler",
                "url": url,
                "service": service,
                "level": "DEBUG",
                **FAST,
            },
        },
        "root": {"level": "DEBUG", "handlers": ["oglog"]},
    }


def test_dictconfig_builds_and_reconfigures_without_hanging(server: CaptureServer, root_debug) -> None:
    """dictConfig creates the handler; a second dictConfig closes it (draining) promptly while others log."""
    logging.config.dictConfig(_config(server.url, "first"))
    first = next(h for h in logging.getLogger().handlers if type(h).__name__ == "OgLogHandler")
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            logging.getLogger("chatter").debug("tick")
            time.sleep(0.001)

    thread = threading.Thread(target=chatter)
    thread.start()
    try:
        for i in range(300):
            logging.getLogger("app").info("first %d", i)
        logging.getLogger("app").setLevel(logging.DEBUG)  # empties every logger's level cache
        started = time.monotonic()
        logging.config.dictConfig(_config(server.url, "second"))
        assert time.monotonic() - started < 3
        logging.getLogger("app").info("after reconfig")
    finally:
        stop.set()
        thread.join()
    second = next(h for h in logging.getLogger().handlers if type(h).__name__ == "OgLogHandler")
    assert second is not first
    assert second.flush(5)
    second.close()
    messages = {(e["service"], e["message"]) for e in server.entries}
    assert all(("first", f"first {i}") in messages for i in range(300))
    assert ("second", "after reconfig") in messages
    assert not any(e["logger"].startswith(("httpx", "httpcore")) for e in server.entries)
    assert first.stats().dropped.get("shutdown", 0) == 0
