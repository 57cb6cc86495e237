"""Requests aiohttp's parser refuses before any route runs (over-long request line or header, too many
headers, bytes that are not HTTP) get the same problem+json as every other error: status, field, reason,
nothing the client sent quoted back, the connection closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.boundary import PROBLEM_CONTENT_TYPE

from .helpers import running_app
from .test_http_boundary import PROBLEM_KEYS

#: aiohttp's parser limits (bytes per request line or header line, header count).
LINE_LIMIT = 8190
MAX_HEADERS = 128
SECRET = "Zm9vOmJhcg" + "q7Xk2Lm9Pw4Rt8Yv3Bn6"


@pytest.fixture
async def base(nats_server: Any) -> AsyncIterator[str]:
    config = StackConfig(roles=("ingest",), nats_url=nats_server.url)
    async with running_app(config) as url:
        yield url


async def raw_answer(url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers and body the server answers before it closes (10 s bound)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def assert_problem(status: int, headers: dict[str, str], body: bytes, reason_part: str) -> dict[str, Any]:
    assert status == 400, body
    assert headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    # raw_answer read until the server closed: the connection is not kept for another request
    problem: dict[str, Any] = json.loads(body)
    assert set(problem) >= PROBLEM_KEYS and problem["status"] == 400
    assert problem["field"] == "request" and reason_part in problem["reason"], problem
    assert problem["detail"] == f"request: {problem['reason']}"
    assert SECRET[:12] not in body.decode() and "AAAA" not in body.decode()
    return problem


HEAD = "GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"


@pytest.mark.parametrize(
    ("request_head", "reason_part"),
    [
        (HEAD.format(target="/health?q=" + "A" * LINE_LIMIT, headers=""), f"more than {LINE_LIMIT} bytes"),
        (HEAD.format(target="/log", headers=f"Cookie: sid={SECRET}{'A' * LINE_LIMIT}\r\n"),
         f"more than {LINE_LIMIT} bytes"),
        (HEAD.format(target="/health", headers=f"X-{'A' * LINE_LIMIT}: v\r\n"),
         f"more than {LINE_LIMIT} bytes"),
        (HEAD.format(target="/health", headers="".join(f"X-H{i}: v\r\n" for i in range(MAX_HEADERS + 1))),
         "many headers"),
        (f"G\x00T /health HTTP/1.1\r\nAuthorization: Bearer {SECRET}\r\n\r\n", ""),
        ("GET /health HTTP/1.1\r\nBad Header Line\r\n\r\n", ""),
    ],
    ids=["long-target", "long-header-value", "long-header-name", "too-many-headers", "bad-method",
         "bad-header"],
)
async def test_parser_refusals_are_problem_json(base: str, request_head: str, reason_part: str) -> None:
    """Each kind of head aiohttp refuses: 400 problem+json naming the parser's reason, closed, no echo."""
    status, headers, body = await raw_answer(base, request_head.encode("latin-1"))
    assert_problem(status, headers, body, reason_part)


async def test_heads_within_the_limits_are_served(base: str) -> None:
    """At the limits (a header value of 8,190 bytes, 100 headers) the request reaches its route."""
    many = "".join(f"X-H{i}: v\r\n" for i in range(100))
    wide = f"X-Wide: {'v' * LINE_LIMIT}\r\nConnection: close\r\n"
    status, _, body = await raw_answer(base, HEAD.format(target="/health", headers=many + wide).encode())
    assert status == 200 and json.loads(body)["status"] == "ok"
