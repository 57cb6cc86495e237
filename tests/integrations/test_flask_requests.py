"""Flask: `OgLog(app)` installs the handler from app.config; the same request ids and access records."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import oglogstream
import pytest
from oglogstream import OgLogHandler

from tests.conftest import IN_CI
from tests.sdk.capture_server import CaptureServer
from tests.sdk.conftest import FAST

from .conftest import ACCESS, APP, Shipped

try:
    from flask import Flask, g
    from oglogstream.integrations.flask import EXTENSION_KEY, OgLog
except ImportError:
    if IN_CI:  # CI installs every extra: a missing Flask is a failure there
        raise
    pytest.skip("flask is not installed", allow_module_level=True)

log = logging.getLogger(APP)
MakeApp = Callable[..., tuple[Flask, OgLog]]


def build_app(**config: Any) -> Flask:
    app = Flask("flask_test_app")
    app.config.update(config)

    @app.get("/hello/<int:pk>")
    def hello(pk: int) -> dict[str, int]:
        log.info("hello %d", pk)
        return {"pk": pk}

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/boom")
    def boom() -> str:
        log.info("about to fail")
        raise RuntimeError("kaboom")

    @app.get("/teapot")
    def teapot() -> tuple[str, int]:
        return "short and stout", 418

    @app.get("/bind")
    def bind() -> str:
        oglogstream.bind(order_id=99)
        log.info("bound in view")
        return "ok"

    return app


@pytest.fixture
def make_app(server: CaptureServer, clean_root: logging.Logger) -> Iterator[MakeApp]:
    """Apps with OgLog shipping to the capture server; every installed handler is closed afterwards."""
    made: list[tuple[Flask, OgLog]] = []

    def make(**config: Any) -> tuple[Flask, OgLog]:
        settings = {
            "OGLOG_URL": server.url,
            "OGLOG_SERVICE": "flask-test",
            "OGLOG_HANDLER_OPTIONS": FAST,
            **config,
        }
        app = build_app(**{k: v for k, v in settings.items() if v is not None})
        made.append((app, OgLog(app)))
        return made[-1]

    yield make
    for app, ext in made:
        ext.close(app, timeout=2)


def entries(ext: OgLog, server: CaptureServer, logger: str | None = None) -> list[dict[str, Any]]:
    assert ext.handler is not None and ext.handler.flush(5)
    assert not server.problems, server.problems
    return [e for e in server.entries if logger is None or e.get("logger") == logger]


def test_access_record_exact_fields_and_request_id(make_app: MakeApp, server: CaptureServer) -> None:
    """A sane X-Request-ID is echoed and carried by the view's log and by one INFO access record."""
    app, ext = make_app()
    response = app.test_client().get(
        "/hello/42?token=secret", headers={"X-Request-ID": "flask-42", "User-Agent": "curl/8.5.0"}
    )
    assert response.status_code == 200 and response.headers["X-Request-ID"] == "flask-42"
    (access,) = entries(ext, server, ACCESS)
    attributes = access["attributes"]
    assert attributes.pop("http.server.request.duration") >= 0
    assert attributes == {
        "request_id": "flask-42",
        "http.request.method": "GET",
        "url.path": "/hello/42",
        "http.route": "/hello/<int:pk>",
        "http.response.status_code": 200,
        "client.address": "127.0.0.1",
        "user_agent.original": "curl/8.5.0",
    }
    assert (access["level"], access["service"]) == ("info", "flask-test")
    assert re.fullmatch(r"GET /hello/42 200 \d+\.\dms", access["message"])
    (view_log,) = entries(ext, server, APP)
    assert view_log["attributes"] == {"request_id": "flask-42"}


def test_installs_one_handler_on_root_and_close_removes_it(make_app: MakeApp) -> None:
    """OGLOG_URL/OGLOG_SERVICE build an OgLogHandler at OGLOG_LEVEL on the root logger; close() removes it."""
    app, ext = make_app(OGLOG_LEVEL="WARNING")
    handler = ext.handler
    assert isinstance(handler, OgLogHandler) and handler.service == "flask-test"
    assert handler.level == logging.WARNING and handler in logging.getLogger().handlers
    assert app.extensions[EXTENSION_KEY].handler is handler
    assert ext.close(app, timeout=2)
    assert handler not in logging.getLogger().handlers


