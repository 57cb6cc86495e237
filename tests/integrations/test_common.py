"""The shared rules (no framework): request id sanity, client IP from trusted proxies, sampling, redaction,
settings validation."""

from __future__ import annotations

import ipaddress
import logging
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oglogstream.integrations._common import (
    MAX_REQUEST_ID_LENGTH,
    AccessConfig,
    AccessLog,
    level_for_status,
    new_request_id,
    redact_query,
    sane_request_id,
    wsgi_path,
)
from oglogstream.integrations._duplicates import DuplicateFilter, attach_to_oglog_handlers


def access(**settings: Any) -> AccessLog:
    return AccessLog(AccessConfig.from_settings(lambda name, default: settings.get(name, default)))


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "0f8fad5b-d9cb-469f-a165-70867728950c",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "a/b+c=",
        "x" * 128,
        "svc@host:1",
    ],
)
def test_sane_ids_are_kept(value: str) -> None:
    """UUIDs, ULIDs, base64-ish and 128-char ids are accepted as they are."""
    assert sane_request_id(value) == value


@pytest.mark.parametrize("value", [None, "", "x" * 129, "a b", "a\nb", "a,b", 'a"b', "-a", "ümlaut", "a\x00"])
def test_insane_ids_are_refused(value: str | None) -> None:
    """Empty, over-long, whitespace, control, quote, comma, leading-dash and non-ASCII ids are refused."""
    assert sane_request_id(value) is None


@given(st.text(max_size=200))
def test_request_id_is_always_safe(incoming: str) -> None:
    """Whatever arrives, the id used is 1..128 characters of the safe charset."""
    request_id = access().request_id(incoming)
    assert 1 <= len(request_id) <= MAX_REQUEST_ID_LENGTH
    assert sane_request_id(request_id) == request_id
    assert request_id == incoming or len(request_id) == 32


def test_generated_ids_are_unique_hex() -> None:
    """Generated ids are 32 lowercase hex digits and do not repeat."""
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize(
    ("remote", "xff", "expected"),
    [
        ("10.0.0.1", "203.0.113.7", "203.0.113.7"),  # one trusted proxy
        (
            "10.0.0.1",
            "198.51.100.1, 203.0.113.7, 10.0.0.2",
            "203.0.113.7",
        ),  # the spoofed left part is ignored
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all trusted: the leftmost is the client
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", "not-an-ip, 10.0.0.2", "10.0.0.2"),  # garbage from a trusted hop: last vouched address
        ("10.0.0.1", "203.0.113.7:4711", "203.0.113.7"),  # ports are dropped
        ("10.0.0.1", "[2001:db8::1]:443", "2001:db8::1"),
        ("10.0.0.1", "2001:db8::1", "2001:db8::1"),
        ("::ffff:10.0.0.1", "203.0.113.7", "203.0.113.7"),  # v4-mapped proxy address
        ("192.0.2.1", "203.0.113.7", "192.0.2.1"),  # untrusted peer: its header is not believed
        ("unix-socket", "203.0.113.7", "unix-socket"),
        ("", "203.0.113.7", None),
    ],
)
def test_client_ip_walks_right_to_left(remote: str, xff: str | None, expected: str | None) -> None:
    """X-Forwarded-For is walked from the right past trusted proxies; the first untrusted hop wins."""
    assert access(OGLOG_TRUSTED_PROXIES=["10.0.0.0/8"]).client_ip(remote, xff) == expected


def test_client_ip_without_trusted_proxies_is_the_peer() -> None:
    """With no trusted proxies configured the header is never read."""
    assert access().client_ip("10.0.0.1", "203.0.113.7") == "10.0.0.1"


@given(st.text(max_size=300))
def test_client_ip_is_never_header_garbage(xff: str) -> None:
    """Whatever the header holds, the answer is the peer or a parsed IP address."""
    result = access(OGLOG_TRUSTED_PROXIES=["10.0.0.0/8"]).client_ip("10.0.0.1", xff)
    assert result is not None
    ipaddress.ip_address(result)


def test_huge_forwarded_for_is_bounded() -> None:
    """Only the rightmost MAX_FORWARDED_HOPS entries are examined."""
    header = ", ".join(["203.0.113.9"] + ["10.0.0.2"] * 10_000)
    assert access(OGLOG_TRUSTED_PROXIES=["10.0.0.0/8"]).client_ip("10.0.0.1", header) == "10.0.0.2"


def test_status_levels() -> None:
    """5xx → ERROR, 4xx → WARNING, others INFO."""
    assert [level_for_status(s) for s in (200, 302, 399, 400, 404, 499, 500, 503)] == [
        logging.INFO, logging.INFO, logging.INFO, logging.WARNING, logging.WARNING, logging.WARNING,
        logging.ERROR, logging.ERROR,
    ]  # fmt: skip


