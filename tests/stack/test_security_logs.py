"""Secrets stay out of what the server writes: a key, an Authorization/Cookie header or a query-string secret
sent in well-formed and malformed requests appears in no log line (captured at DEBUG from every logger), no
error body and no metric; a malformed request costs one log line, not a traceback with raw headers."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.auth.redact import REDACTED, redact
from oglogstream.stack.config import StackConfig
from oglogstream.stack.server.supervisor import print_urls

from .auth_helpers import AuthStack, auth_stack

pytestmark = pytest.mark.timeout(120)

SECRETS = [f"s3cr3t{n}-{'x' * 24}" for n in range(8)]


class Capture(logging.Handler):
    """Every formatted line (tracebacks included) logged anywhere while installed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old)


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str, tmp_path: Path) -> AsyncIterator[AuthStack]:
    async with auth_stack(nats_server.url, chdb_dsn, tmp_path) as running_stack:
        yield running_stack


async def raw_request(base: str, data: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


async def test_secrets_appear_in_no_log_line_body_or_metric(stack: AuthStack, captured: Capture) -> None:
    """Real keys (valid and not) and secrets in headers, query strings and malformed requests: none of them
    in any captured log line, answer body or /metrics; each malformed request logs one line."""
    s = SECRETS
    bodies: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        requests: list[tuple[str, str, dict[str, str]]] = [
            ("GET", "/api/stats", {"Authorization": f"Bearer {s[0]}"}),
            ("GET", "/api/stats", {"X-API-Key": s[1], "Cookie": f"session={s[2]}"}),
            ("GET", f"/api/logs?api_key={s[3]}", stack.headers("query")),
            ("GET", f"/api/logs?level=nope&token={s[3]}", stack.headers("query")),
            ("POST", "/log", {**stack.headers("query")}),  # a real key, wrong scope
            ("GET", "/ws/live", {"Sec-WebSocket-Protocol": f"oglog.v1, oglog.key.{s[4]}"}),
            ("GET", "/api/stats", {"Authorization": f"Basic {s[5]}"}),
        ]
        for method, path, headers in requests:
            async with session.request(method, stack.base + path, headers=headers) as resp:
                bodies.append(await resp.read())
        before = len(captured.lines)
        bodies.append(
            await raw_request(
                stack.base,
                f"GET /api/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s[6]}\x01\r\n\r\n".encode(),
            )
        )
        bodies.append(
            await raw_request(
                stack.base, f"GET /api/logs?token={s[7]}\x7f HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
        )
        malformed_lines = captured.lines[before:]
        async with session.get(stack.base + "/metrics", headers=stack.headers("query")) as resp:
            bodies.append(await resp.read())
    # Also an unexpected error whose text carries a key, as the error middleware would log it.
    try:
        raise RuntimeError(f"upstream said: Authorization: Bearer {stack.keys['admin']}")
    except RuntimeError:
        logging.getLogger("oglogstream.stack.http.boundary").exception("GET /x: unexpected RuntimeError")

    text = "\n".join(captured.lines)
    assert captured.lines and REDACTED in text
    for secret in [*s, *stack.keys.values()]:
        assert secret not in text, f"a secret is in the server's log:\n{text}"
        assert not any(secret.encode() in body for body in bodies), secret
    bad = [line for line in malformed_lines if "Error handling request" in line]
    assert len(bad) == 2 and all("\n" not in line and "Traceback" not in line for line in bad), bad


def test_redaction_shapes() -> None:
    """Each shape of secret the filter knows is replaced, and ordinary text is left alone."""
    assert redact("Authorization: Bearer abc") == f"Authorization: {REDACTED}"
    assert redact("{'X-API-Key': 'k1'}") == f"{{'X-API-Key': '{REDACTED}'}}"
    assert redact("GET /a?level=info&access_token=t&q=x") == f"GET /a?level=info&access_token={REDACTED}&q=x"
    assert redact("key ogl_0123abcd_AbC-_xyzxyzxyzxyzxyz") == f"key {REDACTED}"
    assert redact("GET /api/logs?level=info 200") == "GET /api/logs?level=info 200"


@pytest.mark.parametrize(
    "header",
    [
        "Cookie: sid={secret}",
        "Authorization: Basic {secret}",
        "Authorization: {secret}",
        "X-Custom-Token: {secret}",
    ],
)
async def test_an_over_long_header_leaks_none_of_its_value(
    stack: AuthStack, captured: Capture, header: str
) -> None:
    """A header over aiohttp's 8190-byte limit is quoted by the parser from its value's first bytes, without
    its name: nothing it quoted reaches the log line or the 400 body, only the parser's leading words."""
    secret = "Zm9vOmJhcg" + SECRETS[0]
    line = header.format(secret=secret + "A" * 9000)
    before = len(captured.lines)
    body = await raw_request(stack.base, f"GET /api/stats HTTP/1.1\r\nHost: x\r\n{line}\r\n\r\n".encode())
    lines = captured.lines[before:]
    assert body.split(b" ")[1] == b"400" and b"Got more than 8190 bytes when reading" in body
    assert secret[:12].encode() not in body and b"AAAA" not in body
    bad = [x for x in lines if "Error handling request" in x]
    assert len(bad) == 1 and "Got more than 8190 bytes when reading" in bad[0], lines
    assert not any(secret[:12] in x or "AAAA" in x for x in lines), lines


async def test_error_bodies_never_echo_a_key(stack: AuthStack) -> None:
    """A key pasted into a query parameter (`level=<admin key>`, an environment key, a long value) is named
    by its length in the 400, never echoed; a short bad value is still quoted back to help the user."""
    async with aiohttp.ClientSession() as session:
        for value in (stack.keys["admin"], "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==", "x" * 200):
            url = stack.base + "/api/logs"
            async with session.get(url, params={"level": value}, headers=stack.headers("query")) as resp:
                assert resp.status == 400
                text = await resp.text()
            assert value not in text and f"<{len(value)} characters>" in text, text
        async with session.get(
            stack.base + "/api/logs", params={"level": "loud"}, headers=stack.headers("query")
        ) as resp:
            assert resp.status == 400 and "'loud'" in (await resp.json())["reason"]


def test_banner_and_log_lines_mask_url_credentials() -> None:
    """`oglog stack up`'s banner and every filtered log line show a DSN's or NATS URL's host, never its
    userinfo (password, token)."""
    config = StackConfig(
        nats_url="nats://oglog:NATSPASS@nats:4222,nats://NATSTOKEN@nats2:4222",
        clickhouse_dsn="http://oglog:PASSWORD@clickhouse:8123/oglog",
    )
    out = io.StringIO()
    print_urls(config, out)
    banner = out.getvalue()
    assert "clickhouse:8123/oglog" in banner and "nats2:4222" in banner
    assert not any(s in banner for s in ("PASSWORD", "NATSPASS", "NATSTOKEN", "oglog:")), banner
    line = "nats: disconnected from nats://u:p4ss@h:4222"
    assert redact(line) == f"nats: disconnected from nats://{REDACTED}@h:4222"
    assert redact("see https://docs.example/a@b") == "see https://docs.example/a@b"
