"""`unconfirmed` means a request's bytes went out unanswered: records whose request never left are `shutdown`,
and records counted lost at a close deadline are never sent after all (counted lost and stored is a lie).

Found in CI under load: close(timeout=1) against a closed port caught the worker inside a slow connect, and
the 50 records were counted `unconfirmed` although no byte was written. The connect is slowed here at the
client boundary (httpcore's network backend), so the close deadline always falls inside it.
"""

from __future__ import annotations

import asyncio
import threading
import time

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

    async def main() -> AsyncOgLogClient:
        client = AsyncOgLogClient(server.url, "async-svc", **FAST)
        for i in range(50):
            client.info(f"r {i}")
        await asyncio.sleep(0.2)
        assert await client.aclose(timeout=0.3) is False
        return client

    client = asyncio.run(main())
    stats = client.stats()
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

