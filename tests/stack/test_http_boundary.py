"""The HTTP boundary: one problem+json error shape on every route, no internals in a 500, refused bodies
not inflated further, slow or idle clients cut off, and no request stalling the others."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oglogstream import _wire
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http import boundary as http_boundary
from oglogstream.stack.http.app import create_app

from .helpers import running_app, slowest_health

PROBLEM_KEYS = {"type", "title", "status", "detail", "field", "reason", "error", "details"}


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    config = StackConfig(
        roles=("ingest", "process", "query"), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn,
        flush_timeout=0.1,
    )
    app = create_app(config)

    async def boom(request: Any) -> Any:
        raise RuntimeError("secret internals: password=hunter2")

    app.router.add_get("/boom", boom)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        yield url, session


async def problem(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == http_boundary.PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = json.loads(await resp.read())
    assert set(body) >= PROBLEM_KEYS, body
    assert body["status"] == status and body["error"] == body["title"]
    assert body["detail"] == f"{body['field']}: {body['reason']}"
    assert {"field": body["field"], "reason": body["reason"]} in body["details"]
    return body


async def test_every_route_answers_errors_as_problem_json(stack: Any) -> None:
    """Ingestion, query, live tail and unknown paths share the RFC 9457 shape with field and reason."""
    url, session = stack
    async with session.post(f"{url}/log", json={"level": "info", "service": "s"}) as resp:
        assert (await problem(resp, 400))["field"] == "message"
    async with session.post(f"{url}/logs", data=b"x", headers={"Content-Type": "text/plain"}) as resp:
        assert (await problem(resp, 415))["field"] == "Content-Type"
    async with session.get(f"{url}/api/logs", params={"limit": "abc"}) as resp:
        assert (await problem(resp, 400))["field"] == "limit"
    async with session.get(f"{url}/api/stats", params={"bogus": "1"}) as resp:
        await problem(resp, 400)
    async with session.get(f"{url}/ws/live", params={"level": "loud"}) as resp:
        assert (await problem(resp, 400))["field"] == "level"
    async with session.get(f"{url}/no/such/path") as resp:
        await problem(resp, 404)
    async with session.get(f"{url}/log") as resp:
        await problem(resp, 405)
        assert resp.headers["Allow"] == "POST"


async def test_unexpected_exception_is_a_500_problem_without_internals(
    stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown error answers 500 problem+json naming nothing internal, and is logged once on one line."""
    url, session = stack
    with caplog.at_level(logging.ERROR, logger="oglogstream.stack.http.boundary"):
        async with session.get(f"{url}/boom") as resp:
            body = await problem(resp, 500)
    assert "hunter2" not in json.dumps(body) and "RuntimeError" not in json.dumps(body)
    records = [r for r in caplog.records if r.name == "oglogstream.stack.http.boundary"]
    assert len(records) == 1 and "\n" not in records[0].getMessage()
    assert "RuntimeError" in records[0].getMessage() and records[0].exc_info is None


async def _post_quietly(session: aiohttp.ClientSession, url: str, data: Any, headers: dict[str, str]) -> int:
    try:
        async with session.post(url, data=data, headers=headers) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError:  # the server may close while the client still uploads (refused early)
        return 413


async def _chunks(blob: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(blob), size):
        yield blob[start : start + size]