def test_without_oglog_url_no_handler_is_installed(shipping: Shipped) -> None:
    """Without OGLOG_URL the app's own logging set-up ships records; request ids and access records work."""
    app = build_app()
    ext = OgLog(app)
    assert ext.handler is None
    response = app.test_client().get("/hello/1")
    (access,) = shipping(ACCESS)
    assert access["attributes"]["request_id"] == response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_init_app_twice_and_bad_config_are_errors(make_app: MakeApp) -> None:
    """A second init_app on one app and a bad OGLOG_* value fail clearly, naming what is wrong."""
    app, _ = make_app()
    with pytest.raises(RuntimeError, match="already initialised"):
        OgLog(app)
    with pytest.raises(ValueError, match="OGLOG_ACCESS_SAMPLE_RATE"):
        OgLog(build_app(OGLOG_ACCESS_SAMPLE_RATE="all"))
    with pytest.raises(ValueError, match="OGLOG_SKIP_PATHS"):
        OgLog(build_app(OGLOG_SKIP_PATHS="/health"))
    with pytest.raises(ValueError, match="OGLOG_USER_ID"):
        OgLog(build_app(OGLOG_USER_ID="current_user"))
    with pytest.raises(ValueError, match="service"):
        OgLog(build_app(OGLOG_URL="http://127.0.0.1:9"))
    with pytest.raises(ValueError, match=r"OGLOG_HANDLER_OPTIONS.*batch_sise"):
        OgLog(
            build_app(
                OGLOG_URL="http://127.0.0.1:9", OGLOG_SERVICE="s", OGLOG_HANDLER_OPTIONS={"batch_sise": 5}
            )
        )


def test_unhandled_exception_logged_once_with_traceback(make_app: MakeApp, server: CaptureServer) -> None:
    """Outside testing mode a raising view gives a 500, and only the access record carries the traceback
    (Flask's own "Exception on ..." record is not shipped twice)."""
    app, ext = make_app()
    response = app.test_client().get("/boom", headers={"X-Request-ID": "flask-boom"})
    assert response.status_code == 500 and response.headers["X-Request-ID"] == "flask-boom"
    with_traceback = [e for e in entries(ext, server) if "exception" in e]
    assert len(with_traceback) == 1
    (access,) = with_traceback
    assert access["logger"] == ACCESS and access["level"] == "error"
    assert (
        access["attributes"]["http.response.status_code"] == 500
        and access["attributes"]["http.route"] == "/boom"
    )
    assert "RuntimeError: kaboom" in access["exception"]
    (view_log,) = entries(ext, server, APP)
    assert view_log["attributes"] == {"request_id": "flask-boom"}


def test_propagated_exception_still_gets_a_500_record(make_app: MakeApp, server: CaptureServer) -> None:
    """In testing mode the exception propagates out of the app; the 500 record is still written."""
    app, ext = make_app()
    app.testing = True
    with pytest.raises(RuntimeError, match="kaboom"):
        app.test_client().get("/boom")
    (access,) = entries(ext, server, ACCESS)
    assert (
        access["attributes"]["http.response.status_code"] == 500
        and "RuntimeError: kaboom" in access["exception"]
    )
    assert dict(oglogstream.get_context()) == {}


def test_failing_teardown_is_safe(make_app: MakeApp, server: CaptureServer) -> None:
    """A teardown function that raises still gets a 500 record, and the bound context is restored."""
    app, ext = make_app(PROPAGATE_EXCEPTIONS=True)

    @app.teardown_request
    def broken(exc: BaseException | None) -> None:
        log.info("teardown sees the request id")
        raise OSError("teardown broke")

    with pytest.raises(OSError, match="teardown broke"):
        app.test_client().get("/hello/1", headers={"X-Request-ID": "teardown"})
    (access,) = entries(ext, server, ACCESS)
    assert (
        access["attributes"]["http.response.status_code"] == 500
        and "OSError: teardown broke" in access["exception"]
    )
    assert {e["attributes"]["request_id"] for e in entries(ext, server, APP)} == {"teardown"}
    assert dict(oglogstream.get_context()) == {}


