"""Count log records arriving in every protocol the SDK benchmark's handlers speak; runs as its own process.

`python -m benchmarks.peers.counting_server` prints one JSON line `{"http": URL, "tcp_port": PORT}` and serves
until its stdin is closed. Count-only, so it is not the bottleneck and none of its CPU is on the measured
process's GIL:

* `POST` with `Content-Type: application/x-ndjson` (OgLogHandler; gzip allowed): one record per non-empty
  line, answered 202 `{"accepted": n, "rejected": []}` like the ingestion role.
* `POST` with `application/x-protobuf` (OpenTelemetry OTLP/HTTP logs): the log records of the
  `ExportLogsServiceRequest`, answered 200 with an empty `ExportLogsServiceResponse`.
* `POST` with `application/msgpack` (logtail-python): the length of the msgpack list, answered 202.
* TCP on `tcp_port` (python-logstash-async): one record per newline-terminated line.
* `GET /count` -> `{"records": n, "last": unix seconds of the last arrival or null}`;
  `POST /reset` zeroes both.
"""

from __future__ import annotations

import gzip
import json
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_READ_CHUNK = 1 << 16


class Tally:
    """Records counted so far and when the last of them arrived (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records = 0
        self.last: float | None = None

    def add(self, n: int) -> None:
        if n:
            now = time.time()
            with self._lock:
                self.records += n
                self.last = now

    def reset(self) -> None:
        with self._lock:
            self.records, self.last = 0, None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"records": self.records, "last": self.last}


TALLY = Tally()


def count_body(content_type: str, body: bytes) -> tuple[int, int, bytes, str]:
    """(records, status, answer body, answer content type) for one POST body."""
    if content_type.startswith("application/x-protobuf"):
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
            ExportLogsServiceResponse,
        )

        request = ExportLogsServiceRequest.FromString(body)
        n = sum(
            len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs
        )
        return n, 200, ExportLogsServiceResponse().SerializeToString(), "application/x-protobuf"
    if content_type.startswith("application/msgpack"):
        import msgpack

        frame = msgpack.unpackb(body, raw=False)
        n = len(frame) if isinstance(frame, list) else 1
        return n, 202, b"{}", "application/json"
    n = sum(1 for line in body.split(b"\n") if line.strip())
    return n, 202, b'{"accepted": %d, "rejected": []}' % n, "application/json"


class _Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as every client here expects

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/count":
            self._answer(200, json.dumps(TALLY.snapshot()).encode())
        else:
            self._answer(404, b'{"error":"not found"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/reset":
            TALLY.reset()
            self._answer(200, b"{}")
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        n, status, answer, content_type = count_body(self.headers.get("Content-Type") or "", body)
        TALLY.add(n)
        self._answer(status, answer, content_type)


class _Lines(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        rest = b""
        while True:
            chunk = self.request.recv(_READ_CHUNK)
            if not chunk:
                return
            data = rest + chunk
            TALLY.add(data.count(b"\n"))
            rest = data[data.rfind(b"\n") + 1 :]


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Http)
    http.daemon_threads = True
    tcp = _TcpServer(("127.0.0.1", 0), _Lines)
    for server in (http, tcp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    address = {"http": f"http://127.0.0.1:{http.server_address[1]}", "tcp_port": tcp.server_address[1]}
    print(json.dumps(address), flush=True)
    try:
        sys.stdin.read()  # run until the parent closes our stdin
    finally:
        http.shutdown()
        tcp.shutdown()


if __name__ == "__main__":
    main()
