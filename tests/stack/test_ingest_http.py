"""Ingestion over HTTP: the seed's POST /log, batches on POST /logs, and every documented error answer."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream import _wire
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http import boundary as http_boundary
from oglogstream.stack.http.app import create_app
from oglogstream.stack.ingestion import ingest, slots

from .helpers import count_rows, query_rows, running_app, wait_for

NDJSON = {"Content-Type": "application/x-ndjson"}
GZIP_NDJSON = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, Any, aiohttp.ClientSession]]:
    config = StackConfig(
        roles=("ingest", "process"), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn, flush_timeout=0.1
    )
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        yield url, app, session


def lines(n: int, **fields: Any) -> bytes:
    return b"".join(
        json.dumps({"level": "info", "message": f"m{i}", "service": "svc", **fields}).encode() + b"\n"
        for i in range(n)
    )


async def test_seed_quick_test(stack: Any) -> None:
    """The seed README's curl example answers 202 {"status": "accepted", "timestamp": ...} and is stored."""
    url, app, session = stack
    async with session.post(
        f"{url}/log",
        data=b'{"level":"info","message":"Hello OgLogStream","service":"test-app"}',
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 202
        body = await resp.json()
    assert body["status"] == "accepted"
    assert body["timestamp"].endswith("Z")
    await wait_for(lambda: count_rows(app, "service = 'test-app'"))
    [row] = await query_rows(app, "SELECT id, level, message, timestamp FROM logs")
    assert (row["id"], row["level"], row["message"]) == (body["id"], "info", "Hello OgLogStream")


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"message": "m", "service": "s"}, "level"),
        ({"level": "verbose", "message": "m", "service": "s"}, "level"),
        ({"level": "info", "service": "s"}, "message"),
        ({"level": "info", "message": "x" * (_wire.MAX_MESSAGE_BYTES + 1), "service": "s"}, "message"),
        ({"level": "info", "message": "é" * (_wire.MAX_MESSAGE_BYTES // 2 + 1), "service": "s"}, "message"),
        ({"level": "info", "message": "m", "service": ""}, "service"),
        ({"level": "info", "message": "m", "service": "s" * 101}, "service"),
        ({"level": "info", "message": "m", "service": "s", "timestamp": "yesterday"}, "timestamp"),
        (
            {"level": "info", "message": "m", "service": "s", "timestamp": "2026-02-30T00:00:00.000000Z"},
            "timestamp",
        ),
        ({"level": "info", "message": "m", "service": "s", "id": "has space"}, "id"),
        ({"level": "info", "message": "m", "service": "s", "pid": -1}, "pid"),
        ({"level": "info", "message": "m", "service": "s", "attributes": {"k": [1]}}, "attributes.k"),
        ({"level": "info", "message": "m", "service": "s", "attributes": {"k": "v" * 2049}}, "attributes.k"),
        ({"level": "info", "message": "m", "service": "s", "mesage": "typo"}, "mesage"),
    ],
)
async def test_log_rejects_each_invalid_field_with_400(stack: Any, entry: dict[str, Any], field: str) -> None:
    """A bad entry gets 400 naming the field and why, and nothing is published."""
    url, _, session = stack
    async with session.post(f"{url}/log", json=entry) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"] == "validation failed"
    assert field in [d["field"] for d in body["details"]], body
    assert all(d["reason"] for d in body["details"])


async def test_log_rejects_malformed_json_and_non_objects(stack: Any) -> None:
    """Broken JSON and a JSON array on POST /log are 400 with field "body"."""
    url, _, session = stack
    for data in (b'{"level":', b"[]", b""):
        async with session.post(
            f"{url}/log", data=data, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["details"][0]["field"] == "body"


async def test_unsupported_content_type_is_415(stack: Any) -> None:
    """Form posts, text/plain and unknown encodings are 415 on both endpoints."""
    url, _, session = stack
    entry = b'{"level":"info","message":"m","service":"s"}'
    for path, headers in [
        ("/log", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("/log", {"Content-Type": "text/plain"}),
        ("/logs", {"Content-Type": "text/plain"}),
        ("/logs", {"Content-Type": "application/x-ndjson", "Content-Encoding": "compress"}),
    ]:
        async with session.post(f"{url}{path}", data=entry, headers=headers) as resp:
            assert resp.status == 415, (path, headers)
            assert (await resp.json())["error"] == "unsupported media type"


async def test_oversized_bodies_are_413(stack: Any) -> None:
    """POST /log over 50 KB, POST /logs over 8 MB, and more than MAX_BATCH_ENTRIES entries are 413."""
    url, app, session = stack
    big = b'{"level":"info","message":"' + b"x" * _wire.MAX_SINGLE_BODY_BYTES + b'","service":"s"}'
    async with session.post(f"{url}/log", data=big, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 413
    huge = b"x" * (_wire.MAX_BATCH_BODY_BYTES + 1)
    async with session.post(f"{url}/logs", data=huge, headers=NDJSON) as resp:
        assert resp.status == 413
    too_many = lines(_wire.MAX_BATCH_ENTRIES + 1)
    async with session.post(f"{url}/logs", data=too_many, headers=NDJSON) as resp:
        assert resp.status == 413
    assert await count_rows(app) == 0


async def test_too_many_batches_in_flight_is_429(stack: Any) -> None:
    """Past the in-flight limit POST /logs answers 429 + Retry-After; the held batch is still accepted."""
    url, app, session = stack
    counters = app[ingest._COUNTERS]
    counters.slots = slots.BatchSlots(total=1, per_client=1)
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        # A body takes its slot once SLOT_HEAD_BYTES arrived: pad the first line with JSON whitespace.
        yield lines(1)[:-1] + b" " * http_boundary.SLOT_HEAD_BYTES + b"\n"
        await release.wait()
        yield lines(1)

    async def post_slow() -> tuple[int, Any]:
        async with session.post(f"{url}/logs", data=slow_body(), headers=NDJSON) as resp:
            return resp.status, await resp.json()

    async def holding() -> bool:
        return counters.slots.in_flight == 1

    async def stored_all() -> bool:
        return await count_rows(app) == 5

    held = asyncio.create_task(post_slow())
    await wait_for(holding, timeout=10)
    async with session.post(f"{url}/logs", data=lines(3), headers=NDJSON) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == str(ingest.OVERLOAD_RETRY_AFTER_SECONDS)
        assert "already has 1 batches in flight" in (await resp.json())["details"][0]["reason"]
    release.set()
    assert await held == (202, {"accepted": 2, "rejected": [], "rejected_count": 0})
    assert counters.slots.in_flight == 0
    async with session.post(f"{url}/logs", data=lines(3), headers=NDJSON) as resp:
        assert resp.status == 202
    await wait_for(stored_all, timeout=20)


async def test_gzip_bomb_is_cut_at_the_decompressed_cap(stack: Any) -> None:
    """A small gzip body inflating past the cap is 413 on both endpoints, without inflating all of it."""
    url, _, session = stack
    bomb = gzip.compress(b"\n" * (_wire.MAX_BATCH_DECOMPRESSED_BYTES + 1024 * 1024), compresslevel=9)
    assert len(bomb) < _wire.MAX_BATCH_BODY_BYTES
    async with session.post(f"{url}/logs", data=bomb, headers=GZIP_NDJSON) as resp:
        assert resp.status == 413
        assert "decompressed" in (await resp.json())["details"][0]["reason"]
    small_bomb = gzip.compress(b" " * (_wire.MAX_SINGLE_BODY_BYTES + 1))
    async with session.post(
        f"{url}/log",
        data=small_bomb,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    ) as resp:
        assert resp.status == 413


async def test_corrupt_gzip_is_400(stack: Any) -> None:
    """A body that claims gzip but is not is a clear 400."""
    url, _, session = stack
    async with session.post(f"{url}/logs", data=b"\x1f\x8b\x08garbage", headers=GZIP_NDJSON) as resp:
        assert resp.status == 400


async def test_batch_partial_accept(stack: Any) -> None:
    """Valid entries of a batch are stored even when others are not; rejects carry index and reason."""
    url, app, session = stack
    body = (
        b'{"level":"info","message":"ok0","service":"svc"}\n'
        b'{"level":"loud","message":"bad1","service":"svc"}\n'
        b"\n"
        b'{"level":"warn","message":"ok2","service":"svc"}\n'
        b"not json\n"
    )
    async with session.post(f"{url}/logs", data=gzip.compress(body), headers=GZIP_NDJSON) as resp:
        assert resp.status == 202
        result = await resp.json()
    assert result["accepted"] == 2
    assert [r["index"] for r in result["rejected"]] == [1, 3]
    assert result["rejected"][0]["error"].startswith("level: ")
    await wait_for(lambda: count_rows(app))
    rows = await query_rows(app, "SELECT message FROM logs ORDER BY message")
    assert [r["message"] for r in rows] == ["ok0", "ok2"]


async def test_json_array_batch_partial_accept(stack: Any) -> None:
    """POST /logs also takes a JSON array, with the same per-entry accept/reject."""
    url, app, session = stack
    entries = [
        {"level": "error", "message": "a", "service": "s"},
        {"level": "error"},
        {"level": "debug", "message": "b", "service": "s", "attributes": {"n": 5, "ok": True, "f": 1.5}},
    ]
    async with session.post(f"{url}/logs", json=entries) as resp:
        assert resp.status == 202
        result = await resp.json()
    assert result["accepted"] == 2
    assert result["rejected"][0]["index"] == 1 and "message: " in result["rejected"][0]["error"]
    await wait_for(lambda: count_rows(app))
    [row] = await query_rows(app, "SELECT attributes FROM logs WHERE message = 'b'")
    assert row["attributes"] == {"n": "5", "ok": "true", "f": "1.5"}


async def test_batch_with_no_valid_entry_is_400(stack: Any) -> None:
    """A batch where nothing is valid, or that is empty, is 400 and lists the rejects."""
    url, _, session = stack
    async with session.post(f"{url}/logs", data=b'{"level":"x"}\n{}\n', headers=NDJSON) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["accepted"] == 0 and len(body["rejected"]) == 2
    async with session.post(f"{url}/logs", data=b"\n\n", headers=NDJSON) as resp:
        assert resp.status == 400


async def test_invalid_batch_id_header_is_400(stack: Any) -> None:
    """X-Oglog-Batch-Id must be a short safe token (it becomes the JetStream Nats-Msg-Id)."""
    url, _, session = stack
    headers = {**NDJSON, _wire.BATCH_ID_HEADER: "has spaces and 'quotes'"}
    async with session.post(f"{url}/logs", data=lines(1), headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["details"][0]["field"] == _wire.BATCH_ID_HEADER


async def test_ingest_metrics_count_requests_and_entries(stack: Any) -> None:
    """GET /metrics shows requests by route/status and accepted/rejected entries."""
    url, _, session = stack
    async with session.post(f"{url}/logs", data=lines(3) + b"{}\n", headers=NDJSON) as resp:
        assert resp.status == 202
    async with session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    assert 'oglog_http_requests_total{route="/logs",status="202"} 1.0' in text
    assert 'oglog_entries_accepted_total{route="/logs"} 3.0' in text
    assert 'oglog_entries_rejected_total{reason="invalid"} 1.0' in text
