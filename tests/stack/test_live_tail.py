"""GET /ws/live: ingested entries reach WebSocket clients, filtered per client; slow clients get drop notices
without holding back the others; shutdown closes every socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.resources import BROKER
from oglogstream.stack.query.live import LIVE

from .query_helpers import ingest_and_query, live_clients, running

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def live_app(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, Any, aiohttp.ClientSession]]:
    """Ingest + query roles on real NATS and chDB, plus a client session."""
    async with ingest_and_query(nats_server.url, chdb_dsn) as parts:
        yield parts


async def receive_ids(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[str]:
    ids = []
    while len(ids) < n:
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        ids.append(json.loads(msg.data)["id"])
    return ids


async def test_ingested_entries_reach_clients_with_their_filters(live_app: Any) -> None:
    """Every accepted entry is pushed in order; level, service and q filters pick each client's subset."""
    base, app, session = live_app
    everything = await session.ws_connect(f"{base}/ws/live")
    errors = await session.ws_connect(f"{base}/ws/live?level=error,fatal")
    search = await session.ws_connect(f"{base}/ws/live?service=pay&q=Card%20declined")
    await live_clients(app, 3)
    entries = [
        {"id": "e1", "level": "info", "message": "user logged in", "service": "auth"},
        {"id": "e2", "level": "error", "message": "card declined for order 7", "service": "pay"},
        {"id": "e3", "level": "fatal", "message": "disk full", "service": "db"},
        {"id": "e4", "level": "warn", "message": "CARD DECLINED twice", "service": "pay"},
        {"id": "e5", "level": "info", "message": "card accepted", "service": "pay"},
    ]
    body = "\n".join(json.dumps(e) for e in entries).encode()
    async with session.post(f"{base}/logs", data=body, headers={"Content-Type": "application/x-ndjson"}) as r:
        assert r.status == 202
    assert await receive_ids(everything, 5) == ["e1", "e2", "e3", "e4", "e5"]
    assert await receive_ids(errors, 2) == ["e2", "e3"]
    assert await receive_ids(search, 2) == ["e2", "e4"]
    with pytest.raises(asyncio.TimeoutError):
        await errors.receive(timeout=0.3)
    for ws in (everything, errors, search):
        await ws.close()


async def test_public_shape_matches_the_query_api(live_app: Any) -> None:
    """A live entry has the public fields (timestamp with Z, attributes with their JSON types), as
    GET /api/logs has."""
    base, app, session = live_app
    ws = await session.ws_connect(f"{base}/ws/live")
    await live_clients(app, 1)
    entry = {"id": "x1", "level": "info", "message": "m", "service": "s", "attributes": {"n": 5, "ok": True}}
    async with session.post(f"{base}/log", json=entry) as r:
        assert r.status == 202
    msg = json.loads((await ws.receive(timeout=10)).data)
    assert msg["attributes"] == {"n": 5, "ok": True} and msg["timestamp"].endswith("Z")
    await ws.close()


async def test_slow_client_gets_drop_notice_while_fast_client_gets_everything(live_app: Any) -> None:
    """A client that stops reading loses entries past its queue (and is told how many); others lose none."""
    base, app, session = live_app
    app[LIVE].queue_size = 300
    fast = await session.ws_connect(f"{base}/ws/live")
    slow = await session.ws_connect(f"{base}/ws/live")  # never reads until the end
    await live_clients(app, 2)
    filler = "x" * 8000
    per_payload, payloads = 100, 40  # ~32 MB: far more than the socket buffers of the slow client hold
    total = per_payload * payloads
    received_fast: list[str] = []

    async def read_fast() -> None:
        while len(received_fast) < total:
            msg = await fast.receive(timeout=20)
            assert msg.type == aiohttp.WSMsgType.TEXT
            received_fast.append(json.loads(msg.data)["id"])

    reader = asyncio.create_task(read_fast())
    broker = app[BROKER]
    for p in range(payloads):
        lines = [
            json.dumps(
                {
                    "id": f"p{p}-{i}",
                    "timestamp": "2026-11-27T10:00:00.000000Z",
                    "level": "info",
                    "message": filler,
                    "service": "s",
                }
            )
            for i in range(per_payload)
        ]
        await broker.publish_live("\n".join(lines).encode())
        await asyncio.sleep(0.01)
    await asyncio.wait_for(reader, 60)
    assert received_fast == [f"p{p}-{i}" for p in range(payloads) for i in range(per_payload)]

    delivered, dropped, notices = 0, 0, 0
    while delivered + dropped < total:
        msg = await slow.receive(timeout=20)
        data = json.loads(msg.data)
        if data.get("type") == "dropped":
            dropped += data["count"]
            notices += 1
        else:
            delivered += 1
    assert notices >= 1 and dropped > 0 and delivered + dropped == total
    await fast.close()
    await slow.close()


