"""A real local HTTP server speaking the ingestion contract's `POST /logs`, for SDK tests and the benchmark.

It decompresses and parses what the SDK sends exactly as an ingestion server would, checks every entry
against the wire contract (`wire_check`) and, when the stack is installed, the ingestion role's own schema
(`oglogstream.stack.ingestion.schema.ENTRY`), records entries and request metadata, and can be scripted to
answer
with errors (503, 429 + Retry-After, 400, 413, partial accepts) or to go away and come back on the same port.

`python -m tests.sdk.capture_server` (from the project root) runs it standalone in count-only mode (lines are
counted, not parsed) and prints its URL: the benchmark uses that, so the server's CPU is not on the measured
process's GIL and the server is not the bottleneck.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from oglogstream import _wire

try:
    from .wire_check import problems
except ImportError:  # run as a script
    from wire_check import problems  # type: ignore[no-redef]

try:  # the ingestion server's own validator, when the stack extra is installed
    from oglogstream.stack.ingestion.schema import ENTRY as SERVER_ENTRY
except ImportError:
    SERVER_ENTRY = None

__all__ = ["BlackHoleServer", "CaptureServer", "Reply", "RequestLog"]


@dataclass(frozen=True)
class Reply:
    """A scripted answer to one `POST /logs` (entries of a non-2xx answer are not recorded)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error":"scripted"}'
    delay: float = 0.0


@dataclass(frozen=True)
class RequestLog:
    """What one request looked like and how it was answered."""

    batch_id: str | None
    entries: int
    status: int
    headers: dict[str, str]
    at: float
    #: The client's (host, port): the same value across requests means one kept-alive connection.
    peer: tuple[str, int] = ("", 0)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(Exception):
            super().finish()
        self.server.owner._connections.discard(self.connection)

    def _log_request(self, batch_id: str | None, entries: int, status: int, headers: dict[str, str]) -> None:
        host, port = self.client_address[:2]
        self.server.owner._log(RequestLog(batch_id, entries, status, headers, time.monotonic(), (host, port)))

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path == "/count":
            with owner._lock:
                body = json.dumps(
                    {"entries": owner.entry_count, "unique": len(owner.ids), "requests": len(owner.requests)}
                ).encode()
            self._answer(200, body)
        elif self.path.startswith("/fail/"):  # GET /fail/503: answer every POST with 503; /fail/0: healthy
            owner.fail_status = int(self.path[len("/fail/"):]) or None
            self._answer(200, b"{}")
        else:
            self._answer(404, b'{"error":"not found"}')

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        batch_id = headers.get(_wire.BATCH_ID_HEADER.lower())
        if self.path != "/logs":
            self._answer(404, b'{"error":"not found"}')
            return
        reply = owner._next_reply()
        if reply is None and owner.fail_status is not None:
            reply = Reply(owner.fail_status, body=b'{"error":"outage"}')
        if reply is not None and reply.delay:
            time.sleep(reply.delay)
        problems_seen: list[str] = []
        if headers.get("content-type") != _wire.NDJSON_CONTENT_TYPE:
            problems_seen.append(f"content-type {headers.get('content-type')!r}")
        if headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        lines = [line for line in raw.split(b"\n") if line]
        if owner.count_only and reply is not None and not 200 <= reply.status < 300:
            self._answer(reply.status, reply.body, reply.headers)
            return
        if owner.count_only:  # benchmark mode: count, do not parse (the server must not be the bottleneck)
            owner._record_count(len(lines))
            self._log_request(batch_id, len(lines), 202, headers)
            self._answer(202, b'{"accepted": %d, "rejected": []}' % len(lines))
            return
        if reply is not None and not 200 <= reply.status < 300:
            self._log_request(batch_id, len(lines), reply.status, headers)
            self._answer(reply.status, reply.body, reply.headers)
            return
        limit = owner.max_entries_per_request
        if limit is not None and len(lines) > limit:
            self._log_request(batch_id, len(lines), 413, headers)
            self._answer(413, b'{"error":"batch too large"}')
            return
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for index, line in enumerate(lines):
            try:
                entry = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
                found = problems(entry)
                if SERVER_ENTRY is not None:
                    SERVER_ENTRY.validate_json(line)  # a ValidationError is a ValueError
            except ValueError as exc:  # also UnicodeDecodeError
                entry, found = None, [f"unparseable line: {exc}"]
            if found:
                problems_seen.extend(found)
            if found or (owner.reject is not None and owner.reject(entry)):
                rejected.append({"index": index, "error": "; ".join(found) or "rejected by test"})
            else:
                accepted.append(entry)
        owner._record(accepted, problems_seen)
        status = 202 if accepted or not lines else 400
        self._log_request(batch_id, len(lines), status, headers)
        self._answer(status, json.dumps({"accepted": len(accepted), "rejected": rejected}).encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    owner: CaptureServer


class CaptureServer:
    """Start with `start()`, stop with `stop()`; `restart()` comes back on the same port."""

    def __init__(self, *, keep_entries: bool = True, count_only: bool = False) -> None:
        self.keep_entries = keep_entries
        #: Only count lines (no JSON parsing or validation): the benchmark's mode.
        self.count_only = count_only
        self.port = 0
        self._lock = threading.Lock()
        self._replies: list[Reply] = []
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: Answer every request (after any scripted replies) with this status while it is set: an outage.
        self.fail_status: int | None = None
        #: Answer 413 to any request with more entries than this.
        self.max_entries_per_request: int | None = None
        #: Entries for which this returns True are answered as rejected in a partial accept.
        self.reject: Callable[[Any], bool] | None = None
        self.entries: list[dict[str, Any]] = []
        self.entry_count = 0
        self.ids: set[str] = set()
        self.problems: list[str] = []
        self.requests: list[RequestLog] = []
        self._arrived = threading.Condition(self._lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CaptureServer:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (clients see the server go away)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def restart(self) -> None:
        self.start()

    def script(self, *replies: Reply | int) -> None:
        """Answer the next requests with these replies, in order, then normally again."""
        with self._lock:
            self._replies.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._replies.pop(0) if self._replies else None

    def _log(self, entry: RequestLog) -> None:
        with self._lock:
            self.requests.append(entry)
            self._arrived.notify_all()

    def _record(self, accepted: list[dict[str, Any]], found: list[str]) -> None:
        with self._lock:
            if self.keep_entries:
                self.entries.extend(accepted)
            self.entry_count += len(accepted)
            self.ids.update(str(e.get("id")) for e in accepted)
            self.problems.extend(found)
            self._arrived.notify_all()

    def _record_count(self, n: int) -> None:
        with self._lock:
            self.entry_count += n
            self._arrived.notify_all()

    def wait_for(self, predicate: Callable[[CaptureServer], bool], timeout: float = 10.0) -> bool:
        """Block until `predicate(self)` holds (checked whenever a request arrives) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._arrived.wait(min(remaining, 0.1))
        return True

    def wait_entries(self, count: int, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda s: s.entry_count >= count, timeout)

    def __enter__(self) -> CaptureServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BlackHoleServer:
    """Accepts TCP connections and never reads or answers: a server that hangs."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = self._sock.accept()
                self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        self._sock.close()


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[CaptureServer]:
    server = CaptureServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ids", action="store_true", help="parse entries and count unique ids (GET /count)")
    args = parser.parse_args()
    server = CaptureServer(keep_entries=False, count_only=not args.ids)
    server.port = args.port
    server.start()
    print(server.url, flush=True)
    try:
        sys.stdin.read()  # run until the parent closes our stdin
    finally:
        server.stop()


if __name__ == "__main__":
    main()
