"""`unconfirmed` means a request's bytes went out unanswered: records whose request never left are `shutdown`,
and records counted lost at a close deadline are never sent after all (counted lost and stored is a lie);
a request that went out and got no answer keeps its records `unconfirmed` whatever its retries meet.

Found in CI under load: close(timeout=1) against a closed port caught the worker inside a slow connect, and
the 50 records were counted `unconfirmed` although no byte was written. The connect is slowed here at the
client boundary (httpcore's network backend), so the close deadline always falls inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator

import httpcore
import pytest
from oglogstream import AsyncOgLogClient

from .capture_server import CaptureServer, Reply
from .conftest import FAST

#: Seconds each connect is held before it really connects: past the close deadlines below.
CONNECT_DELAY = 1.5


@pytest.fixture
def slow_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new connection (sync and asyncio) connects only after CONNECT_DELAY seconds."""
    sync_connect = httpcore.SyncBackend.connect_tcp
    async_connect = httpcore.AnyIOBackend.connect_tcp

    def connect_tcp(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        threading.Event().wait(CONNECT_DELAY)
        return sync_connect(self, *args, **kwargs)

    async def aconnect_tcp(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(CONNECT_DELAY)
        return await async_connect(self, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", aconnect_tcp)


def _log_then_aclose(url: str, *, wait: float, timeout: float) -> AsyncOgLogClient:
    """An asyncio client logs `id=0..49`, waits `wait` s, then aclose(timeout) gives up (returns False)."""

    async def main() -> AsyncOgLogClient:
        client = AsyncOgLogClient(url, "async-svc", **FAST)
        for i in range(50):
            client.info(f"id={i}")
        await asyncio.sleep(wait)
        assert await client.aclose(timeout=timeout) is False
        return client

    return asyncio.run(main())


def test_a_close_inside_the_connect_counts_shutdown_and_sends_nothing_later(
    slow_connect: None, server: CaptureServer, make_handler, logger
) -> None:
    """close(timeout=0.3) while the connect is pending: 50 `shutdown`, and the request is never written."""
    handler = make_handler(server.url)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("r %d", i)
    time.sleep(0.2)  # the worker is inside the connect now
    assert handler.close(timeout=0.3) is False
    stats = handler.stats()
    assert (stats.queued, stats.sent, stats.dropped) == (0, 0, {"shutdown": 50})
    time.sleep(CONNECT_DELAY + 0.5)  # the abandoned sending thread's connect has finished by now
    assert (server.entry_count, len(server.requests)) == (0, 0)


def test_an_asyncio_close_inside_the_connect_counts_shutdown(
    slow_connect: None, server: CaptureServer
) -> None:
    """The asyncio client: aclose(timeout=0.3) during the connect gives 50 `shutdown`, nothing stored."""

    stats = _log_then_aclose(server.url, wait=0.2, timeout=0.3).stats()
    assert (stats.queued, stats.sent, stats.dropped) == (0, 0, {"shutdown": 50})
    time.sleep(0.5)
    assert server.entry_count == 0


def test_a_request_written_and_unanswered_at_the_deadline_is_still_unconfirmed(
    server: CaptureServer, make_handler, logger
) -> None:
    """The other side of the rule: once the request is written, a close deadline counts it `unconfirmed`."""
    server.script(Reply(202, delay=3.0))
    handler = make_handler(server.url)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("r %d", i)
    time.sleep(0.3)  # written; the server holds its answer
    assert handler.close(timeout=0.3) is False
    stats = handler.stats()
    assert (stats.queued, stats.sent, stats.dropped) == (0, 0, {"unconfirmed": 50})



class StoreAndVanish:
    """A raw HTTP server that reads whole requests and keeps their records' `id=<n>`, never answering; after
    `serve` requests it stops listening and closes the connection, so later connects are refused."""

    def __init__(self, serve: int = 1) -> None:
        self.stored: set[int] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._serve = serve
        self._open: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        with contextlib.suppress(OSError), self._listener:  # OSError: closed by the test while reading
            for _ in range(self._serve):
                conn, _ = self._listener.accept()
                self._open.append(conn)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, body = data.split(b"\r\n\r\n", 1)
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                while len(body) < length:
                    body += conn.recv(65536)
                self.stored.update(int(n) for n in re.findall(rb"id=(\d+)", gzip.decompress(body)))
        if self._serve == 1:
            self._open[0].close()  # gone without an answer: the client's read fails at once

    def close(self) -> None:
        for conn in self._open:
            conn.close()


@pytest.fixture
def vanishing() -> Iterator[StoreAndVanish]:
    server = StoreAndVanish()
    yield server
    server.close()


def test_a_stored_request_whose_answer_was_lost_stays_unconfirmed_through_refused_retries(
    vanishing: StoreAndVanish, make_handler, logger: logging.Logger
) -> None:
    """Review: the server stores the request and vanishes; the retries are refused. 50 `unconfirmed` (the
    server holds all 50), not `shutdown` as when only the last attempt counted."""
    handler = make_handler(vanishing.url)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("id=%d", i)
    time.sleep(1.0)
    assert handler.close(timeout=0.5) is False
    stats = handler.stats()
    assert (stats.queued, stats.sent, stats.dropped, len(vanishing.stored)) == (0, 0, {"unconfirmed": 50}, 50)


def test_asyncio_a_stored_request_whose_answer_was_lost_stays_unconfirmed(vanishing: StoreAndVanish) -> None:
    """The same with the asyncio client and aclose()."""

    stats = _log_then_aclose(vanishing.url, wait=1.0, timeout=0.5).stats()
    assert (stats.queued, stats.sent, stats.dropped, len(vanishing.stored)) == (0, 0, {"unconfirmed": 50}, 50)


def test_a_close_inside_a_retrys_connect_keeps_the_stored_first_request_unconfirmed(
    monkeypatch: pytest.MonkeyPatch, make_handler, logger: logging.Logger
) -> None:
    """Review: the first request is stored and never answered (read timeout), the retry's connect is held
    past close(timeout=0.5): 50 `unconfirmed`, and the held retry is never written."""
    server = StoreAndVanish(serve=2)
    connects = []
    sync_connect = httpcore.SyncBackend.connect_tcp

    def connect_tcp(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        connects.append(1)
        if len(connects) > 1:
            threading.Event().wait(CONNECT_DELAY)
        return sync_connect(self, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    try:
        handler = make_handler(server.url, read_timeout=0.5)
        logger.addHandler(handler)
        for i in range(50):
            logger.info("id=%d", i)
        time.sleep(0.9)  # the read timed out; the retry is connecting
        assert handler.close(timeout=0.5) is False
        stats = handler.stats()
        assert (stats.queued, stats.sent, stats.dropped) == (0, 0, {"unconfirmed": 50})
        time.sleep(CONNECT_DELAY)
        assert len(server.stored) == 50 and len(connects) == 2
    finally:
        server.close()


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_5xx_answer_keeps_the_records_unconfirmed(
    server: CaptureServer, make_handler, logger: logging.Logger, status: int
) -> None:
    """Review: a 5xx does not say the batch was not stored (the stack's own 503 "may have been stored", a
    proxy's 504 after forwarding it): a close in the backoff counts 50 `unconfirmed`, not `shutdown`."""
    server.fail_status = status
    handler = make_handler(server.url, backoff_initial=5.0, backoff_max=5.0)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("id=%d", i)
    time.sleep(0.5)  # answered, and waiting out its backoff
    assert handler.close(timeout=0.3) is False
    stats = handler.stats()
    assert (stats.queued, stats.sent, stats.dropped) == (0, 0, {"unconfirmed": 50})


def test_a_4xx_answer_closes_the_request(server: CaptureServer, make_handler, logger: logging.Logger) -> None:
    """The other side: a 429 says the server did not take the batch: a close in the backoff is `shutdown`."""
    server.fail_status = 429
    handler = make_handler(server.url, backoff_initial=5.0, backoff_max=5.0)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("id=%d", i)
    time.sleep(0.5)
    assert handler.close(timeout=0.3) is False
    assert handler.stats().dropped == {"shutdown": 50}
