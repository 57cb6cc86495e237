"""Django: one record per request reaches OgLogStream, and an unhandled exception's traceback ships once.

`django.request` logs every 4xx/5xx again ("Internal Server Error: /boom/" with the traceback, "Not Found")
and runserver logs an access line of its own (`django.server`, raw query string); with an OgLogHandler on the
root logger those records are duplicates of the access record and must not ship. Other handlers keep them.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ACCESS, APP, Shipped

pytestmark = pytest.mark.usefixtures("django_env")

SECRET = "hunter2-secret"


class Collect(logging.Handler):
    """Stands for the console: remembers what reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def console() -> Iterator[Collect]:
    """A second handler on `django.request` (records still propagate to the root's OgLogHandler)."""
    handler = Collect()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def client() -> Any:
    from django.test import Client

    return Client(raise_request_exception=False)


def test_unhandled_exception_ships_its_traceback_once(shipping: Shipped, console: Collect) -> None:
    """The issue's example: a raising view gives one record with the traceback (the access record); the
    console still gets django.request's "Internal Server Error" with it."""
    assert client().get("/boom/", HTTP_X_REQUEST_ID="once").status_code == 500
    entries = shipping()
    assert [e["logger"] for e in entries if "exception" in e] == [ACCESS]
    assert sorted(e["logger"] for e in entries) == [ACCESS, APP]
    assert [r.getMessage() for r in console.records] == ["Internal Server Error: /boom/"]
    assert console.records[0].exc_info is not None


def test_4xx_and_returned_5xx_ship_only_the_access_record(shipping: Shipped, console: Collect) -> None:
    """ "Not Found" and "Service Unavailable" from django.request do not ship next to the access record."""
    c = client()
    assert c.get("/missing/").status_code == 404
    assert c.get("/unavailable/").status_code == 503
    entries = shipping()
    assert [(e["logger"], e["attributes"]["http.response.status_code"]) for e in entries] == [
        (ACCESS, 404),
        (ACCESS, 503),
    ]
    assert [r.getMessage() for r in console.records] == [
        "Not Found: /missing/",
        "Service Unavailable: /unavailable/",
    ]


def test_with_access_records_off_django_request_ships_the_traceback(shipping: Shipped) -> None:
    """When the access logger is above ERROR there is no access record: django.request's record is then the
    one that ships the traceback (still exactly once)."""
    logging.getLogger(ACCESS).setLevel(logging.CRITICAL)
    assert client().get("/boom/", HTTP_X_REQUEST_ID="quiet").status_code == 500
    with_traceback = [e for e in shipping() if "exception" in e]
    assert [e["logger"] for e in with_traceback] == ["django.request"]
    assert with_traceback[0]["attributes"]["request_id"] == "quiet"


def test_runserver_ships_one_record_per_request_and_no_secret(shipping: Shipped) -> None:
    """Behind Django's real development server (runserver's WSGIServer and request handler) each request ships
    one access record and no `django.server` line (which carries the raw query string)."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    httpd = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    httpd.set_app(WSGIHandler())
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    statuses = []
    try:
        for path in (f"/hello/3/?password={SECRET}", f"/missing/?password={SECRET}", "/boom/"):
            connection = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=10)
            connection.request("GET", path, headers={"Host": "localhost"})
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            connection.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
    assert statuses == [200, 404, 500]
    entries = shipping()
    access = [e for e in entries if e["logger"] == ACCESS]
    assert [e["attributes"]["http.response.status_code"] for e in access] == [200, 404, 500]
    assert sorted(e["logger"] for e in entries) == sorted([ACCESS] * 3 + [APP] * 2)
    assert [e["logger"] for e in entries if "exception" in e] == [ACCESS]
    assert SECRET not in json.dumps(entries)
