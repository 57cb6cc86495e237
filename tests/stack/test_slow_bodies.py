"""Slow and silent request bodies: a connection that declares a body and sends nothing holds no in-flight slot
and is cut after BODY_IDLE_TIMEOUT; a body that trickles is cut by the rate floor on the bytes it actually
sent, whatever Content-Length it declares. All with the default settings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream import _wire
from oglogstream.stack.http import boundary as http_boundary
from oglogstream.stack.ingestion.ingest import DEFAULT_MAX_BATCHES_IN_FLIGHT
from oglogstream.stack.ingestion.otlp.receiver import DEFAULT_MAX_IN_FLIGHT

from .helpers import all_roles

DECLARED = 8 * 1024 * 1024  # the largest body a client may declare


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with all_roles(nats_server.url, chdb_dsn) as served:
        yield served


async def _declare(host: str, port: int, route: str, content_type: str, head: bytes = b"") -> tuple[Any, Any]:
    """A connection that declares an 8 MiB body, sends `head` of it and then nothing."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"POST {route} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {DECLARED}\r\n\r\n".encode() + head
    )
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader, within: float) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(200), within)
    except (asyncio.TimeoutError, ConnectionError):
        return b""


@pytest.mark.parametrize("head", [b"", b"[", b"x" * (http_boundary.SLOT_HEAD_BYTES - 1)])
async def test_silent_bodies_hold_no_slot_and_are_cut(stack: Any, head: bytes) -> None:
    """More 8 MiB declarations than there are slots on /logs and /v1/logs, each sending nothing, one byte, or
    just under SLOT_HEAD_BYTES and then stalling: a legitimate batch and export still succeed while they are
    held, and each stalled one gets 408."""
    url, session = stack
    host, port = url.removeprefix("http://").split(":")
    held = [
        await _declare(host, int(port), "/logs", _wire.NDJSON_CONTENT_TYPE, head)
        for _ in range(DEFAULT_MAX_BATCHES_IN_FLIGHT + 16)
    ] + [
        await _declare(host, int(port), "/v1/logs", "application/x-protobuf", head)
        for _ in range(DEFAULT_MAX_IN_FLIGHT + 16)
    ]
    try:
        await asyncio.sleep(0.5)  # every declaration has reached its handler
        body = json.dumps({"level": "info", "message": "legit", "service": "slots"})
        async with session.post(
            f"{url}/logs", data=body, headers={"Content-Type": _wire.NDJSON_CONTENT_TYPE}
        ) as resp:
            assert resp.status == 202, await resp.text()
            assert (await resp.json())["accepted"] == 1
        async with session.post(
            f"{url}/v1/logs", data=b"", headers={"Content-Type": "application/x-protobuf"}
        ) as resp:
            assert resp.status == 200, await resp.text()
        answers = await asyncio.gather(
            *(_answer(reader, http_boundary.BODY_IDLE_TIMEOUT + 10) for reader, _ in held)
        )
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), {a[:40] for a in answers}
    finally:
        for _, writer in held:
            writer.close()


async def test_trickled_body_is_cut_by_the_bytes_received_not_the_declared_size(stack: Any) -> None:
    """A body declaring 8 MiB and sending 1 KiB a second (never idle long enough for BODY_IDLE_TIMEOUT)
    gets 408 once the grace is over, long before 8 MiB at MIN_BODY_RATE would have taken."""
    url, _ = stack
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await _declare(host, int(port), "/logs", _wire.NDJSON_CONTENT_TYPE)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = b""
    try:
        writer.write(b"[")
        while loop.time() - started < http_boundary.BODY_TIMEOUT + 20 and not answer:
            try:
                writer.write(b" " * 1024)
                await writer.drain()
            except ConnectionError:
                break
            answer = await _answer(reader, 1.0)
        answer = answer or await _answer(reader, 2.0)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    grace_and_declared = http_boundary.BODY_TIMEOUT + DECLARED / http_boundary.MIN_BODY_RATE
    assert loop.time() - started < grace_and_declared / 2


@pytest.mark.parametrize(
    ("encoding", "reason"),
    [
        ("identity", f"body must be at most {_wire.MAX_BATCH_BODY_BYTES} bytes"),
        ("gzip", f"body as sent (gzip-compressed) must be at most {_wire.MAX_BATCH_BODY_BYTES} bytes"),
    ],
)
async def test_413_names_bytes_and_which_body(stack: Any, encoding: str, reason: str) -> None:
    """A declared length over the limit: 413 saying the unit and whether the compressed body is meant."""
    url, _ = stack
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /logs HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {_wire.NDJSON_CONTENT_TYPE}\r\n"
        f"Content-Encoding: {encoding}\r\nContent-Length: {_wire.MAX_BATCH_BODY_BYTES + 1}\r\n\r\nx".encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["status"] == 413 and body["reason"] == reason


def test_decompressed_limit_names_bytes() -> None:
    """The inflated-size 413 says it is about the body after gunzip, in bytes."""
    problem = http_boundary.too_large(100, "decompressed body (after gunzip)", "bytes")
    assert problem.reason == "decompressed body (after gunzip) must be at most 100 bytes"
