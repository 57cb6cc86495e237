"""What the SDK says and does when a proxy is in the way, found by reviewing the proxy routing: a password
never shows, whatever it holds; a proxy's own answers (407, a block page's 403) keep the records; a proxy
value httpx refuses is announced without quoting it and delivery goes direct, still trusting SSL_CERT_FILE."""

from __future__ import annotations

import http.server
import logging
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from oglogstream import OgLogHandler, _diag

from .capture_server import CaptureServer
from .conftest import FAST
from .proxy_helpers import FixedAnswer, dead_port, first_failure


@pytest.mark.parametrize("asyncio_client", [False, True], ids=["handler", "asyncio"])
@pytest.mark.parametrize(
    "userinfo", ["me@corp.example:S3cretPW", "u:pa@ss", 'u:pa"ss', "u:pa'ss", "u:pa ss"]
)
def test_a_proxy_password_holding_at_signs_quotes_or_spaces_never_shows(
    no_proxy_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    userinfo: str,
    asyncio_client: bool,
) -> None:
    """Review: the redaction cut the userinfo at its first `@` and stopped at quotes and spaces, so
    `http://me@corp:S3cretPW@host` showed `corp.example:S3cretPW`; httpx takes everything up to the last
    `@`. The proxy is now rebuilt from httpx's parse: exactly `http://[REDACTED]@host:port`."""
    port = dead_port()
    no_proxy_env.setenv("HTTP_PROXY", f"http://{userinfo}@127.0.0.1:{port}")
    _diag._last.pop("retry", None)
    stats = first_failure(f"http://127.0.0.1:{dead_port()}", asyncio_client)
    shown = f" via proxy http://[REDACTED]@127.0.0.1:{port} (HTTP_PROXY): "
    failing = [line for line in capsys.readouterr().err.splitlines() if "delivery failing" in line]
    password = userinfo.split(":", 1)[1]
    for text in (stats.last_error or "", failing[0] if failing else ""):
        assert shown in text and password not in text and "pa" not in text.split(" via proxy ")[1][:40]


def test_an_unparseable_proxy_value_with_credentials_is_not_quoted(
    no_proxy_env: pytest.MonkeyPatch, server: CaptureServer, make_handler, logger, capsys
) -> None:
    """Review: `http://u:pa/ss@host:1` (a `/` in the password) made httpx refuse it with "Invalid port:
    'pa'", and the stderr line quoted that part of the password. Now it says what kind of error it was and
    that the password needs encoding; delivery goes direct as before."""
    _diag._last.pop("proxy", None)
    no_proxy_env.setenv("HTTP_PROXY", "http://u:pa/ss@127.0.0.1:1")
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("direct")
    assert handler.flush(10) and server.entry_count == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if "cannot use the proxy" in line)
    assert "'pa'" not in line and "pa/ss" not in line and "InvalidURL" in line
    assert "http: (a URL whose password holds an unencoded /, ? or #: percent-encode them)" in line


def test_a_mixed_case_proxy_variable_is_named_as_set(no_proxy_env: pytest.MonkeyPatch) -> None:
    """Review: httpx (through urllib) honours `Http_Proxy`, but the failure said "(the system proxy
    settings)"; the variable is now found in any capitalisation."""
    from oglogstream._http_client import describe_route

    no_proxy_env.setenv("Http_Proxy", "http://127.0.0.1:3128")
    with httpx.Client() as client:
        assert describe_route(client, "http://logs.example/logs") == (
            "http://logs.example/logs via proxy http://127.0.0.1:3128 (Http_Proxy)"
        )


@pytest.mark.parametrize("asyncio_client", [False, True], ids=["handler", "asyncio"])
def test_a_proxys_407_keeps_the_records_and_says_the_proxy_wants_credentials(
    no_proxy_env: pytest.MonkeyPatch, server: CaptureServer, asyncio_client: bool
) -> None:
    """Review: behind an authenticating proxy, an http:// endpoint's batch got the proxy's 407 and was
    dropped as `client_error` ("check url and api_key"). A 407 is the proxy's, not the server's: the
    records stay queued and are retried, and the error says the proxy asks for credentials."""
    proxy = FixedAnswer(407, {"Proxy-Authenticate": 'Basic realm="corp"'})
    try:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        stats = first_failure(server.url, asyncio_client)
    finally:
        proxy.close()
    assert stats.dropped == {} and stats.queued == 1
    assert stats.last_error is not None and stats.last_error.startswith("HTTP 407 from ")
    assert "the proxy asks for credentials" in stats.last_error


@pytest.mark.parametrize("asyncio_client", [False, True], ids=["handler", "asyncio"])
@pytest.mark.parametrize(
    "value",
    ["http://bob:2024/Summer@127.0.0.1:{port}", "http://dXNlcjpw/YXNz@127.0.0.1:{port}",
     "http://bob:1234#abc@127.0.0.1:{port}"],
)
def test_a_password_with_an_unencoded_slash_or_hash_never_shows(
    no_proxy_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, asyncio_client: bool
) -> None:
    """Second review: httpx reads `http://bob:2024/Summer@host` as host `bob`, port 2024 (no userinfo), so
    the rebuilt proxy showed `http://bob:2024`, the user and the password's start. Such a value is not shown,
    only what to do about it."""
    value = value.format(port=dead_port())
    no_proxy_env.setenv("HTTP_PROXY", value)
    _diag._last.pop("retry", None)
    stats = first_failure(f"http://127.0.0.1:{dead_port()}", asyncio_client)
    err = capsys.readouterr().err
    secret = value.split("://", 1)[1].split("@")[0]  # user and password, as written
    assert stats.last_error is not None and "password holds an unencoded /, ? or #" in stats.last_error
    for text in (stats.last_error, err):
        for part in (secret[:4], secret.split(":")[-1][:4]):
            assert part not in text


