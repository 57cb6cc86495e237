"""Django (WSGI, sync): request ids, the access record's exact fields, errors, skipping, sampling, privacy."""

from __future__ import annotations

import json
import logging
import re
import zlib
from typing import Any

import oglogstream
import pytest

from .conftest import ACCESS, APP, Shipped

pytestmark = pytest.mark.usefixtures("django_env")


def client(**kwargs: Any) -> Any:
    from django.test import Client

    return Client(raise_request_exception=False, **kwargs)


def only(entries: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(entries) == 1, entries
    return entries[0]


def test_access_record_has_exact_fields_and_the_request_id_is_bound(shipping: Shipped) -> None:
    """A sane incoming X-Request-ID is echoed, carried by the view's logs and by one INFO access record."""
    response = client().get(
        "/hello/42/?page=2&token=secret", HTTP_X_REQUEST_ID="req-42.a:b", HTTP_USER_AGENT="curl/8.5.0"
    )
    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-42.a:b"
    access = only(shipping(ACCESS))
    attributes = access["attributes"]
    assert attributes.pop("http.server.request.duration") >= 0
    assert attributes == {
        "request_id": "req-42.a:b",
        "http.request.method": "GET",
        "url.path": "/hello/42/",
        "http.route": "hello/<int:pk>/",
        "http.response.status_code": 200,
        "client.address": "127.0.0.1",
        "user_agent.original": "curl/8.5.0",
    }
    assert access["level"] == "info" and access["service"] == "integrations-test"
    assert re.fullmatch(r"GET /hello/42/ 200 \d+\.\dms", access["message"])
    assert "exception" not in access
    view_log = only(shipping(APP))
    assert view_log["message"] == "hello 42" and view_log["attributes"] == {"request_id": "req-42.a:b"}


@pytest.mark.parametrize("incoming", ["has space", "x" * 129, "-leading-dash", "semi;colon", "é"])
def test_an_insane_request_id_is_replaced(shipping: Shipped, incoming: str) -> None:
    """An incoming id that is too long or uses unsafe characters is replaced by a generated one."""
    response = client().get("/hello/1/", HTTP_X_REQUEST_ID=incoming)
    generated = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert only(shipping(ACCESS))["attributes"]["request_id"] == generated
    assert only(shipping(APP))["attributes"]["request_id"] == generated


def test_every_request_gets_its_own_generated_id(shipping: Shipped) -> None:
    """Without an incoming header each request gets a new id, and nothing stays bound afterwards."""
    c = client()
    ids = {c.get("/hello/1/")["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert {e["attributes"]["request_id"] for e in shipping(ACCESS)} == ids
    assert dict(oglogstream.get_context()) == {}


def test_unhandled_exception_is_logged_once_on_the_access_record(shipping: Shipped) -> None:
    """A raising view gives a 500 whose ERROR access record carries the traceback; its logs the id."""
    response = client().get("/boom/", HTTP_X_REQUEST_ID="boom-1")
    assert response.status_code == 500 and response["X-Request-ID"] == "boom-1"
    access = only(shipping(ACCESS))
    assert access["level"] == "error"
    assert (
        access["attributes"]["http.response.status_code"] == 500
        and access["attributes"]["http.route"] == "boom/"
    )
    assert "RuntimeError: kaboom" in access["exception"] and "Traceback" in access["exception"]
    assert only(shipping(APP))["attributes"] == {"request_id": "boom-1"}


def test_propagated_exception_still_gets_a_500_access_record(shipping: Shipped) -> None:
    """With DEBUG_PROPAGATE_EXCEPTIONS the exception passes through the middleware, which still logs a 500."""
    from django.test import override_settings

    with override_settings(DEBUG_PROPAGATE_EXCEPTIONS=True), pytest.raises(RuntimeError, match="kaboom"):
        client().get("/boom/")
    access = only(shipping(ACCESS))
    assert (access["level"], access["attributes"]["http.response.status_code"]) == ("error", 500)
    assert "RuntimeError: kaboom" in access["exception"]
    assert dict(oglogstream.get_context()) == {}


def test_status_levels_404_warn_and_503_error_without_traceback(shipping: Shipped) -> None:
    """4xx maps to warn (no route for an unmatched URL), a returned 5xx to error, neither with a traceback."""
    c = client()
    assert c.get("/missing/").status_code == 404
    assert c.get("/unavailable/").status_code == 503
    by_path = {e["attributes"]["url.path"]: e for e in shipping(ACCESS)}
    assert by_path["/missing/"]["level"] == "warn" and "http.route" not in by_path["/missing/"]["attributes"]
    assert by_path["/unavailable/"]["level"] == "error"
    assert "exception" not in by_path["/missing/"] and "exception" not in by_path["/unavailable/"]


def test_skipped_paths_and_routes_log_nothing_unless_they_fail(shipping: Shipped) -> None:
    """OGLOG_SKIP_PATHS (exact or `prefix*`) and OGLOG_SKIP_ROUTES drop 2xx records but never 4xx/5xx ones."""
    from django.test import override_settings

    with override_settings(OGLOG_SKIP_PATHS=["/health/", "/unavail*"], OGLOG_SKIP_ROUTES=["hello/<int:pk>/"]):
        c = client()
        for url in ("/health/", "/hello/5/", "/unavailable/", "/boom/"):
            c.get(url)
    assert sorted(e["attributes"]["url.path"] for e in shipping(ACCESS)) == ["/boom/", "/unavailable/"]
    assert [e["message"] for e in shipping(APP)] == ["hello 5", "about to fail"]  # views still log


def test_sampling_keeps_a_deterministic_share_and_every_error(shipping: Shipped) -> None:
    """At rate 0.5 a 2xx record is kept iff crc32(request id) is below the threshold; errors always."""
    from django.test import override_settings

    ids = [f"sample-{i}" for i in range(40)]
    with override_settings(OGLOG_ACCESS_SAMPLE_RATE=0.5):
        c = client()
        for request_id in ids:
            c.get("/hello/1/", HTTP_X_REQUEST_ID=request_id)
        c.get("/boom/", HTTP_X_REQUEST_ID="sample-error")
    expected = {i for i in ids if zlib.crc32(i.encode()) < 0x8000_0000} | {"sample-error"}
    assert 0 < len(expected) - 1 < len(ids)
    assert {e["attributes"]["request_id"] for e in shipping(ACCESS)} == expected
    assert len(shipping(APP)) == len(ids) + 1  # sampling only concerns access records


def test_authenticated_user_id(shipping: Shipped) -> None:
    """A logged-in user's pk is the user_id; anonymous requests and OGLOG_LOG_USER=False have none."""
    from django.contrib.auth.models import User
    from django.test import override_settings

    user, _ = User.objects.get_or_create(username="alice")
    c = client()
    c.get("/hello/1/", HTTP_X_REQUEST_ID="anonymous")
    c.force_login(user)
    c.get("/hello/1/", HTTP_X_REQUEST_ID="logged-in")
    with override_settings(OGLOG_LOG_USER=False):
        c2 = client()
        c2.force_login(user)
        c2.get("/hello/1/", HTTP_X_REQUEST_ID="not-logged")
    users = {e["attributes"]["request_id"]: e["attributes"].get("user.id") for e in shipping(ACCESS)}
    assert users == {"anonymous": None, "logged-in": user.pk, "not-logged": None}


def test_client_ip_walks_forwarded_for_only_through_trusted_proxies(shipping: Shipped) -> None:
    """X-Forwarded-For is ignored unless REMOTE_ADDR is a trusted proxy; then the first untrusted hop wins."""
    from django.test import override_settings

    xff = "198.51.100.9, 203.0.113.7, 10.1.2.3"
    client().get("/hello/1/", HTTP_X_FORWARDED_FOR=xff, HTTP_X_REQUEST_ID="untrusted")
    with override_settings(OGLOG_TRUSTED_PROXIES=["127.0.0.1/32", "10.0.0.0/8"]):
        c = client()
        c.get("/hello/1/", HTTP_X_FORWARDED_FOR=xff, HTTP_X_REQUEST_ID="trusted")
        c.get("/hello/1/", HTTP_X_FORWARDED_FOR="junk, 10.0.0.5", HTTP_X_REQUEST_ID="garbage")
        c.get("/hello/1/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=xff, HTTP_X_REQUEST_ID="direct")
    ips = {e["attributes"]["request_id"]: e["attributes"]["client.address"] for e in shipping(ACCESS)}
    assert ips == {
        "untrusted": "127.0.0.1",
        "trusted": "203.0.113.7",
        "garbage": "10.0.0.5",
        "direct": "192.0.2.1",
    }


def test_no_secrets_are_logged_and_query_logging_redacts(shipping: Shipped) -> None:
    """Authorization, cookies and bodies never appear; OGLOG_LOG_QUERY logs the query, secrets redacted."""
    from django.test import override_settings

    secrets = {"HTTP_AUTHORIZATION": "Bearer s3cr3t-bearer", "HTTP_COOKIE": "sessionid=c00kie-value"}
    client().post("/hello/2/?api_key=k3y-value", data={"password": "b0dy-secret"}, **secrets)
    with override_settings(OGLOG_LOG_QUERY=True):
        client().get("/hello/3/?page=2&access_token=t0ken-value&q=shoes", **secrets)
    entries = shipping()
    text = json.dumps(entries)
    for secret in ("s3cr3t-bearer", "c00kie-value", "k3y-value", "b0dy-secret", "t0ken-value"):
        assert secret not in text
    queries = {e["attributes"]["url.path"]: e["attributes"].get("url.query") for e in shipping(ACCESS)}
    assert queries == {"/hello/2/": None, "/hello/3/": "page=2&access_token=[redacted]&q=shoes"}


def test_bad_settings_fail_with_the_setting_name() -> None:
    """A bad OGLOG_* setting is a ValueError naming it when Django builds the middleware chain."""
    from django.test import override_settings

    with (
        override_settings(OGLOG_ACCESS_SAMPLE_RATE=1.5),
        pytest.raises(ValueError, match="OGLOG_ACCESS_SAMPLE_RATE"),
    ):
        client().get("/hello/1/")
    with (
        override_settings(OGLOG_TRUSTED_PROXIES=["10.0.0.0/33"]),
        pytest.raises(ValueError, match=r"10\.0\.0\.0/33"),
    ):
        client().get("/hello/1/")


def test_a_disabled_access_logger_costs_no_record(shipping: Shipped) -> None:
    """Raising the access logger's level above ERROR turns access records off; request ids still flow."""
    logging.getLogger(ACCESS).setLevel(logging.CRITICAL)
    response = client().get("/boom/", HTTP_X_REQUEST_ID="quiet")
    assert response["X-Request-ID"] == "quiet"
    assert shipping(ACCESS) == []
    assert only(shipping(APP))["attributes"] == {"request_id": "quiet"}
