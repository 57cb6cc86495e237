"""Context binding: fields bound with `bind`/`bound` ride along on every record of that thread or task."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import oglogstream
import pytest

from .capture_server import CaptureServer


@pytest.fixture(autouse=True)
def _clean_context() -> None:
    oglogstream.clear_context()


def _by_message(server: CaptureServer) -> dict[str, dict[str, object]]:
    return {e["message"]: e.get("attributes", {}) for e in server.entries}


def test_bound_fields_become_attributes_and_extra_wins(server: CaptureServer, make_handler, logger) -> None:
    """bind() adds fields to later records; a record's own extra= value wins on a clash; unbind removes."""
    handler = make_handler(server.url)
    logger.addHandler(handler)
    oglogstream.bind(request_id="r-1", user="ann")
    logger.info("bound")
    logger.info("clash", extra={"user": "bob"})
    oglogstream.unbind("user")
    logger.info("unbound")
    assert handler.flush(10)
    got = _by_message(server)
    assert got["bound"] == {"request_id": "r-1", "user": "ann"}
    assert got["clash"] == {"request_id": "r-1", "user": "bob"}
    assert got["unbound"] == {"request_id": "r-1"}


def test_bound_block_restores_the_previous_context(server: CaptureServer, make_handler, logger) -> None:
    """`with bound(...)` applies only inside the block."""
    handler = make_handler(server.url)
    logger.addHandler(handler)
    oglogstream.bind(tenant="t1")
    with oglogstream.bound(request_id="r-2"):
        logger.info("inside")
    logger.info("outside")
    assert handler.flush(10)
    got = _by_message(server)
    assert got["inside"] == {"tenant": "t1", "request_id": "r-2"}
    assert got["outside"] == {"tenant": "t1"}


def test_context_is_per_thread_and_per_task(server: CaptureServer, make_handler, logger) -> None:
    """Threads and asyncio tasks each see only what they bound themselves."""
    handler = make_handler(server.url)
    logger.addHandler(handler)

    def in_thread(n: int) -> None:
        oglogstream.bind(worker=n)
        logger.info("thread %d", n)

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(in_thread, n)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def task(n: int) -> None:
        oglogstream.bind(task=n)
        await asyncio.sleep(0)
        logger.info("task %d", n)

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in range(3)))

    asyncio.run(main())
    assert handler.flush(10)
    got = _by_message(server)
    for n in range(3):
        assert got[f"thread {n}"] == {"worker": n}
        assert got[f"task {n}"] == {"task": n}
