"""Proxies and probes for the SDK's proxy tests (tests/sdk/test_sdk_proxy_*.py): a real forward proxy on
loopback, one that answers every request with a fixed status, a dead port, and a handler's (or asyncio
client's) stats after its first failed attempt."""

from __future__ import annotations

import asyncio
import http.client
import http.server
import logging
import socket
import threading
import time
import urllib.parse

from oglogstream import AsyncOgLogClient, OgLogHandler, Stats

from .conftest import FAST


class LoopbackServer:
    """An HTTP server on 127.0.0.1 serving `handler` on a daemon thread; `url` is its base URL."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ForwardingProxy(LoopbackServer):
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

        super().__init__(Handler)


class FixedAnswer(LoopbackServer):
    """A server on loopback that answers every GET and POST `status`, with `headers` and `body`: as a proxy,
    its own answers (a 407 asking for credentials, a block page's 403), never reaching the server; or a
    stand-in server (a health document)."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.do_GET()

            def do_GET(self) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler)


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_failure(url: str, asyncio_client: bool) -> Stats:
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
