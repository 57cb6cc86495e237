"""Review findings 7 and 9: one HTTP attempt has a total deadline (a server trickling its answer cannot stall
delivery), and a 2xx answer whose body cannot be parsed (deep JSON nesting) counts as accepted, not resent."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from oglogstream import OgLogHandler
from oglogstream._buffer import Batch
from oglogstream._settings import Settings
from oglogstream._transport import AsyncHttpTransport, HttpTransport, Outcome, attempt_deadline, classify

#: Deep enough that json.loads raises RecursionError.
_DEEP = b"[" * 200_000 + b"]" * 200_000
#: Per-phase timeouts far above the trickle interval: only a total deadline can end such an attempt.
_SHORT = {"connect_timeout": 0.2, "read_timeout": 0.5}


class _RawServer:
    """A real TCP server on 127.0.0.1; `answer(conn, body_lines, request_number)` writes the response."""

    def __init__(self, answer: Callable[[socket.socket, int, int], None]) -> None:
        self._answer = answer
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.requests = 0
        self.lines = 0
        self._lock = threading.Lock()
        self._counted = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def answered_lines(self, at_least: int, timeout: float = 5.0) -> int:
        """`lines` once it reaches `at_least` (or at `timeout`): a line is counted just after its answer was
        written, so the client may see the answer (and flush() return) a moment before."""
        with self._counted:
            self._counted.wait_for(lambda: self.lines >= at_least, timeout)
            return self.lines

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        reader = conn.makefile("rb")
        with conn, reader:
            while not self._stop.is_set():
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    byte = reader.read(1)
                    if not byte:
                        return
                    head += byte
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                lines = len([x for x in gzip.decompress(reader.read(length)).split(b"\n") if x])
                with self._lock:
                    self.requests += 1
                    number = self.requests
                try:
                    self._answer(conn, lines, number)
                except OSError:
                    return
                with self._counted:
                    self.lines += lines
                    self._counted.notify_all()

    def trickle(self, conn: socket.socket) -> None:
        """One byte per 50 ms until stopped or the client hangs up (never trips a 0.5 s read timeout)."""
        for byte in b"HTTP/1.1 202 Accepted\r\nContent-Length: 100000\r\n\r\n" + b" " * 100_000:
            if self._stop.wait(0.05):
                return
            conn.sendall(bytes([byte]))

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)


def _reply(conn: socket.socket, body: bytes) -> None:
    conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                 % len(body) + body)


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., _RawServer]]:
    made: list[_RawServer] = []

    def make(answer: Callable[[_RawServer, socket.socket, int, int], None]) -> _RawServer:
        holder: list[_RawServer] = []
        srv = _RawServer(lambda conn, lines, n: answer(holder[0], conn, lines, n))
        holder.append(srv)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


def _batch(n: int = 3) -> Batch:
    return Batch("b-1", 1, [b'{"message":"m%d"}\n' % i for i in range(n)])


# ----------------------------------------------------------------- finding 7: total deadline per attempt


def test_default_attempt_deadline_is_connect_plus_read_timeout() -> None:
    """Out of the box an attempt may take 5 s + 10 s = 15 s in total; a close() deadline caps it."""
    settings = Settings.build("http://127.0.0.1:1", "svc")
    assert attempt_deadline(settings, None) == 15.0
    assert attempt_deadline(settings, 2.0) == 2.0


def test_sync_send_to_a_trickling_server_ends_as_a_retryable_timeout(
    raw_server: Callable[..., _RawServer],
) -> None:
    """A server sending one byte per 50 ms never trips the per-read timeout; the attempt still ends, RETRY."""
    srv = raw_server(lambda s, conn, lines, n: s.trickle(conn))
    transport = HttpTransport(Settings.build(srv.url, "svc", **_SHORT))
    try:
        result = transport.send(_batch())
    finally:
        transport.close()
    assert result.outcome is Outcome.RETRY
    assert result.error is not None and "deadline" in result.error


def test_async_send_to_a_trickling_server_ends_as_a_retryable_timeout(
    raw_server: Callable[..., _RawServer],
) -> None:
    """The asyncio transport has the same total deadline."""
    srv = raw_server(lambda s, conn, lines, n: s.trickle(conn))

    async def main() -> object:
        transport = AsyncHttpTransport(Settings.build(srv.url, "svc", **_SHORT))
        try:
            return await transport.send(_batch())
        finally:
            await transport.aclose()

    result = asyncio.run(main())
    assert getattr(result, "outcome", None) is Outcome.RETRY
    assert "within 0.7 s" in str(getattr(result, "error", ""))


def test_handler_retries_after_a_trickled_attempt_and_delivers_everything(
    raw_server: Callable[..., _RawServer], logger: logging.Logger
) -> None:
    """The first connection trickles; the handler gives up on it, reports, retries and delivers all 50."""

    def answer(s: _RawServer, conn: socket.socket, lines: int, n: int) -> None:
        if n == 1:
            s.trickle(conn)
            raise OSError("trickled")
        _reply(conn, b'{"accepted": %d, "rejected": []}' % lines)

    srv = raw_server(answer)
    handler = OgLogHandler(srv.url, "svc", backoff_initial=0.01, backoff_max=0.05, **_SHORT)
    logger.addHandler(handler)
    try:
        for i in range(50):
            logger.info("line %d", i)
        assert handler.flush(10)
        assert srv.answered_lines(50) == 50
        stats = handler.stats()
        assert stats.sent == 50 and stats.retried >= 1
    finally:
        handler.close(2)


# ----------------------------------------------------------------- finding 9: unparsable 2xx bodies


def test_deeply_nested_2xx_body_counts_as_all_accepted() -> None:
    """json.loads raises RecursionError on the body: the 2xx still means sent, nothing rejected."""
    result = classify(httpx.Response(202, content=_DEEP), "http://x/logs", 3)
    assert result.outcome is Outcome.OK and result.rejected == ()


def test_handler_sends_a_batch_once_when_the_2xx_body_is_deeply_nested(
    raw_server: Callable[..., _RawServer], logger: logging.Logger
) -> None:
    """The accepted batch is settled as sent (one request), not resent forever."""
    srv = raw_server(lambda s, conn, lines, n: _reply(conn, _DEEP))
    handler = OgLogHandler(srv.url, "svc")  # defaults
    logger.addHandler(handler)
    try:
        for i in range(10):
            logger.info("line %d", i)
        assert handler.flush(10)
        assert (srv.requests, srv.answered_lines(10)) == (1, 10)
        assert handler.stats().sent == 10
    finally:
        handler.close(2)
