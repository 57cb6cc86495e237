"""Exactly once when the asyncio client's sending task is interrupted (issue #10): a SIGTERM during a 413
split, or the loop ending mid-send. Every resend of the same records by `AsyncOgLogClient` carries the same
batch id, so a server that dedups by batch id stores each record once."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from oglogstream import AsyncOgLogClient, _wire

from .answer_server import QuietHandler
from .capture_server import CaptureServer, Reply

EVENTS = 100

_APP = """
    import asyncio, sys
    from oglogstream import AsyncOgLogClient

    client = AsyncOgLogClient(sys.argv[1], "gaps-split")

    async def main():
        for i in range(int(sys.argv[2])):
            client.info("event", n=i)
        await client.flush(60)  # SIGTERM comes while a half is in flight
        print("flush returned", flush=True)

    asyncio.run(main())
"""


class DedupServer(ThreadingHTTPServer):
    """Stores each batch id once (as the ingestion server does) and answers 413 to more than `max_entries`
    per request; stalls without answering the first request whose batch id ends with `stall_suffix`, after
    storing it, until the test ends."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, max_entries: int, stall_suffix: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.max_entries = max_entries
        self.stall_suffix = stall_suffix
        self.lock = threading.Lock()
        self.stored_batches: set[str] = set()
        self.rows: Counter[str] = Counter()
        self.batch_ids: list[str] = []
        self.stalled = threading.Event()
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"
    server: DedupServer

    def do_POST(self) -> None:
        lines = self.posted_lines()
        batch_id = self.headers.get(_wire.BATCH_ID_HEADER) or ""
        srv = self.server
        with srv.lock:
            srv.batch_ids.append(batch_id)
        if len(lines) > srv.max_entries:
            self._answer(413, b'{"error":"batch too large"}')
            return
        with srv.lock:
            first = batch_id not in srv.stored_batches
            if first:
                srv.stored_batches.add(batch_id)
                srv.rows.update(json.loads(line)["attributes"]["n"] for line in lines)
            stall = first and batch_id.endswith(srv.stall_suffix) and not srv.stalled.is_set()
        if stall:  # stored, but the answer never comes: the client cannot know
            srv.stalled.set()
            srv.release.wait(30)
            self.close_connection = True
            return
        self._answer(202, json.dumps({"accepted": len(lines), "rejected": []}).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(
    params=[(60, "a"), (60, "b"), (30, "ab")],
    ids=["first-half-in-flight", "second-half-in-flight", "quarter-in-flight-after-two-splits"],
)
def dedup_server(request: pytest.FixtureRequest) -> Iterator[DedupServer]:
    server = DedupServer(*request.param)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_sigterm_during_a_413_split_stores_every_record_exactly_once(dedup_server: DedupServer) -> None:
    """SIGTERM while a stored half waits for its answer: the drain resends it under its own id (before: a new
    `<id>r` for the second half, stored twice), so each of the 100 events is stored once, also when the
    part in flight is a quarter of a batch split twice."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_APP), dedup_server.url, str(EVENTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert dedup_server.stalled.wait(30), "the client never sent the half the server stalls on"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGTERM, err
    assert "flush returned" not in out
    with dedup_server.lock:
        rows = dict(dedup_server.rows)
        ids = list(dedup_server.batch_ids)
    assert sorted(rows) == list(range(EVENTS)), (ids, err)
    assert {n: c for n, c in rows.items() if c != 1} == {}, (ids, err)


@pytest.mark.parametrize(
    "reply",
    [Reply(202, delay=0.5), Reply(503, headers={"Retry-After": "1"})],
    ids=["send-in-progress", "backing-off-after-503"],
)
def test_loop_ending_mid_delivery_resends_the_batch_under_its_id(server: CaptureServer, reply: Reply) -> None:
    """`asyncio.run()` returns while the batch is being sent (or retried after a 503): the loop's cleanup
    cancels the task, which sends the batch again under the same id within shutdown_timeout (before: given
    up at once, 100 counted `unconfirmed` or `shutdown` though the drain had 5 s), so nothing is lost and a
    deduplicating server stores it once."""
    server.script(reply)
    clients: list[AsyncOgLogClient] = []

    async def main() -> None:
        client = AsyncOgLogClient(server.url, "gaps-cancel", drain_on_sigterm=False)
        clients.append(client)
        for i in range(EVENTS):
            client.info("event", n=i)
        assert not await client.flush(0.1)  # the first answer is slow, or a 503: main returns meanwhile

    asyncio.run(main())
    stats = clients[0].stats()
    assert (stats.sent, stats.dropped, stats.queued) == (EVENTS, {}, 0)
    assert len(server.ids) == EVENTS
    assert len({r.batch_id for r in server.requests}) == 1, server.requests
