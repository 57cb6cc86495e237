"""Dead letters through the API and `oglog dead-letters`, on a running stack with its defaults: a dead
letter can be discarded (one by DELETE, several at once), a replay of a still-bad message keeps its original
message id, the gauge follows, and hostile request bodies (deep nesting, oversize, a client gone) are 4xx,
never 500."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.resources import METRICS
from oglogstream.stack.processing.deadletter import MAX_REQUEST_BYTES
from oglogstream.stack.processing.process import PROCESSOR
from oglogstream.stack.server import cli, cli_deadletters

from .helpers import running_app, wait_for
from .test_process_isolation import publish_rows, row


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, web.Application]]:
    config = StackConfig(nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)  # every role, defaults
    app = create_app(config)
    async with running_app(config, app=app) as url:
        yield url, app


async def _dead(url: str, session: aiohttp.ClientSession, n: int) -> list[dict[str, Any]]:
    """The dead letters once there are exactly n of them."""

    async def page() -> tuple[list[dict[str, Any]]] | None:
        async with session.get(f"{url}/api/dead-letters") as resp:
            items: list[dict[str, Any]] = (await resp.json())["dead_letters"]
        return (items,) if len(items) == n else None

    found: tuple[list[dict[str, Any]]] = await wait_for(page)
    return found[0]


async def _poison(app: web.Application, msg_id: str) -> None:
    """A message ClickHouse refuses for good: pid is not a number."""
    await publish_rows(app[PROCESSOR].broker, msg_id, [row(msg_id, pid="not a number")])


def _gauge(app: web.Application) -> float:
    return float(app[METRICS].dead_letters._value.get())


async def test_discard_one_and_several_and_the_gauge_follows(stack: Any) -> None:
    """DELETE removes one dead letter (404 the second time, 400 for a non-number); discard removes several
    and names the sequences it could not find."""
    url, app = stack
    for k in range(3):
        await _poison(app, f"bad{k}")
    async with aiohttp.ClientSession() as session:
        first, second, third = await _dead(url, session, 3)
        async with session.delete(f"{url}/api/dead-letters/{first['seq']}") as resp:
            assert resp.status == 200 and await resp.json() == {"discarded": [first["seq"]], "failed": []}
        assert _gauge(app) == 2
        async with session.delete(f"{url}/api/dead-letters/{first['seq']}") as resp:
            assert resp.status == 404 and (await resp.json())["field"] == "seq"
        async with session.delete(f"{url}/api/dead-letters/x1") as resp:
            assert resp.status == 400 and (await resp.json())["field"] == "seq"
        seqs = [second["seq"], third["seq"], 999]
        async with session.post(f"{url}/api/dead-letters/discard", json={"seqs": seqs}) as resp:
            assert resp.status == 200
            assert await resp.json() == {
                "discarded": seqs[:2], "failed": [{"seq": 999, "error": "no such dead letter"}]
            }
        async with session.post(f"{url}/api/dead-letters/discard", json={"all": True}) as resp:
            assert resp.status == 400  # discarding everything blindly is not offered
        await _dead(url, session, 0)
    assert _gauge(app) == 0


async def test_replay_of_a_still_bad_message_keeps_its_original_id(stack: Any) -> None:
    """Replayed twice and refused each time: the newest dead letter still names message "cursed"."""
    url, app = stack
    await _poison(app, "cursed")
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            [dead] = await _dead(url, session, 1)
            assert dead["original_msg_id"] == "cursed"
            async with session.post(f"{url}/api/dead-letters/replay", json={"seqs": [dead["seq"]]}) as resp:
                assert (await resp.json())["replayed"] == [dead["seq"]]
            await wait_for(lambda d=dead: _replaced(url, session, d["seq"]))
        [dead] = await _dead(url, session, 1)
        assert dead["original_msg_id"] == "cursed"


async def _replaced(url: str, session: aiohttp.ClientSession, old_seq: int) -> bool:
    async with session.get(f"{url}/api/dead-letters") as resp:
        items = (await resp.json())["dead_letters"]
    return len(items) == 1 and items[0]["seq"] != old_seq


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"[" * 60_000, 400, "body"),
        (b'{"seqs": ' + b"[" * 60_000, 400, "body"),
        (b"{" * 50_000, 400, "body"),
        (b'{"seqs": [' + b"1," * MAX_REQUEST_BYTES + b"1]}", 413, "body"),
        (b'{"seqs": [1.5]}', 400, "seqs"),
        (b"", 400, "body"),
    ],
)
async def test_hostile_replay_and_discard_bodies_are_client_errors(
    stack: Any, body: bytes, status: int, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Deep nesting, oversize and wrong shapes: the status and field named, nothing logged as an error."""
    url, _ = stack
    with caplog.at_level(logging.ERROR):
        async with aiohttp.ClientSession() as session:
            for route in ("replay", "discard"):
                async with session.post(
                    f"{url}/api/dead-letters/{route}", data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    assert resp.status == status, await resp.text()
                    assert (await resp.json())["field"] == field
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_client_gone_mid_replay_body_is_not_a_server_error(
    stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A client hanging up halfway through its replay body: no 500, nothing logged as an error."""
    url, _ = stack
    host, port = url.removeprefix("http://").split(":")
    with caplog.at_level(logging.ERROR):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"POST /api/dead-letters/replay HTTP/1.1\r\nHost: {host}:{port}\r\n"
            'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"seqs": ['.encode()
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _oglog(*args: str) -> tuple[int, str]:
    """`oglog dead-letters ARGS...`: the exit status and what it printed."""
    out = io.StringIO()
    status = cli_deadletters.run(cli.build_parser().parse_args(["dead-letters", *args]), out)
    return status, out.getvalue()


async def test_cli_lists_with_a_header_discards_and_says_nothing_to_replay(stack: Any) -> None:
    """`list` prints a header line over the rows, `discard SEQ` empties the stream, and `replay --all` with
    nothing waiting says so."""
    url, app = stack
    await _poison(app, "clibad")
    async with aiohttp.ClientSession() as session:
        [dead] = await _dead(url, session, 1)
    status, out = await asyncio.to_thread(_oglog, "list", "--url", url)
    lines = out.splitlines()
    assert status == 0 and lines[0] == "1 dead letter(s)"
    assert lines[1].split()[:4] == ["SEQ", "TIME", "REASON", "ROWS"]
    assert lines[2].split()[0] == str(dead["seq"]) and "clibad" in lines[2]
    status, out = await asyncio.to_thread(_oglog, "discard", str(dead["seq"]), "999", "--url", url)
    assert status == 3 and out.splitlines() == [
        f"discarded 1: {dead['seq']}", "not discarded 999: no such dead letter"
    ]
    status, out = await asyncio.to_thread(_oglog, "replay", "--all", "--url", url)
    assert status == 0 and out.strip() == "nothing to replay: no dead letters are waiting"
    status, out = await asyncio.to_thread(_oglog, "list", "--url", url)
    assert out.strip() == "0 dead letter(s)"
    assert json.loads((await asyncio.to_thread(_oglog, "list", "--json", "--url", url))[1])["total"] == 0


def test_discard_needs_the_admin_scope() -> None:
    """With auth on, deleting dead letters is an admin action like replay; listing stays a query."""
    from oglogstream.stack.auth.middleware import required_scope

    assert required_scope("/api/dead-letters/{seq}") == "admin"
    assert required_scope("/api/dead-letters/discard") == "admin"
    assert required_scope("/api/dead-letters") == "query"


async def test_trickled_replay_body_is_cut(stack: Any) -> None:
    """A replay body sent a byte a second is cut with 408 after the shared reader's grace (was never cut)."""
    from oglogstream.stack.http import boundary as http_boundary

    url, _ = stack
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /api/dead-letters/replay HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n".encode()
    )
    loop = asyncio.get_running_loop()
    started, answer = loop.time(), b""
    try:
        while not answer and loop.time() - started < http_boundary.BODY_TIMEOUT + 20:
            try:
                writer.write(b" ")
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(100), 1.0)
            except asyncio.TimeoutError:
                continue
            except ConnectionError:
                break
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