async def test_one_request_of_the_sdks_default_batch_reaches_an_idle_reader_whole(live_app: Any) -> None:
    """A POST /logs of the SDK's default batch (4,000 entries, queued at once) reaches a reading client with
    no drop notice: the queue was 1,000 and such a tail lost 3,000 of every batch, blaming the reader."""
    from oglogstream._settings import DEFAULT_BATCH_SIZE

    base, app, session = live_app
    ws = await session.ws_connect(f"{base}/ws/live")
    await live_clients(app, 1)
    body = "\n".join(
        json.dumps({"id": f"b{i}", "level": "info", "message": f"line {i}", "service": "burst"})
        for i in range(DEFAULT_BATCH_SIZE)
    )
    async with session.post(
        f"{base}/logs", data=body.encode(), headers={"Content-Type": "application/x-ndjson"}
    ) as resp:
        assert resp.status == 202, await resp.text()
    assert await receive_ids(ws, DEFAULT_BATCH_SIZE) == [f"b{i}" for i in range(DEFAULT_BATCH_SIZE)]
    await ws.close()


async def test_a_client_queue_is_bounded_in_bytes_too(live_app: Any) -> None:
    """A client that does not read keeps at most queue_bytes of entries (large entries reach the byte bound
    long before the count): the rest is dropped for it and counted in the notice."""
    base, app, session = live_app
    app[LIVE].queue_bytes = 100_000
    slow = await session.ws_connect(f"{base}/ws/live")  # reads only at the end
    await live_clients(app, 1)
    lines = [
        json.dumps({"id": f"w{i}", "timestamp": "2026-11-27T10:00:00.000000Z", "level": "info",
                    "message": "x" * 10_000, "service": "s"})
        for i in range(50)
    ]
    await app[BROKER].publish_live("\n".join(lines).encode())
    (client,) = app[LIVE].clients
    for _ in range(200):
        if client.hub.dropped._value.get() > 0:
            break
        await asyncio.sleep(0.02)
    assert client.queued_bytes <= 100_000
    delivered, dropped = 0, 0
    while delivered + dropped < 50:
        data = json.loads((await slow.receive(timeout=20)).data)
        if data.get("type") == "dropped":
            dropped += data["count"]
        else:
            delivered += 1
    assert dropped > 0 and delivered + dropped == 50
    await slow.close()


async def test_bad_filter_is_400_before_upgrade(live_app: Any) -> None:
    """An invalid filter is refused with a 400 naming it instead of opening a socket that never matches."""
    base, _, session = live_app
    async with session.get(f"{base}/ws/live?level=loud") as response:
        assert response.status == 400
        assert (await response.json())["details"][0]["field"] == "level"


async def test_shutdown_closes_every_socket(nats_server: Any, chdb_dsn: str) -> None:
    """Stopping the app closes open live sockets with 1001 (going away) promptly."""
    config = StackConfig(roles=("query",), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    async with aiohttp.ClientSession() as session:
        async with running(config) as (base, app):
            sockets = [await session.ws_connect(f"{base}/ws/live") for _ in range(3)]
            await live_clients(app, 3)
        for ws in sockets:
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
