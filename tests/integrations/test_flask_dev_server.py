"""Flask behind Werkzeug's real development server: one shipped record per request, nothing unredacted.

Werkzeug logs an access line of its own for every request ("werkzeug" logger, ANSI colours, raw query
string); with `OgLog(app)` on the root logger those lines must not ship, only the integration's access record.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.sdk.capture_server import CaptureServer
from tests.sdk.conftest import FAST

from .conftest import ACCESS, APP

try:
    from flask import Flask
    from oglogstream.integrations.flask import WERKZEUG_LOGGER_NAME, OgLog
    from werkzeug.serving import make_server
except ImportError:
    if IN_CI:  # CI installs every extra: a missing Flask is a failure there
        raise
    pytest.skip("flask is not installed", allow_module_level=True)

from .test_flask_requests import build_app

Get = Callable[[str], int]
SECRET = "hunter2-secret"


@pytest.fixture
def dev_server(
    server: CaptureServer, clean_root: logging.Logger
) -> Iterator[Callable[..., tuple[OgLog, Get]]]:
    """Starts `OgLog(app)` apps on a real threaded Werkzeug server on a free port; `get(path)` is one real
    HTTP request (answer status). Servers are shut down and handlers closed afterwards."""
    running: list[tuple[Any, threading.Thread, Flask, OgLog]] = []

    def start(**config: Any) -> tuple[OgLog, Get]:
        app = build_app(
            OGLOG_URL=server.url, OGLOG_SERVICE="dev-server", OGLOG_HANDLER_OPTIONS=FAST, **config
        )
        ext = OgLog(app)
        httpd = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append((httpd, thread, app, ext))

        def get(path: str) -> int:
            connection = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=10)
            try:
                connection.request("GET", path, headers={"X-Request-ID": f"dev{len(server.entries)}"})
                response = connection.getresponse()
                response.read()
                return response.status
            finally:
                connection.close()

        return ext, get

    yield start
    for httpd, thread, app, ext in running:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
        ext.close(app, timeout=2)


def shipped(ext: OgLog, server: CaptureServer) -> list[dict[str, Any]]:
    assert ext.handler is not None and ext.handler.flush(5)
    assert not server.problems, server.problems
    return list(server.entries)


def test_each_request_ships_one_record_and_no_werkzeug_line(dev_server: Any, server: CaptureServer) -> None:
    """The issue's example: 200, 404 and 500 requests with `?password=` ship exactly one access record each
    (plus the view's own logs), no Werkzeug line, no ANSI colour code and no secret."""
    ext, get = dev_server()
    assert get(f"/hello/1?password={SECRET}&page=2") == 200
    assert get(f"/missing?password={SECRET}") == 404
    assert get(f"/boom?password={SECRET}") == 500
    entries = shipped(ext, server)
    assert sorted(e["logger"] for e in entries) == [ACCESS, ACCESS, ACCESS, APP, APP]
    access = [e for e in entries if e["logger"] == ACCESS]
    assert [(e["attributes"]["url.path"], e["attributes"]["http.response.status_code"]) for e in access] == [
        ("/hello/1", 200),
        ("/missing", 404),
        ("/boom", 500),
    ]
    assert all("url.query" not in e["attributes"] for e in access)  # OGLOG_LOG_QUERY is off by default
    text = json.dumps(entries)
    assert SECRET not in text and "\\u001b[" not in text and "\x1b[" not in text
    assert [e["logger"] for e in entries if "exception" in e] == [ACCESS]


def test_query_logging_ships_the_redacted_query_once(dev_server: Any, server: CaptureServer) -> None:
    """With OGLOG_LOG_QUERY the query string ships once, on the access record, with the secret redacted."""
    ext, get = dev_server(OGLOG_LOG_QUERY=True)
    assert get(f"/hello/7?password={SECRET}&page=2") == 200
    entries = shipped(ext, server)
    (access,) = [e for e in entries if e["logger"] == ACCESS]
    assert access["attributes"]["url.query"] == "password=[redacted]&page=2"
    assert {e["logger"] for e in entries} == {ACCESS, APP}
    assert SECRET not in json.dumps(entries)


def test_werkzeug_lines_stay_on_the_console(server: CaptureServer, clean_root: logging.Logger) -> None:
    """When nothing printed Werkzeug's lines before, OgLog gives them the stderr handler Werkzeug would have
    added itself (the installed root handler would otherwise stop it), while they still do not ship."""
    werkzeug = logging.getLogger(WERKZEUG_LOGGER_NAME)
    saved_root, saved_werkzeug = list(clean_root.handlers), list(werkzeug.handlers)
    clean_root.handlers.clear()
    werkzeug.handlers.clear()
    app = build_app(OGLOG_URL=server.url, OGLOG_SERVICE="dev-server", OGLOG_HANDLER_OPTIONS=FAST)
    ext = OgLog(app)
    try:
        (console,) = werkzeug.handlers
        assert type(console) is logging.StreamHandler
        record = logging.LogRecord(
            WERKZEUG_LOGGER_NAME,
            logging.INFO,
            __file__,
            1,
            '127.0.0.1 - - [x] "%s" %s %s',
            ("GET /", "200", "2"),
            None,
        )
        assert ext.handler is not None and not ext.handler.filter(record)
        assert console.filter(record)
    finally:
        ext.close(app, timeout=2)
        werkzeug.handlers[:] = saved_werkzeug
        clean_root.handlers[:] = saved_root


def test_werkzeug_startup_lines_ship_without_terminal_colours(
    server: CaptureServer, clean_root: logging.Logger
) -> None:
    """Werkzeug's startup banner (kept: it says what ran) ships without its ANSI colour codes, as a copy:
    the console's record keeps them."""
    app = build_app(OGLOG_URL=server.url, OGLOG_SERVICE="dev-server", OGLOG_HANDLER_OPTIONS=FAST)
    ext = OgLog(app)
    try:
        werkzeug = logging.getLogger(WERKZEUG_LOGGER_NAME)
        banner = "\x1b[31m\x1b[1mWARNING: This is a development server.\x1b[0m"
        werkzeug.warning(banner)
        werkzeug.warning("%s", "\x1b[33mPress CTRL+C to quit\x1b[0m")
        assert ext.handler is not None
        entries = shipped(ext, server)
        assert [(e["logger"], e["message"]) for e in entries] == [
            (WERKZEUG_LOGGER_NAME, "WARNING: This is a development server."),
            (WERKZEUG_LOGGER_NAME, "Press CTRL+C to quit"),
        ]
    finally:
        ext.close(app, timeout=2)