def test_fields_bound_in_a_view_do_not_leak_and_g_is_untouched(
    make_app: MakeApp, server: CaptureServer
) -> None:
    """oglogstream.bind() inside a view lasts for that request only; the extension does not use flask.g."""
    app, ext = make_app()
    client = app.test_client()
    with app.app_context():  # one app context around several requests: `g` would be shared
        client.get("/bind", headers={"X-Request-ID": "first"})
        client.get("/hello/2", headers={"X-Request-ID": "second"})
        assert not vars(g)
    by_message = {e["message"]: e["attributes"] for e in entries(ext, server, APP)}
    assert by_message == {
        "bound in view": {"request_id": "first", "order_id": 99},
        "hello 2": {"request_id": "second"},
    }
    access = {e["attributes"]["request_id"]: e["attributes"] for e in entries(ext, server, ACCESS)}
    assert access["first"]["order_id"] == 99  # the view's bind() shows on its own access record
    assert "order_id" not in access["second"]


def test_levels_skip_and_sampling(make_app: MakeApp, server: CaptureServer) -> None:
    """418 → warn; skipped paths/routes and a 0 sample rate drop 2xx records only."""
    app, ext = make_app(
        OGLOG_SKIP_PATHS=["/health"], OGLOG_SKIP_ROUTES=["/hello/<int:pk>"], OGLOG_ACCESS_SAMPLE_RATE=0.0
    )
    client = app.test_client()
    for url in ("/health", "/hello/1", "/bind", "/teapot", "/missing"):
        client.get(url)
    levels = {e["attributes"]["url.path"]: e["level"] for e in entries(ext, server, ACCESS)}
    assert levels == {"/teapot": "warn", "/missing": "warn"}
    missing = next(e for e in entries(ext, server, ACCESS) if e["attributes"]["url.path"] == "/missing")
    assert "http.route" not in missing["attributes"]


def test_user_id_proxies_and_privacy(make_app: MakeApp, server: CaptureServer) -> None:
    """OGLOG_USER_ID supplies user_id; X-Forwarded-For is walked through OGLOG_TRUSTED_PROXIES; secrets and
    bodies never appear, and OGLOG_LOG_QUERY redacts secret parameters."""
    app, ext = make_app(
        OGLOG_USER_ID=lambda: "user-7",
        OGLOG_TRUSTED_PROXIES=["127.0.0.0/8", "10.0.0.0/8"],
        OGLOG_LOG_QUERY=True,
    )
    app.post("/hello/<int:pk>")(lambda pk: "posted")
    secrets = {"Authorization": "Bearer s3cr3t-bearer", "Cookie": "session=c00kie-value"}
    app.test_client().post(
        "/hello/3?password=pa55-value&page=1",
        data={"card": "b0dy-secret"},
        headers={**secrets, "X-Forwarded-For": "203.0.113.7, 10.9.8.7", "X-Request-ID": "privacy"},
    )
    (access,) = entries(ext, server, ACCESS)
    assert access["attributes"]["user.id"] == "user-7"  # OGLOG_USER_ID's answer
    assert access["attributes"]["client.address"] == "203.0.113.7"
    assert access["attributes"]["url.query"] == "password=[redacted]&page=1"
    text = json.dumps(entries(ext, server))
    for secret in ("s3cr3t-bearer", "c00kie-value", "pa55-value", "b0dy-secret"):
        assert secret not in text


def test_a_failing_user_id_callable_only_drops_the_user_id(make_app: MakeApp, server: CaptureServer) -> None:
    """If OGLOG_USER_ID raises (say the session store is down) the request and its record go on without it."""

    def broken() -> object:
        raise ConnectionError("session store down")

    app, ext = make_app(OGLOG_USER_ID=broken)
    assert app.test_client().get("/hello/1").status_code == 200
    (access,) = entries(ext, server, ACCESS)
    assert access["attributes"]["http.response.status_code"] == 200 and "user.id" not in access["attributes"]


def test_an_unknown_method_is_other_with_the_original_kept(make_app: MakeApp, server: CaptureServer) -> None:
    """As semconv says: a method outside the known set is `_OTHER`, the sent token in method_original."""
    app, ext = make_app()
    assert app.test_client().open("/hello/1", method="BREW").status_code == 405
    (access,) = entries(ext, server, ACCESS)
    assert access["attributes"]["http.request.method"] == "_OTHER"
    assert access["attributes"]["http.request.method_original"] == "BREW"
    assert access["message"].startswith("BREW /hello/1 405 ")
