"""drop_oldest never throws waiting records away for one that cannot fit even in an empty intake (larger
than the whole byte room): that record alone is dropped (`overflow` +1), handler and asyncio client alike.
Before, 500 waiting records were dropped first, then the large one too (+501)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from oglogstream import AsyncOgLogClient, OgLogHandler

from .capture_server import BlackHoleServer

#: The smallest budget allowed is 2 MiB: 4 MiB of room, and a message larger than it.
BUDGET = 4 * 1024 * 1024
HUGE = "B" * (BUDGET + 1024 * 1024)
WAITING = 500
#: Seconds the worker is given to connect to the hanging server (an upper bound, not a measurement).
CONNECT_DEADLINE = 10.0


def _until(predicate: Callable[[], bool], deadline: float) -> bool:
    pause = threading.Event()
    for _ in range(int(deadline / 0.01)):
        if predicate():
            return True
        pause.wait(0.01)
    return predicate()


def test_the_handler_drops_only_a_record_that_can_never_fit(make_handler: Callable[..., Any]) -> None:
    """The worker hangs in a send (the server never answers), 500 records wait in the intake; a record
    larger than the budget is dropped alone and the 500 stay queued."""
    server = BlackHoleServer()
    try:
        handler: OgLogHandler = make_handler(server.url, max_buffer_bytes=BUDGET, read_timeout=30.0)
        logger = logging.getLogger("never-fits")
        logger.propagate = False
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            logger.info("first")
            handler.flush(timeout=0.01)  # starts the send that hangs
            assert _until(lambda: bool(server._held), CONNECT_DEADLINE)
            for i in range(WAITING):
                logger.info("waiting %d", i)
            before = handler.stats()
            logger.info(HUGE)
            after = handler.stats()
            assert after.dropped.get("overflow", 0) - before.dropped.get("overflow", 0) == 1
            assert after.queued == before.queued == WAITING + 1
        finally:
            logger.removeHandler(handler)
            handler.close(timeout=0.2)
    finally:
        server.close()


async def test_the_async_client_drops_only_an_event_that_can_never_fit() -> None:
    """500 events wait (the sending task has not run yet); one larger than the budget is dropped alone."""
    client = AsyncOgLogClient("http://127.0.0.1:9", "never-fits", max_buffer_bytes=BUDGET)
    try:
        for i in range(WAITING):
            client.info(f"waiting {i}")
        before = client.stats()
        client.info(HUGE)
        after = client.stats()
        assert after.dropped.get("overflow", 0) - before.dropped.get("overflow", 0) == 1
        assert len(client._intake) == WAITING
    finally:
        await client.aclose(0.2)
