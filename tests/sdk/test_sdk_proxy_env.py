"""Both clients take the proxy the environment names (HTTP_PROXY, ALL_PROXY, NO_PROXY) as httpx does, and
the attempt's total deadline holds through it. Found by review: `OgLogHandler` went direct (it handed httpx
its own transport, which turns the environment's proxies off) where `AsyncOgLogClient` used the proxy."""

from __future__ import annotations

import asyncio
import http.client
import http.server
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator

import httpcore
import httpx
import pytest
from oglogstream import AsyncOgLogClient, OgLogHandler, Stats, _diag
from oglogstream._deadline import DeadlineBackend
from oglogstream._http_client import bound_every_attempt, trace

from .capture_server import BlackHoleServer, CaptureServer
from .conftest import FAST


class ForwardingProxy:
    """A real HTTP forward proxy on loopback: relays each absolute-URI request and counts them."""

    def __init__(self) -> None:
        self.forwarded = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                target = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection",)}
                upstream.request("POST", target.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                owner.forwarded += 1
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The test's own proxy settings only (none inherited from the machine)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.fixture
def proxy(no_proxy_env: pytest.MonkeyPatch) -> Iterator[ForwardingProxy]:
    forward = ForwardingProxy()
    no_proxy_env.setenv("HTTP_PROXY", forward.url)
    yield forward
    forward.close()


def test_the_handler_sends_through_the_environments_proxy(
    proxy: ForwardingProxy, server: CaptureServer, make_handler, logger
) -> None:
    """HTTP_PROXY set: every record reaches the server through the proxy."""
    handler = make_handler(server.url)
    logger.addHandler(handler)
    for i in range(30):
        logger.info("via proxy %d", i)
    assert handler.flush(10)
    assert (server.entry_count, handler.stats().sent) == (30, 30) and proxy.forwarded >= 1


def test_the_asyncio_client_sends_through_the_environments_proxy(
    proxy: ForwardingProxy, server: CaptureServer
) -> None:
    """The same for AsyncOgLogClient: both clients route alike."""

    async def main() -> None:
        async with AsyncOgLogClient(server.url, "async-svc", **FAST) as client:
            for i in range(30):
                client.info(f"via proxy {i}")
            assert await client.flush(10)

    asyncio.run(main())
    assert server.entry_count == 30 and proxy.forwarded >= 1


def test_no_proxy_sends_directly(
    no_proxy_env: pytest.MonkeyPatch, server: CaptureServer, make_handler, logger
) -> None:
    """NO_PROXY naming the server's host wins over HTTP_PROXY (here a port nothing listens on)."""
    no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("direct")
    assert handler.flush(10) and server.entry_count == 1


def test_every_pool_the_client_routes_through_has_the_attempt_deadline(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    """Guards httpx/httpcore internals the deadline relies on: the direct pool and each proxy's pool."""
    no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    no_proxy_env.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = httpx.Client()
    bound_every_attempt(client)
    pools = [client._transport._pool, *(t._pool for t in client._mounts.values() if t is not None)]
    assert len(pools) >= 2 and all(isinstance(pool._network_backend, DeadlineBackend) for pool in pools)
    client.close()


def test_a_proxy_that_never_answers_is_cut_by_the_attempts_deadline(
    no_proxy_env: pytest.MonkeyPatch, server: CaptureServer, make_handler, logger
) -> None:
    """A proxy that accepts and never answers: close(timeout=1) returns within its deadline (plus the
    sending thread's grace), the records counted once."""
    hole = BlackHoleServer()
    try:
        no_proxy_env.setenv("HTTP_PROXY", hole.url)
        handler = make_handler(server.url, read_timeout=30.0)
        logger.addHandler(handler)
        for i in range(10):
            logger.info("r %d", i)
        began = time.monotonic()
        assert handler.close(timeout=1.0) is False
        assert time.monotonic() - began < 3.0
        stats = handler.stats()
        assert stats.sent + stats.dropped_total == 10 and stats.queued == 0
    finally:
        hole.close()


def test_a_socks_proxy_httpx_cannot_use_is_announced_and_records_go_direct(
    no_proxy_env: pytest.MonkeyPatch,
    server: CaptureServer,
    make_handler,
    logger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ALL_PROXY=socks5://... without `httpx[socks]`: the handler is built, says so on stderr, delivers."""
    try:
        import socksio  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("socksio is installed: httpx can use the SOCKS proxy")
    no_proxy_env.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("direct after all")
    assert handler.flush(10) and server.entry_count == 1
    assert "cannot use the proxy the environment names" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("all_proxy", "socks://127.0.0.1:1080/"),  # a desktop's form: a scheme httpx does not know
        ("HTTP_PROXY", "pac+http://wpad/wpad.dat"),
        ("HTTP_PROXY", "http://proxy.corp:notaport"),
    ],
)
def test_a_proxy_value_httpx_refuses_is_announced_and_records_go_direct(
    no_proxy_env: pytest.MonkeyPatch,
    server: CaptureServer,
    make_handler,
    logger,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
) -> None:
    """Review: such a value made `OgLogHandler(...)` raise (an application's logging set-up failed); now
    the handler is built, says so on stderr, and delivers directly. The asyncio client alike."""
    _diag._last.pop("proxy", None)  # each case's line, whatever an earlier test printed
    no_proxy_env.setenv(name, value)
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("direct after all")
    assert handler.flush(10) and server.entry_count == 1
    assert "cannot use the proxy the environment names" in capsys.readouterr().err

    async def main() -> None:
        async with AsyncOgLogClient(server.url, "async-svc", **FAST) as client:
            client.info("direct too")
            assert await client.flush(10)

    asyncio.run(main())
    assert server.entry_count == 2


def test_a_proxys_connect_request_is_not_our_request_going_out() -> None:
    """The write hook fires for our request's headers, not for a proxy's CONNECT (which httpcore sends with
    our request's extensions): behind a proxy, a TLS handshake held past the deadline is `shutdown`."""
    calls: list[int] = []
    hook = trace(lambda: calls.append(1))
    hook("http11.send_request_headers.started", {"request": httpcore.Request(b"CONNECT", "http://proxy:1/")})
    hook("connection.connect_tcp.started", {})
    assert calls == []
    hook("http11.send_request_headers.started", {"request": httpcore.Request(b"POST", "https://logs:1/logs")})
    assert calls == [1]


def _dead_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _first_failure(url: str, asyncio_client: bool) -> Stats:
    """Log one record through a handler (or AsyncOgLogClient) to `url` and return its stats once its first
    attempt has failed (`last_error` set), before closing it."""
    options = {**FAST, "connect_timeout": 0.5, "read_timeout": 0.5}
    if not asyncio_client:
        handler = OgLogHandler(url, "proxied", **options)
        try:
            handler.handle(logging.makeLogRecord({"msg": "through the proxy", "levelno": logging.INFO}))
            stats = handler.stats()
            for _ in range(400):  # polled until the condition, not timed: up to ~20 s on a loaded machine
                if stats.last_error is not None:
                    break
                time.sleep(0.05)
                stats = handler.stats()
            return stats
        finally:
            handler.close(timeout=0.5)

    async def main() -> Stats:
        client = AsyncOgLogClient(url, "proxied", **options)
        try:
            client.info("through the proxy")
            stats = client.stats()
            for _ in range(400):
                if stats.last_error is not None:
                    break
                await asyncio.sleep(0.05)
                stats = client.stats()
            return stats
        finally:
            await client.aclose(timeout=0.5)

    return asyncio.run(main())


@pytest.mark.parametrize("asyncio_client", [False, True], ids=["handler", "asyncio"])
@pytest.mark.parametrize(
    ("variable", "proxy_kind"),
    [("HTTP_PROXY", "refuses"), ("HTTPS_PROXY", "refuses"), ("HTTP_PROXY", "stalls")],
)
def test_a_failing_proxy_is_named_in_the_failure_and_its_credentials_are_not(
    no_proxy_env: pytest.MonkeyPatch,
    server: CaptureServer,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    proxy_kind: str,
    asyncio_client: bool,
) -> None:
    """Before, a refused or stalled proxy was reported as the server's failure ("cannot reach
    http://server/logs: ConnectError"), so a user looked at the wrong machine; the stderr line and
    `last_error` now name the proxy and its variable, with its user:password redacted."""
    hole = BlackHoleServer() if proxy_kind == "stalls" else None
    try:
        port = hole.port if hole is not None else _dead_port()
        no_proxy_env.setenv(variable, f"http://bob:s3cret@127.0.0.1:{port}")
        # The server is up (reached directly it would accept): only the proxy can be what fails.
        url = server.url if variable == "HTTP_PROXY" else server.url.replace("http://", "https://")
        _diag._last.pop("retry", None)  # this test's failure line, whatever an earlier test printed
        stats = _first_failure(url, asyncio_client)
    finally:
        if hole is not None:
            hole.close()
    named = f"/logs via proxy http://[REDACTED]@127.0.0.1:{port} ({variable}): "
    failing = [line for line in capsys.readouterr().err.splitlines() if "delivery failing" in line]
    assert stats.last_error is not None and named in stats.last_error and "s3cret" not in stats.last_error
    assert failing and named in failing[0] and "s3cret" not in failing[0]
    assert server.entry_count == 0


def test_a_request_that_goes_direct_names_no_proxy(no_proxy_env: pytest.MonkeyPatch) -> None:
    """NO_PROXY naming the host, or a proxy set only for the other scheme: the failure names the server
    alone (naming a proxy the request never used would send the user to the wrong machine too)."""
    port = _dead_port()
    no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    no_proxy_env.setenv("NO_PROXY", "localhost")
    for url in (f"http://localhost:{port}", f"https://127.0.0.1:{port}"):
        stats = _first_failure(url, asyncio_client=False)
        assert stats.last_error is not None and "proxy" not in stats.last_error
        assert stats.last_error.startswith(f"cannot reach {url}/logs: ")


def test_the_proxy_is_named_as_httpx_completes_it_and_by_the_variable_that_set_it(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    """A lower-case `all_proxy` without a scheme (httpx adds http://) is named as such; a NO_PROXY host
    beside it goes direct."""
    from oglogstream._http_client import describe_route

    no_proxy_env.setenv("all_proxy", "alice:pw@127.0.0.1:3128")
    no_proxy_env.setenv("NO_PROXY", "direct.example")
    with httpx.Client() as client:
        assert describe_route(client, "https://logs.example/logs") == (
            "https://logs.example/logs via proxy http://[REDACTED]@127.0.0.1:3128 (all_proxy)"
        )
        assert describe_route(client, "http://direct.example/logs") == "http://direct.example/logs"


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
    port = _dead_port()
    no_proxy_env.setenv("HTTP_PROXY", f"http://{userinfo}@127.0.0.1:{port}")
    _diag._last.pop("retry", None)
    stats = _first_failure(f"http://127.0.0.1:{_dead_port()}", asyncio_client)
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
    names the proxies redacted; delivery goes direct as before."""
    _diag._last.pop("proxy", None)
    no_proxy_env.setenv("HTTP_PROXY", "http://u:pa/ss@127.0.0.1:1")
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("direct")
    assert handler.flush(10) and server.entry_count == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if "cannot use the proxy" in line)
    assert "'pa'" not in line and "pa/ss" not in line and "InvalidURL" in line
    assert "http: (an unparseable URL)" in line


def test_a_mixed_case_proxy_variable_is_named_as_set(no_proxy_env: pytest.MonkeyPatch) -> None:
    """Review: httpx (through urllib) honours `Http_Proxy`, but the failure said "(the system proxy
    settings)"; the variable is now found in any capitalisation."""
    from oglogstream._http_client import describe_route

    no_proxy_env.setenv("Http_Proxy", "http://127.0.0.1:3128")
    with httpx.Client() as client:
        assert describe_route(client, "http://logs.example/logs") == (
            "http://logs.example/logs via proxy http://127.0.0.1:3128 (Http_Proxy)"
        )


class _AuthenticatingProxy:
    """A forward proxy that answers every request 407 Proxy Authentication Required."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(407)
                self.send_header("Proxy-Authenticate", 'Basic realm="corp"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize("asyncio_client", [False, True], ids=["handler", "asyncio"])
def test_a_proxys_407_keeps_the_records_and_says_the_proxy_wants_credentials(
    no_proxy_env: pytest.MonkeyPatch, server: CaptureServer, asyncio_client: bool
) -> None:
    """Review: behind an authenticating proxy, an http:// endpoint's batch got the proxy's 407 and was
    dropped as `client_error` ("check url and api_key"). A 407 is the proxy's, not the server's: the
    records stay queued and are retried, and the error says the proxy asks for credentials."""
    proxy = _AuthenticatingProxy()
    try:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        stats = _first_failure(server.url, asyncio_client)
    finally:
        proxy.close()
    assert stats.dropped == {} and stats.queued == 1
    assert stats.last_error is not None and stats.last_error.startswith("HTTP 407 from ")
    assert "the proxy asks for credentials" in stats.last_error
