"""A local HTTP server that answers every request (POST or GET, any path) with one scripted (status,
headers, body), sent as given (a pre-compressed body with its Content-Encoding, an error text): for the
answer-reading tests. `QuietHandler` is the base of the tests' own scripted servers' handlers."""

from __future__ import annotations

import contextlib
import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["AnswerServer", "QuietHandler"]


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (test output stays clean) and reads a posted batch's lines."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def posted_lines(self) -> list[bytes]:
        """The request body's non-empty NDJSON lines: Content-Length bytes, gunzipped when the request's
        Content-Encoding is gzip (gzip.BadGzipFile on a corrupt body)."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        return [line for line in raw.split(b"\n") if line]


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"
    server: AnswerServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def do_GET(self) -> None:
        status, headers, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(OSError):  # the client stopped reading (what a bounded read does)
            self.wfile.write(body)


class AnswerServer(ThreadingHTTPServer):
    """`with AnswerServer() as srv:` serves on a free 127.0.0.1 port (`srv.url`) until the block ends."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        #: (status, headers, body) every POST is answered with.
        self.answer: tuple[int, dict[str, str], bytes] = (202, {}, b"{}")
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> AnswerServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)
