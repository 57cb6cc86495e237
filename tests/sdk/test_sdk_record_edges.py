"""Odd but legal inputs are shipped or shown safely: a server's rejection text reaches stderr quoted (no
forged lines, no escape sequences), the API key is not in the settings' repr, `extra={"taskName": ...}`
is shipped on Python 3.11 (a LogRecord attribute only from 3.12), and a record whose `thread` a filter
deleted is shipped, not lost as internal_error."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import pytest
from oglogstream import AsyncOgLogClient, OgLogHandler, _diag

from .answer_server import AnswerServer
from .capture_server import CaptureServer

FORGED = "bad\noglogstream: [x] all records delivered\x1b[2J\r"


def _logger(name: str, handler: OgLogHandler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger


def test_a_rejection_text_reaches_stderr_quoted(
    make_handler: Callable[..., OgLogHandler], capsys: pytest.CaptureFixture[str]
) -> None:
    """The first rejected entry's error is shown with repr: its newline, escape and carriage return stay
    inside one quoted line."""
    answer = {"rejected": [{"index": 0, "error": FORGED}], "rejected_count": 1}
    _diag._last.pop("rejected", None)  # an earlier test's line would rate-limit this one's
    with AnswerServer() as server:
        server.answer = (202, {}, json.dumps(answer).encode())
        handler = make_handler(server.url)
        _logger("edges-rejected", handler).info("one")
        assert handler.flush(timeout=10)
        assert handler.stats().dropped.get("rejected") == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "server rejected 1 of 1" in line]
    assert len(lines) == 1 and repr(FORGED) in lines[0]
    assert "\x1b" not in err and "\r" not in err
    assert not any(line.startswith("oglogstream: [x]") for line in err.splitlines())


async def test_the_api_key_is_not_in_the_settings_repr(make_handler: Callable[..., OgLogHandler]) -> None:
    """`handler.settings` and `client.settings` are printable without the key (it is still used)."""
    handler = make_handler("http://127.0.0.1:9", api_key="s3cret-key-value")
    client = AsyncOgLogClient("http://127.0.0.1:9", "edges", api_key="s3cret-key-value")
    try:
        for settings in (handler.settings, client.settings):
            assert settings.api_key == "s3cret-key-value"
            assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    finally:
        await client.aclose(0.2)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="taskName is a LogRecord attribute from 3.12")
def test_a_task_name_extra_is_shipped_on_3_11(make_handler: Callable[..., OgLogHandler]) -> None:
    """On 3.11 `taskName` is an `extra=` field like any other."""
    with CaptureServer() as server:
        handler = make_handler(server.url)
        _logger("edges-task", handler).info("m", extra={"taskName": "T"})
        assert handler.flush(timeout=10)
        assert server.wait_entries(1)
        assert server.entries[0]["attributes"] == {"taskName": "T"}


class _DropThread(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        del record.thread
        return True


@pytest.mark.parametrize("where", ["logger", "handler"])
def test_a_record_without_its_thread_attribute_is_shipped(
    make_handler: Callable[..., OgLogHandler], where: str
) -> None:
    """A filter (on the logger, or on our handler) that deletes `record.thread` loses nothing."""
    with CaptureServer() as server:
        handler = make_handler(server.url)
        logger = _logger(f"edges-thread-{where}", handler)
        target: Any = logger if where == "logger" else handler
        target.addFilter(_DropThread())
        try:
            logger.info("no thread id")
            assert handler.flush(timeout=10)
            assert server.wait_entries(1)
        finally:
            target.filters.clear()
        assert server.entries[0]["message"] == "no thread id"
        assert not handler.stats().dropped
