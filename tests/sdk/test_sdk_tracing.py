"""Trace and structlog context: OpenTelemetry span ids and structlog contextvars ride along automatically."""

from __future__ import annotations

import subprocess
import sys

import oglogstream
import pytest
import structlog
from oglogstream import AsyncOgLogClient, OgLogProcessor

from ..conftest import require
from .capture_server import CaptureServer
from .conftest import FAST

require("opentelemetry.sdk.trace")  # skipped locally when missing; a failure when CI=true
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

_TRACER = TracerProvider().get_tracer("oglogstream-tests")


@pytest.fixture(autouse=True)
def _clean_context():
    oglogstream.clear_context()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def _ids(span) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _by_message(server: CaptureServer) -> dict[str, dict]:
    return {str(e["message"]): e for e in server.entries}


def test_handler_adds_the_active_span_and_explicit_ids_win(
    server: CaptureServer, make_handler, logger
) -> None:
    """Inside a span entries carry its trace_id/span_id; outside none; extra= trace ids override the span."""
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("no span")
    with _TRACER.start_as_current_span("outer") as outer:
        logger.info("in outer")
        with _TRACER.start_as_current_span("inner") as inner:
            logger.info("in inner")
        logger.info("explicit", extra={"trace_id": "t-1", "span_id": "s-1"})
    assert handler.flush(10)
    got = _by_message(server)
    assert "trace_id" not in got["no span"] and "span_id" not in got["no span"]
    assert (got["in outer"]["trace_id"], got["in outer"]["span_id"]) == _ids(outer)
    assert (got["in inner"]["trace_id"], got["in inner"]["span_id"]) == _ids(inner)
    assert _ids(outer)[0] == _ids(inner)[0]
    assert (got["explicit"]["trace_id"], got["explicit"]["span_id"]) == ("t-1", "s-1")


async def test_processor_and_async_client_add_the_active_span(server: CaptureServer) -> None:
    """The structlog processor and the asyncio client capture the span of the calling task too."""
    processor = OgLogProcessor(server.url, "traced", **FAST)
    client = AsyncOgLogClient(server.url, "traced", **FAST)
    with _TRACER.start_as_current_span("request") as span:
        processor(None, "info", {"event": "from structlog"})
        client.info("from asyncio")
    assert processor.flush(10) and await client.flush(10)
    processor.close(2)
    await client.aclose(2)
    got = _by_message(server)
    for message in ("from structlog", "from asyncio"):
        assert (got[message]["trace_id"], got[message]["span_id"]) == _ids(span)


def test_structlog_contextvars_and_bound_context_are_shipped(server: CaptureServer) -> None:
    """bind_contextvars() fields arrive with or without merge_contextvars in the chain; event keys win."""
    processor = OgLogProcessor(server.url, "ctx", **FAST)
    for merge in (False, True):
        chain = [structlog.contextvars.merge_contextvars] if merge else []
        structlog.configure(
            processors=[*chain, processor, structlog.processors.JSONRenderer()],
            logger_factory=structlog.ReturnLoggerFactory(),
        )
        log = structlog.get_logger()
        structlog.contextvars.bind_contextvars(request_id="r-1", tenant="structlog")
        with oglogstream.bound(user="ann", tenant="oglog"):
            log.info(f"merged={merge}", tenant="event")
            log.info(f"plain merged={merge}")
    assert processor.flush(10)
    processor.close(2)
    got = _by_message(server)
    for merge in (False, True):
        assert got[f"merged={merge}"]["attributes"] == {"user": "ann", "tenant": "event", "request_id": "r-1"}
        # structlog's contextvars win over oglogstream's bound context on a clash.
        assert got[f"plain merged={merge}"]["attributes"] == {
            "user": "ann", "tenant": "structlog", "request_id": "r-1"
        }


def test_opentelemetry_is_never_imported_by_the_sdk() -> None:
    """An application without OpenTelemetry pays nothing for it: logging does not import it."""
    code = (
        "import logging, sys, oglogstream\n"
        "h = oglogstream.OgLogHandler('http://127.0.0.1:9', 'svc', connect_timeout=0.1)\n"
        "logging.getLogger().addHandler(h); logging.warning('x')\n"
        "h.close(0.5)\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=30)