@pytest.mark.parametrize("asyncio_client", [False, True], ids=["handler", "asyncio"])
def test_a_proxys_own_403_keeps_the_records(
    no_proxy_env: pytest.MonkeyPatch, server: CaptureServer, asyncio_client: bool
) -> None:
    """Second review: a proxy's block page (403, text/html) for an http:// endpoint was taken for the
    server's refusal and the batch dropped as `client_error`. Through a proxy, a 4xx not in the server's
    problem+json form is taken for the proxy's: the records stay queued and are retried."""
    proxy = FixedAnswer(403, {"Content-Type": "text/html"}, b"<html>blocked by policy</html>")
    try:
        no_proxy_env.setenv("HTTP_PROXY", f"http://bob:S3cretPW@{proxy.url.split('://')[1]}")
        stats = first_failure(server.url, asyncio_client)
    finally:
        proxy.close()
    assert stats.dropped == {} and stats.queued == 1
    assert stats.last_error is not None and stats.last_error.startswith("HTTP 403 from ")
    assert "taken for the proxy's" in stats.last_error and "S3cretPW" not in stats.last_error


def test_the_servers_own_403_through_a_proxy_is_still_a_refusal(
    no_proxy_env: pytest.MonkeyPatch, server: CaptureServer
) -> None:
    """The other side of the rule: a problem+json 403 relayed by the proxy is the server's (a key without
    the ingest scope): dropped as `client_error` as without a proxy, not retried for ever."""
    body = b'{"type":"about:blank","title":"Forbidden","status":403,"detail":"key lacks scope ingest"}'
    proxy = FixedAnswer(403, {"Content-Type": "application/problem+json"}, body)
    try:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        stats = first_failure(server.url, asyncio_client=False)
    finally:
        proxy.close()
    assert stats.dropped == {"client_error": 1}


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command line tool."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[int]]]:
    """An HTTPS server on loopback with a self-signed certificate that accepts every batch: (its URL, the
    certificate, the count of batches it took)."""
    cert, key = _self_signed(tmp_path)
    batches: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            batches.append(1)
            body = b'{"accepted": 1, "rejected": []}'
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", cert, batches
    httpd.shutdown()
    httpd.server_close()


def test_going_direct_after_an_unusable_proxy_still_trusts_ssl_cert_file(
    no_proxy_env: pytest.MonkeyPatch, tls_server: tuple[str, Path, list[int]], logger: logging.Logger
) -> None:
    """Second review: the fallback to direct (a desktop's `all_proxy=socks://...`) built the client with
    `trust_env=False`, which also drops SSL_CERT_FILE: an endpoint with a private CA then failed every
    request (CERTIFICATE_VERIFY_FAILED) and records waited until lost. Direct now keeps the environment's
    CA."""
    url, cert, batches = tls_server
    no_proxy_env.setenv("SSL_CERT_FILE", str(cert))
    no_proxy_env.setenv("all_proxy", "socks://127.0.0.1:1080/")
    handler = OgLogHandler(url, "tls", **FAST)
    logger.addHandler(handler)
    try:
        logger.info("over TLS")
        assert handler.flush(10), handler.stats().last_error
        assert handler.stats().sent == 1 and batches == [1]
    finally:
        handler.close(2)


def test_the_fallback_line_names_only_httpxs_variables_and_a_bad_no_proxy(
    no_proxy_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Second review: the line listed every `*_proxy` variable (FOO_PROXY's credentials included) and, when
    NO_PROXY was what httpx refused (an IPv6 CIDR), blamed a valid proxy without naming NO_PROXY; a value
    without a host (`http://bob:s3cr3t`) was quoted in httpx's "Invalid port: 's3cr3t'"."""
    from oglogstream._http_client import with_env_proxies

    for env, absent, present in (
        ({"FOO_PROXY": "http://sec:2024/x@h", "HTTP_PROXY": "http://bob:s3cr3t"}, ("s3cr3t", "sec", "foo"),
         ("InvalidURL", "http: (an unparseable URL)")),
        ({"HTTP_PROXY": "http://proxy.corp:3128", "NO_PROXY": "fe80::/10"}, (), ("no_proxy: fe80::/10",)),
    ):
        for name, value in env.items():
            no_proxy_env.setenv(name, value)
        _diag._last.pop("proxy", None)
        with_env_proxies(httpx.Client).close()
        line = next(line for line in capsys.readouterr().err.splitlines() if "cannot use the proxy" in line)
        assert all(part not in line for part in absent) and all(part in line for part in present), line
        for name in env:
            no_proxy_env.delenv(name)
