"""A 2xx partial accept's `rejected_count` is what the SDK counts (the stack lists only the first 100
refusals): stats()["dropped"]["rejected"] stays exact with a bounded list, and a hostile count (negative,
over the batch, below what is listed, a string, a bool, a float, a huge int) or list (far longer than the
batch, duplicates, out-of-range indices) falls back to the valid listed entries. Real local HTTP server,
real handler and asyncio client with default settings."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from oglogstream import AsyncOgLogClient, OgLogHandler

from .answer_server import QuietHandler

#: Records logged per case: more than the 100 refusals the stack lists.
RECORDS = 250

#: A body for a batch of n entries, and how many of them the SDK must count as rejected.
Answer = Callable[[int], tuple[dict[str, Any], int]]


def _listed(indices: range | list[int]) -> list[dict[str, Any]]:
    return [{"index": i, "error": f"field 'level': bad value #{i}"} for i in indices]


CASES: dict[str, Answer] = {
    # The stack's bounded answer: the first 100 refusals listed, every one counted.
    "bounded list, exact count": lambda n: (
        {"accepted": 1, "rejected": _listed(range(min(100, n - 1))), "rejected_count": n - 1}, n - 1),
    "count, no list": lambda n: ({"accepted": n - n // 2, "rejected_count": n // 2}, n // 2),
    "count 0": lambda n: ({"accepted": n, "rejected": [], "rejected_count": 0}, 0),
    "whole batch counted": lambda n: ({"rejected": _listed(range(min(100, n))), "rejected_count": n}, n),
    "no count (older stack)": lambda n: ({"rejected": _listed(range(0, n, 2))}, len(range(0, n, 2))),
    "negative count": lambda n: ({"rejected": _listed([0, 1, 2]), "rejected_count": -5}, 3),
    "count over the batch": lambda n: ({"rejected": _listed([0, 1, 2]), "rejected_count": n + 1}, 3),
    "count below the list": lambda n: ({"rejected": _listed([0, 1, 2]), "rejected_count": 1}, 3),
    "string count": lambda n: ({"rejected": _listed([0, 1, 2]), "rejected_count": "7"}, 3),
    "bool count": lambda n: ({"rejected": _listed([4]), "rejected_count": True}, 1),
    "float count": lambda n: ({"rejected": _listed([0, 1, 2]), "rejected_count": 3.0}, 3),
    "huge int count": lambda n: ({"rejected": _listed([0, 1, 2]), "rejected_count": 10**40}, 3),
    "null count": lambda n: ({"rejected": _listed([0, 1]), "rejected_count": None}, 2),
    # 60,000 entries (about 1.5 MB): indices cycle over more than the batch, duplicates, negatives, strings.
    "huge list": lambda n: ({"rejected": [
        {"index": i % (n + 7) if i % 3 else -i, "error": "x"} if i % 5 else {"index": str(i)}
        for i in range(60_000)
    ]}, n),
    "huge list, exact count": lambda n: ({"rejected": _listed(list(range(n)) * 200), "rejected_count": n}, n),
    "list not a list": lambda n: ({"rejected": {"index": 0}, "rejected_count": "all"}, 0),
}


class _AnswerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: Answer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.lock = threading.Lock()
        #: Entries per request, and the rejected count each answer means.
        self.requests: list[tuple[int, int]] = []


class _Handler(QuietHandler):
    server: _AnswerServer

    def do_POST(self) -> None:
        n = len(self.posted_lines())
        body, expected = self.server.answer(n)
        with self.server.lock:
            self.server.requests.append((n, expected))
        data = json.dumps(body).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(params=sorted(CASES))
def answering(request: pytest.FixtureRequest) -> Iterator[_AnswerServer]:
    server = _AnswerServer(CASES[request.param])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _url(server: _AnswerServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def _expected(server: _AnswerServer) -> tuple[int, int]:
    """(entries the server received, entries its answers refused) over every request."""
    with server.lock:
        return sum(n for n, _ in server.requests), sum(r for _, r in server.requests)


def test_the_handler_counts_what_the_answer_refused(answering: _AnswerServer, logger: logging.Logger) -> None:
    """Every answer's refusals are counted as `rejected`, the rest as sent: accepted = sent + dropped."""
    handler = OgLogHandler(_url(answering), "rejects")
    logger.addHandler(handler)
    try:
        for i in range(RECORDS):
            logger.info("entry %d", i)
        assert handler.flush(30)
        received, refused = _expected(answering)
        stats = handler.stats()
        assert received == RECORDS
        assert stats.dropped.get("rejected", 0) == refused
        assert stats.sent == RECORDS - refused
        assert stats.sent + stats.dropped_total + stats.queued == RECORDS
    finally:
        handler.close(5)


async def test_the_asyncio_client_counts_what_the_answer_refused(answering: _AnswerServer) -> None:
    """The same books for AsyncOgLogClient (one settling rule for both drivers)."""
    client = AsyncOgLogClient(_url(answering), "rejects")
    try:
        for i in range(RECORDS):
            client.info("entry", n=i)
        assert await client.flush(30)
        received, refused = _expected(answering)
        stats = client.stats()
        assert received == RECORDS
        assert stats.dropped.get("rejected", 0) == refused
        assert stats.sent == RECORDS - refused
    finally:
        await client.aclose(5)
