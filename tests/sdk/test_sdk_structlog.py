"""The structlog processor: ships event dicts through the same worker and passes them on unchanged."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import structlog
from oglogstream import OgLogProcessor

from .capture_server import CaptureServer
from .conftest import FAST


@pytest.fixture
def processor(server: CaptureServer):
    proc = OgLogProcessor(server.url, "structlog-svc", **FAST)
    yield proc
    proc.close(2)


def _configure(proc: OgLogProcessor, captured: list[Any]) -> Any:
    def capture(logger: Any, method: str, event_dict: Any) -> str:
        captured.append(dict(event_dict))
        return "rendered"

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            proc,
            structlog.processors.format_exc_info,
            capture,
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger("shop")


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_events_are_shipped_and_passed_on_unchanged(server: CaptureServer, processor: OgLogProcessor) -> None:
    """Keys become attributes, event the message, level mapped; the next processor sees the same dict."""
    captured: list[Any] = []
    log = _configure(processor, captured)
    structlog.contextvars.bind_contextvars(request_id="r-1")
    log.warning("payment failed", amount=12.5, user={"id": 7}, logger="payments")
    assert processor.flush(5)
    (entry,) = server.entries
    assert entry["message"] == "payment failed" and entry["level"] == "warn"
    assert entry["service"] == "structlog-svc" and entry["logger"] == "payments"
    assert entry["attributes"] == {"request_id": "r-1", "amount": 12.5, "user": '{"id": 7}'}
    assert captured[0]["event"] == "payment failed" and captured[0]["amount"] == 12.5
    assert captured[0]["timestamp"][:10] == entry["timestamp"][:10]


def test_exception_is_captured_on_the_caller_thread(server: CaptureServer, processor: OgLogProcessor) -> None:
    """log.exception() inside except ships the traceback even though a later processor pops exc_info."""
    captured: list[Any] = []
    log = _configure(processor, captured)
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed")
    assert processor.flush(5)
    (entry,) = server.entries
    assert entry["level"] == "error"
    assert "KeyError: 'missing'" in entry["exception"]
    assert "exception" in captured[0]  # format_exc_info still ran on the unchanged dict


def test_dict_tracebacks_before_the_processor_still_ship_the_exception(
    server: CaptureServer, processor: OgLogProcessor
) -> None:
    """structlog's `dict_tracebacks` turns exc_info into a list of dicts before the processor: it ships as the
    exception field's JSON text, naming the error (before: no exception field, no attribute, nothing said)."""
    structlog.configure(
        processors=[structlog.processors.dict_tracebacks, processor, structlog.processors.JSONRenderer()],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    try:
        {}["missing"]
    except KeyError:
        structlog.get_logger().exception("lookup failed")
    assert processor.flush(5)
    (entry,) = server.entries
    shipped = json.loads(entry["exception"])
    assert shipped[0]["exc_type"] == "KeyError" and "missing" in shipped[0]["exc_value"]


def test_processor_can_share_a_handler(server: CaptureServer, make_handler, logger) -> None:
    """OgLogProcessor(handler=h) uses the handler's worker and stats: both kinds of records arrive."""
    handler = make_handler(server.url)
    logger.addHandler(handler)
    proc = OgLogProcessor(handler=handler)
    proc(None, "info", {"event": "from structlog"})
    logger.info("from logging")
    assert handler.flush(5)
    assert {e["message"] for e in server.entries} == {"from structlog", "from logging"}
    assert handler.stats().sent == 2 == proc.stats().sent
    proc.close()  # leaves the shared handler running
    logger.info("still running")
    assert handler.flush(5) and server.entry_count == 3


def test_processor_settings_are_validated(server: CaptureServer, make_handler) -> None:
    """Unknown settings, bad values and handler= mixed with settings are clear errors."""
    with pytest.raises(TypeError, match=r"unknown setting.*bogus"):
        OgLogProcessor(server.url, "s", bogus=1)
    with pytest.raises(ValueError, match="batch_size"):
        OgLogProcessor(server.url, "s", batch_size=0)
    with pytest.raises(ValueError, match="either handler= or connection settings"):
        OgLogProcessor(server.url, handler=make_handler(server.url))


def test_stdlib_structlog_bridge_records_are_shipped(server: CaptureServer, make_handler, logger) -> None:
    """structlog routed into stdlib logging (LoggerFactory) reaches OgLogHandler like any record."""
    handler = make_handler(server.url)
    logger.addHandler(handler)
    structlog.configure(
        processors=[structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    structlog.get_logger(logger.name).info("bridged", order=42)
    assert handler.flush(5)
    (entry,) = server.entries
    assert entry["message"] == "bridged" and entry["attributes"] == {"order": 42}
    assert entry["level"] == "info" and logging.getLogger(logger.name) is logger
