"""The demo app's access lines say what their attributes say, under the integrations' OpenTelemetry names,
and the URLs `oglog demo` prints line up (the ws:// one included)."""

from __future__ import annotations

import logging
import random
import re

from oglogstream.integrations._common import ATTR_DURATION, ATTR_METHOD, ATTR_PATH, ATTR_STATUS, ATTR_USER
from oglogstream.stack.server import demo

ACCESS = re.compile(r"^(GET|POST) (\S+) (\d{3}) .* (\d+) ms$")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_access_messages_match_their_attributes() -> None:
    """Method, path, status and duration in the message equal the attributes; duration is in seconds."""
    logger = logging.getLogger("test.demo.web")
    logger.propagate, logger.level = False, logging.DEBUG
    handler = _Records()
    logger.addHandler(handler)
    try:
        rng = random.Random(7)
        for _ in range(2000):
            demo._web(rng, logger)
    finally:
        logger.removeHandler(handler)
    statuses = set()
    for record in handler.records:
        attrs = record.__dict__
        match = ACCESS.match(record.getMessage())
        assert match, record.getMessage()
        method, path, status, millis = match.groups()
        assert (attrs[ATTR_METHOD], attrs[ATTR_PATH], attrs[ATTR_STATUS]) == (method, path, int(status))
        assert f"{attrs[ATTR_DURATION] * 1000:.0f}" == millis and 0 < attrs[ATTR_DURATION] < 60
        assert attrs[ATTR_USER] in demo._USERS
        assert not {"http.method", "http.path", "duration_ms", "user"} & set(attrs)
        statuses.add((record.levelno, int(status)))
    assert (logging.ERROR, 502) in statuses and (logging.INFO, 200) in statuses


def test_printed_urls_share_one_description_column() -> None:
    """Every description, the WebSocket line's too, starts in the same column."""
    lines = demo.links_text("http://127.0.0.1:8080").splitlines()
    columns = {len(line) - len(line.split("   ")[-1].lstrip()) for line in lines}
    assert len(lines) == 8 and len(columns) == 1, lines
    assert lines[-1].lstrip().startswith("ws://127.0.0.1:8080/ws/live ")
