"""Requests aiohttp's parser refuses before any route runs (over-long request line or header, too many
headers, bytes that are not HTTP) get the same problem+json as every other error: status, field, reason,
nothing the client sent quoted back, the connection closed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from oglogstream.stack.auth.redact import MAX_REASON_CHARS
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


#: Request targets aiohttp refuses as invalid URLs, whose exception message is the target itself.
BAD_TARGETS = {
    "query-secret": "http://[::1/reset?code=SECRET&otp=998877",
    "key-in-host": "http://[::1ogl_12345678_SECRET/x",
    "long-target": "http://[::1/" + "SECRET" * 1_300,
}


@pytest.mark.parametrize("target", list(BAD_TARGETS.values()), ids=list(BAD_TARGETS))
async def test_refusals_name_the_kind_never_request_bytes(
    base: str, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An invalid URL (aiohttp's message is the raw target): the answer and the one log line name the kind
    of refusal and the field, hold no byte of the target, and stay short."""
    caplog.set_level(logging.INFO)
    status, headers, body = await raw_answer(base, HEAD.format(target=target, headers="").encode())
    problem = assert_problem(status, headers, body, "Invalid URL in the request target")
    assert len(problem["reason"]) <= MAX_REASON_CHARS
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("aiohttp")]
    assert lines and all("SECRET" not in line and "998877" not in line for line in lines), lines
    assert max(map(len, lines)) < 300, lines
    for text in (body.decode(), *lines):
        assert "SECRET" not in text and "998877" not in text and "ogl_" not in text


async def test_an_over_long_line_is_named_without_its_bytes(
    base: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An over-long header: "Got more than 8190 bytes when reading", not "... reading: bytearray(b'...'"."""
    caplog.set_level(logging.INFO)
    status, headers, body = await raw_answer(
        base, HEAD.format(target="/health", headers=f"Cookie: sid={SECRET}{'A' * LINE_LIMIT}\r\n").encode())
    problem = assert_problem(status, headers, body, f"more than {LINE_LIMIT} bytes")
    assert problem["reason"] == f"Got more than {LINE_LIMIT} bytes when reading"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("aiohttp")]
    assert lines and all("bytearray" not in line and SECRET[:12] not in line for line in lines), lines
