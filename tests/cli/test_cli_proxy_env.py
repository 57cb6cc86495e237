"""The `oglog` commands route as the SDK does: through the proxies the environment names (found by a new
user's review: `query`, `stats` and `doctor` went direct, so `oglog doctor` passed where the handler, which
uses the proxy, could not deliver), with the request deadline on every pool."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest
from oglogstream._deadline import DeadlineBackend
from oglogstream.cli._http import Target


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stack_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A live local HTTP server, and no proxy settings inherited from the machine."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_command_client_goes_through_the_environments_proxy(
    stack_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY naming a port nothing listens on: the request fails at the proxy, it does not go direct."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with Target(stack_url, None).client() as client, pytest.raises(httpx.ConnectError):
        client.get("/health")


def test_no_proxy_lets_a_command_client_go_direct(stack_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_PROXY naming the host wins, as for the SDK."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with Target(stack_url, None).client() as client:
        assert client.get("/health").status_code == 200


def test_every_pool_of_a_command_client_has_the_request_deadline(
    stack_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct pool and the proxy's carry the DeadlineBackend that bounds a whole request."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with Target(stack_url, None).client() as client:
        pools = [client._transport._pool, *(t._pool for t in client._mounts.values() if t is not None)]
        assert len(pools) >= 2 and all(isinstance(p._network_backend, DeadlineBackend) for p in pools)