def test_wanted_applies_skip_rules_and_sampling_to_successes_only() -> None:
    """Skips and sampling only drop status < 400; sampling is a pure function of the request id."""
    log = access(
        OGLOG_SKIP_PATHS=["/health", "/static/*"], OGLOG_SKIP_ROUTES=["ping/"], OGLOG_ACCESS_SAMPLE_RATE=0.25
    )
    assert not log.wanted(200, "/health", None, "x")
    assert not log.wanted(200, "/static/app.js", None, "x")
    assert not log.wanted(200, "/p", "ping/", "x")
    assert log.wanted(503, "/health", None, "x") and log.wanted(404, "/static/x", None, "x")
    ids = [f"id-{i}" for i in range(2000)]
    kept = [i for i in ids if log.wanted(200, "/api", None, i)]
    assert kept == [i for i in ids if zlib.crc32(i.encode()) < 0x4000_0000]
    assert 400 < len(kept) < 600
    assert all(access(OGLOG_ACCESS_SAMPLE_RATE=1).wanted(200, "/", None, i) for i in ids[:100])
    assert not any(access(OGLOG_ACCESS_SAMPLE_RATE=0).wanted(200, "/", None, i) for i in ids[:100])


def test_redact_query() -> None:
    """Values of secret-looking parameters are redacted; others, order and blanks are kept."""
    assert redact_query("page=2&API_KEY=abc&q=a+b&password=&sig=x") == (
        "page=2&API_KEY=[redacted]&q=a+b&password=[redacted]&sig=[redacted]"
    )


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("OGLOG_ACCESS_SAMPLE_RATE", -0.1, "from 0.0 to 1.0"),
        ("OGLOG_ACCESS_SAMPLE_RATE", True, "from 0.0 to 1.0"),
        ("OGLOG_TRUSTED_PROXIES", "10.0.0.0/8", "list of CIDRs"),
        ("OGLOG_TRUSTED_PROXIES", ["10.0.0.0/8", "nope"], "'nope' is not a CIDR"),
        ("OGLOG_SKIP_PATHS", ["health"], "must start with '/'"),
        ("OGLOG_SKIP_ROUTES", [""], "non-empty strings"),
        ("OGLOG_LOG_QUERY", "yes", "True or False"),
        ("OGLOG_LOG_USER", 1, "True or False"),
        ("OGLOG_REQUEST_ID_HEADER", "X Request", "HTTP header name"),
    ],
)
def test_bad_settings_name_the_setting(name: str, value: object, why: str) -> None:
    """Every bad setting is a ValueError naming it and saying what is allowed."""
    with pytest.raises(ValueError, match=name) as info:
        access(**{name: value})
    assert why in str(info.value)


def test_custom_request_id_header() -> None:
    """OGLOG_REQUEST_ID_HEADER changes the header read and echoed (environ key derived from it)."""
    config = AccessConfig.from_settings(
        lambda name, default: "X-Correlation-Id" if "HEADER" in name else default
    )
    assert config.wsgi_header_key == "HTTP_X_CORRELATION_ID"


@pytest.mark.parametrize(
    ("environ", "path"),
    [
        ({"PATH_INFO": "/a/b"}, "/a/b"),
        ({"SCRIPT_NAME": "/shop", "PATH_INFO": "/cart"}, "/shop/cart"),
        (
            {"PATH_INFO": "/caf\u00c3\u00a9"},
            "/caf\u00e9",
        ),  # PEP 3333: UTF-8 bytes given as latin-1 characters
        ({"PATH_INFO": "/caf\u00e9"}, "/caf\ufffd"),  # latin-1 bytes that are not UTF-8: replaced, not raised
        ({"PATH_INFO": "/\u20ac"}, "/\u20ac"),  # a server that already decoded: kept
        ({}, "/"),
    ],
)
def test_wsgi_path_is_the_decoded_full_path(environ: dict[str, str], path: str) -> None:
    """url.path is SCRIPT_NAME + PATH_INFO read back as UTF-8, as the frameworks show it."""
    assert wsgi_path(environ) == path


class _Marker(DuplicateFilter):
    key = ("test-marker",)

    def duplicate(self, record: logging.LogRecord) -> bool:
        return record.getMessage() == "dup"


def test_duplicate_filters_go_on_oglog_handlers_once_and_only_there(clean_root: logging.Logger) -> None:
    """A duplicate filter is added to each OgLogHandler on any logger, once per key, never to other handlers;
    a filter that fails to judge a record lets it through."""
    from oglogstream import OgLogHandler

    # Handlers other tests of this process left on named loggers get it too: counted, and taken off after.
    others = [
        h for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
        for h in lg.handlers if isinstance(h, OgLogHandler)
    ]
    shipping = OgLogHandler("http://127.0.0.1:9", "dup-test")
    console = logging.StreamHandler()
    named = logging.getLogger("tests.integrations.dup")
    clean_root.addHandler(console)
    named.addHandler(shipping)
    try:
        assert attach_to_oglog_handlers(_Marker()) == 1 + len(others)
        assert attach_to_oglog_handlers(_Marker()) == 0
        assert [type(f) for f in shipping.filters] == [_Marker] and console.filters == []
        dup = logging.LogRecord("x", logging.INFO, __file__, 1, "dup", None, None)
        broken = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("not a number",), None)
        assert not shipping.filter(dup) and shipping.filter(broken)
    finally:
        for other in others:
            other.filters = [f for f in other.filters if not isinstance(f, _Marker)]
        named.removeHandler(shipping)
        clean_root.removeHandler(console)
        shipping.close(1)
