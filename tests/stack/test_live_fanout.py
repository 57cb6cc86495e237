"""The live tail's fan-out (r8 findings 1, 2, 6): a payload is offered to each client in one step, drops are
counted exactly (per client and in the metric), the byte bound counts UTF-8 bytes, and admission keeps a share
of the sockets for other clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.http.resources import BROKER
from oglogstream.stack.http.share import SharePolicy
from oglogstream.stack.query.live import LIVE
from oglogstream.stack.query.live_client import Batch, Client, Gap

from .query_helpers import ingest_and_query, live_clients

pytestmark = pytest.mark.timeout(90)


class _Bounds:
    """The bounds a client reads from its hub."""

    def __init__(self, queue_size: int, queue_bytes: int) -> None:
        self.queue_size, self.queue_bytes = queue_size, queue_bytes


def _lines(prefix: str, n: int, message: str = "m") -> list[bytes]:
    entries = ({"id": f"{prefix}{i}", "message": message} for i in range(n))
    return [json.dumps(entry, ensure_ascii=False).encode() for entry in entries]


def test_a_full_queue_takes_a_batch_as_one_gap() -> None:
    """What fits is queued in order, the rest of the batch and every later batch while full is one gap
    whose count is exact; once drained, new entries queue after that gap and a later drop is a new one."""
    client = Client(None, None, _Bounds(queue_size=3, queue_bytes=10**6))  # type: ignore[arg-type]
    assert client.offer(Batch(_lines("a", 5))) == 2
    assert client.offer(Batch(_lines("b", 4))) == 4
    assert [type(item) for item in client.queue] == [bytes, bytes, bytes, Gap]
    gap = client.queue[-1]
    assert isinstance(gap, Gap) and gap.count == 6
    client.queue.popleft()
    client.queued -= 1
    client.queued_bytes -= len(_lines("a", 1)[0])
    assert client.offer(Batch(_lines("c", 2))) == 1
    assert client.queue[-3] is gap and gap.count == 6 and client.queue[-2] == _lines("c", 1)[0]
    last = client.queue[-1]
    assert isinstance(last, Gap) and last.count == 1


def test_the_byte_bound_counts_utf8_bytes() -> None:
    """An entry of 30 emoji is 30 characters but ~130 bytes: a 200-byte bound takes one, not six."""
    client = Client(None, None, _Bounds(queue_size=100, queue_bytes=200))  # type: ignore[arg-type]
    lines = _lines("e", 6, "\U0001f600" * 30)
    assert all(len(line) > 120 for line in lines)
    assert client.offer(Batch(lines)) == 5
    assert client.queued == 1 and client.queued_bytes == len(lines[0])


@pytest.fixture
async def live_app(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, Any, aiohttp.ClientSession]]:
    """Ingest + query roles on real NATS and chDB, plus a client session."""
    async with ingest_and_query(nats_server.url, chdb_dsn) as parts:
        yield parts


async def _read_all(ws: aiohttp.ClientWebSocketResponse, total: int) -> tuple[list[Any], int]:
    """Entries and the dropped count until they add up to `total`."""
    entries: list[Any] = []
    dropped = 0
    while len(entries) + dropped < total:
        data = json.loads((await ws.receive(timeout=20)).data)
        if data.get("type") == "dropped":
            dropped += data["count"]
        else:
            entries.append(data)
    return entries, dropped


async def test_drops_are_exact_per_client_and_in_the_metric(live_app: Any) -> None:
    """Clients that do not read (two unfiltered, one filtered) over several payloads: each gets every entry
    it selects or a notice counting it, and the metric counts the sum of their drops, no more."""
    base, app, session = live_app
    hub = app[LIVE]
    hub.queue_size = 5
    sockets = [await session.ws_connect(f"{base}/ws/live") for _ in range(2)]
    sockets.append(await session.ws_connect(f"{base}/ws/live?level=error"))
    await live_clients(app, 3, senders=True)
    for p in range(3):
        rows = [
            json.dumps({"id": f"p{p}-{i}", "timestamp": "2026-11-27T10:00:00.000000Z",
                        "level": "error" if i % 2 else "info", "message": "x", "service": "s"})
            for i in range(20)
        ]
        await app[BROKER].publish_live("\n".join(rows).encode())
    totals = [60, 60, 30]
    dropped_sum = 0
    for ws, total in zip(sockets, totals, strict=True):
        entries, dropped = await _read_all(ws, total)
        assert dropped > 0 and len(entries) + dropped == total
        ids = [entry["id"] for entry in entries]
        assert ids == sorted(set(ids), key=ids.index)  # in order, no repeats
        dropped_sum += dropped
    assert hub.dropped._value.get() == dropped_sum
    for ws in sockets:
        await ws.close()


async def test_non_ascii_entries_arrive_raw_and_count_in_bytes(live_app: Any) -> None:
    """Emoji reach the client as sent; an idle client's byte bound holds them by bytes (2 of 20 entries of
    10,000 emoji fit 100,000 bytes; by characters 9 would)."""
    base, app, session = live_app
    app[LIVE].queue_bytes = 100_000
    slow = await session.ws_connect(f"{base}/ws/live")
    await live_clients(app, 1, senders=True)
    message = "\U0001f600" * 10_000
    rows = [
        json.dumps({"id": f"u{i}", "timestamp": "2026-11-27T10:00:00.000000Z", "level": "info",
                    "message": message, "service": "s"}, ensure_ascii=False)
        for i in range(20)
    ]
    await app[BROKER].publish_live("\n".join(rows).encode())
    entries, dropped = await _read_all(slow, 20)
    assert len(entries) == 2 and dropped == 18
    assert all(entry["message"] == message for entry in entries)
    await slow.close()


async def test_one_client_cannot_take_every_socket(live_app: Any) -> None:
    """Past its share a client gets 429 + Retry-After while room is kept for others; once it holds fewer,
    it gets in again."""
    base, app, session = live_app
    hub = app[LIVE]
    hub.admission.policy = SharePolicy(3, 1)
    first = await session.ws_connect(f"{base}/ws/live")
    await live_clients(app, 1, senders=True)
    second = await session.ws_connect(f"{base}/ws/live")  # past its share, one free stays for others
    await live_clients(app, 2, senders=True)
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    async with session.get(f"{base}/ws/live", headers=upgrade) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "5"
        assert "kept for others" in (await r.json())["details"][0]["reason"]
    await second.close()
    await live_clients(app, 1, senders=True)
    third = await session.ws_connect(f"{base}/ws/live")
    for ws in (first, third):
        await ws.close()
