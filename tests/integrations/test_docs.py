"""The examples in docs/integrations.md work as written (only the URL points at a local capture server)."""

from __future__ import annotations

import logging
import logging.config
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oglogstream import OgLogHandler

from tests.conftest import require
from tests.sdk.capture_server import CaptureServer

from .conftest import ACCESS

_DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
_CONFIGURED = (ACCESS, "django.request")


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", _DOC.read_text(encoding="utf-8"), flags=re.S)


def _run(example: str, url: str) -> dict[str, Any]:
    assert "http://localhost:8080" in example
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(example.replace("http://localhost:8080", url), str(_DOC), "exec"), namespace)
    return namespace


@pytest.fixture
def restore_loggers(clean_root: logging.Logger) -> Iterator[None]:
    """Undo what an example's dictConfig does to the loggers it names (handlers, propagation, level)."""
    saved = {
        name: (list(lg.handlers), lg.propagate, lg.level)
        for name in _CONFIGURED
        if (lg := logging.getLogger(name))
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers and isinstance(handler, OgLogHandler):
                handler.close(2)
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level


def test_the_doc_has_the_two_examples() -> None:
    """docs/integrations.md has the Django settings example and the Flask example this file runs."""
    django_example, flask_example = _examples()
    assert "LOGGING = {" in django_example and "MIDDLEWARE = [" in django_example
    assert "OgLog(app)" in flask_example


@pytest.mark.usefixtures("django_env", "restore_loggers")
def test_django_settings_example(server: CaptureServer) -> None:
    """The LOGGING + MIDDLEWARE example (a root OgLogHandler, django.request left to propagate) ships access
    records, and an unhandled exception's traceback exactly once."""
    from django.test import Client, override_settings

    namespace = _run(_examples()[0], server.url)
    logging.config.dictConfig(namespace["LOGGING"])
    settings = {k: v for k, v in namespace.items() if k == "MIDDLEWARE" or k.startswith("OGLOG_")}
    with override_settings(**settings):
        client = Client(raise_request_exception=False)
        assert client.get("/hello/5/", HTTP_X_REQUEST_ID="doc-ok").status_code == 200
        assert client.get("/boom/", HTTP_X_REQUEST_ID="doc-boom").status_code == 500
        assert client.get("/healthz").status_code == 404  # skipped path, but a 404 is still logged
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, OgLogHandler)]
    assert handler.flush(5)
    access = {e["attributes"]["request_id"]: e for e in server.entries if e["logger"] == ACCESS}
    assert len(access) == 3 and {"doc-ok", "doc-boom"} <= set(access)  # + the generated id of /healthz
    assert (
        access["doc-ok"]["service"] == "shop"
        and access["doc-ok"]["attributes"]["http.route"] == "hello/<int:pk>/"
    )
    with_traceback = [e for e in server.entries if "exception" in e]
    assert [e["logger"] for e in with_traceback] == [ACCESS]
    # django.request reaches the root's OgLogHandler ("Internal Server Error", "Not Found"): none ships.
    assert not [e for e in server.entries if e["logger"].startswith("django")]
    assert "RuntimeError: kaboom" in with_traceback[0]["exception"]
    view_logs = [e for e in server.entries if e["logger"] == "tests.integrations.app"]
    assert {e["attributes"]["request_id"] for e in view_logs} == {"doc-ok", "doc-boom"}


def test_flask_example(server: CaptureServer, clean_root: logging.Logger) -> None:
    """The Flask example installs the handler; the view's warning and the access record share a request id."""
    require("flask")
    namespace = _run(_examples()[1], server.url)
    app, oglog = namespace["app"], namespace["oglog"]
    try:
        response = app.test_client().get("/hello/ana")
        assert response.json == {"hello": "ana"}
        assert oglog.handler.flush(5)
        by_logger = {e["logger"]: e for e in server.entries}
        request_id = response.headers["X-Request-ID"]
        assert by_logger[app.logger.name]["message"] == "greeting ana"
        assert by_logger[app.logger.name]["attributes"] == {"request_id": request_id}
        assert by_logger[ACCESS]["attributes"]["http.route"] == "/hello/<name>"
        assert by_logger[ACCESS]["service"] == "shop"
    finally:
        assert oglog.close(app, timeout=2)
