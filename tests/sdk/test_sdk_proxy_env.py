"""Both clients take the proxy the environment names (HTTP_PROXY, ALL_PROXY, NO_PROXY) as httpx does, and
the attempt's total deadline holds through it. Found by review: `OgLogHandler` went direct (it handed httpx
its own transport, which turns the environment's proxies off) where `AsyncOgLogClient` used the proxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpcore
import httpx
import pytest
from oglogstream import AsyncOgLogClient, _diag
from oglogstream._deadline import DeadlineBackend
from oglogstream._http_client import bound_every_attempt, trace

from .capture_server import BlackHoleServer, CaptureServer
from .conftest import FAST
from .proxy_helpers import ForwardingProxy, dead_port, first_failure


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
    _diag._last.pop("proxy", None)  # this test's line, whatever an earlier test printed
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
        port = hole.port if hole is not None else dead_port()
        no_proxy_env.setenv(variable, f"http://bob:s3cret@127.0.0.1:{port}")
        # The server is up (reached directly it would accept): only the proxy can be what fails.
        url = server.url if variable == "HTTP_PROXY" else server.url.replace("http://", "https://")
        _diag._last.pop("retry", None)  # this test's failure line, whatever an earlier test printed
        stats = first_failure(url, asyncio_client)
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
    port = dead_port()
    no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    no_proxy_env.setenv("NO_PROXY", "localhost")
    for url in (f"http://localhost:{port}", f"https://127.0.0.1:{port}"):
        stats = first_failure(url, asyncio_client=False)
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