@pytest.mark.parametrize(
    ("path", "content_type", "blob_mib"),
    [
        ("/log", "application/json", 7),
        ("/logs", "application/x-ndjson", 1),
        ("/v1/logs", "application/json", 1),
    ],
)
async def test_gzip_bomb_is_refused_without_stalling_other_requests(
    stack: Any, path: str, content_type: str, blob_mib: int
) -> None:
    """A gzip bomb (sized or chunked) gets 413; /health keeps answering meanwhile and right after."""
    url, session = stack
    member = gzip.compress(b"\0" * (100 * 1024 * 1024), compresslevel=9)  # 100 MiB in ~100 KB
    bomb = member * (blob_mib * 1024 * 1024 // len(member))  # concatenated members are one gzip stream
    headers = {"Content-Type": content_type, "Content-Encoding": "gzip"}
    stop = asyncio.Event()
    probe = asyncio.create_task(slowest_health(session, url, stop))
    for data in (bomb, _chunks(bomb)):  # with Content-Length, then chunked (read and inflated until the cap)
        assert await _post_quietly(session, f"{url}{path}", data, headers) == 413
    stop.set()
    assert await probe < 1.0


async def test_large_requests_do_not_stall_the_event_loop(stack: Any) -> None:
    """While the largest valid batch and the 3-million-entry body are handled, /health answers in < 1 s."""
    url, session = stack
    big = "\n".join(
        json.dumps({"level": "info", "message": "x" * 200, "service": "lag", "attributes": {"k": str(i)}})
        for i in range(_wire.MAX_BATCH_ENTRIES)
    ).encode()
    bomb = gzip.compress(b"[" + b",".join([b"{}"] * 3_000_000) + b"]")
    stop = asyncio.Event()
    probe = asyncio.create_task(slowest_health(session, url, stop))
    await asyncio.sleep(0.05)
    statuses = await asyncio.gather(
        _post_quietly(session, f"{url}/logs", big, {"Content-Type": "application/x-ndjson"}),
        _post_quietly(
            session, f"{url}/logs", bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        ),
    )
    stop.set()
    worst = await probe
    assert statuses == [202, 413]
    assert worst < 1.0, f"/health took {worst:.3f} s"


async def _closed_after(
    host: str, port: int, send: list[tuple[float, bytes]], limit: float
) -> tuple[float, bytes]:
    """Open a raw connection, send each (delay, data), then read until the server closes (or `limit`)."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    received = b""

    async def trickle() -> None:
        for delay, data in send:
            await asyncio.sleep(delay)
            if writer.is_closing():
                return
            writer.write(data)
            try:
                await writer.drain()
            except ConnectionError:
                return

    feeder = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(limit):
            while chunk := await reader.read(4096):
                received += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        feeder.cancel()
        writer.close()
    return time.monotonic() - started, received


async def test_idle_half_sent_and_trickled_requests_are_cut_off(stack: Any) -> None:
    """An idle connection and half-sent headers are closed after IDLE_TIMEOUT; a body sent at 1 byte/s gets
    408 after BODY_TIMEOUT. All three run at once, with the default settings."""
    url, _ = stack
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /log HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Content-Length: 500\r\n\r\n"
    )
    limit = http_boundary.IDLE_TIMEOUT + 10
    idle, half, trickle = await asyncio.gather(
        _closed_after(host, int(port), [], limit),
        _closed_after(host, int(port), [(0, b"POST /log HTTP/1.1\r\nHost: x\r\n")]
                      + [(1.0, b"X-Slow: 1\r\n")] * 60, limit),
        _closed_after(host, int(port), [(0, head.encode())] + [(1.0, b" ")] * 60, limit),
    )
    for name, (elapsed, _) in (("idle", idle), ("half-sent headers", half)):
        assert elapsed < http_boundary.IDLE_TIMEOUT + 5, f"{name} connection open for {elapsed:.1f} s"
    elapsed, answer = trickle
    assert elapsed < http_boundary.BODY_TIMEOUT + 5, f"trickled body open {elapsed:.1f} s: {answer[:300]!r}"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=3000).map(lambda b: b * 800),
    members=st.integers(1, 3),
    cut=st.sampled_from([1, 13, 4096, 65536, 1 << 30]),
)
def test_gzip_reader_inflates_any_split_exactly(data: bytes, members: int, cut: int) -> None:
    """Whatever the chunking, capped zlib steps and concatenated members give back the exact body."""
    blob = gzip.compress(data) * members

    async def inflate() -> bytes:
        reader = http_boundary._Gunzip(len(data) * members + 1)
        for start in range(0, len(blob), cut):
            await reader.feed(blob[start : start + cut])
        return reader.finish()

    assert asyncio.run(inflate()) == data * members


async def test_client_gone_mid_body_is_not_a_server_error(
    stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A client closing its connection halfway through a body is a client fault: no 500, nothing logged."""
    url, session = stack
    host, port = url.removeprefix("http://").split(":")
    with caplog.at_level(logging.ERROR, logger="oglogstream.stack.http.boundary"):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            b'Content-Length: 1000\r\n\r\n{"level":"info",'
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.3)
        async with session.get(f"{url}/health") as resp:
            assert resp.status == 200
    assert not [r for r in caplog.records if r.name == "oglogstream.stack.http.boundary"]
