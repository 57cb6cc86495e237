"""GET /api/dead-letters with hostile payloads, on a running stack with its defaults: a deeply nested or
non-finite message is listed (as text, or with NaN/Infinity as their text) and every dead letter stays
replayable; a page is bounded by PAGE_BYTES as well as by count and pages on through next_after; a message
larger than the page is shown truncated with its size, never dropped from the listing."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from oglogstream.stack.broker import messages
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.broker.natsd import find_nats_server, free_port
from oglogstream.stack.config import DEAD_LETTER_SUBJECT, StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.processing.deadletter import (
    MAX_PAGE,
    PAGE_BYTES,
    PREVIEW_BYTES,
    list_dead_letters,
    publish_dead_letter,
)
from oglogstream.stack.processing.deadletter_view import HEADER_CHARS, message_view
from oglogstream.stack.processing.process import PROCESSOR

from .helpers import running_app, wait_for
from .test_deadletter_api import _oglog
from .test_process_isolation import row

DEEP = 5000
NESTED = b'[{"id":"deep","attributes":{"a":' + b"[" * DEEP + b"]" * DEEP + b"}}]"


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, web.Application]]:
    config = StackConfig(nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)  # every role, defaults
    app = create_app(config)
    async with running_app(config, app=app) as url:
        yield url, app


def _strict(text: str) -> Any:
    """`text` as JSON, refusing the NaN/Infinity tokens JSON does not have (json.loads takes them)."""

    def refuse(token: str) -> Any:
        raise AssertionError(f"invalid JSON token {token} in the answer")

    return json.loads(text, parse_constant=refuse)


async def _page(session: aiohttp.ClientSession, url: str, query: str = "") -> tuple[int, str]:
    async with session.get(f"{url}/api/dead-letters{query}") as resp:
        return resp.status, await resp.text()


async def _dead(broker: Broker, seq: int, payload: bytes, rows: int | None = 1) -> None:
    await publish_dead_letter(
        broker, seq=seq, headers={"Nats-Msg-Id": f"m{seq}"}, payload=payload, rows=rows,
        reason="storage", error="refused",
    )


async def test_deep_and_non_finite_messages_are_listed_and_all_replayable(stack: Any) -> None:
    """The issue's deep header-less message (dead-lettered by the processor), rows with NaN, 1e400 and a
    5,000-digit number, a plain one and one whose headers are not numbers: 200 with valid JSON (was a 500
    RecursionError / `"x": NaN`), the deep one as text, non-finite numbers as wire.non_finite_text, and
    `replay --all` replays every one."""
    url, app = stack
    broker = app[PROCESSOR].broker
    await broker.publish(messages.STREAM_SUBJECT, NESTED, {"Nats-Msg-Id": "deep"})
    await _dead(broker, 900, b'[{"id":"n","attributes":{"x":NaN,"y":-Infinity}}]')
    await _dead(broker, 901, b'[{"id":"i","attributes":{"x":1e400}}]')
    await _dead(broker, 902, b'[{"id":"b","attributes":{"x":' + b"7" * 5000 + b"}}]")
    await _dead(broker, 903, json.dumps([row("plain")]).encode())
    odd = {"Nats-Msg-Id": "odd", messages.ORIGINAL_SEQ: "x1", messages.ROWS: "\u00b2", "Oglog-Error": "é"}
    await broker.publish(DEAD_LETTER_SUBJECT, b"[]", odd)  # hand-made: headers that are not numbers
    async with aiohttp.ClientSession() as session:

        async def five() -> list[dict[str, Any]] | None:
            status, text = await _page(session, url)
            assert status == 200, text
            items: list[dict[str, Any]] = _strict(text)["dead_letters"]
            return items if len(items) == 6 else None

        items = await wait_for(five)
    by_seq = {item["original_seq"]: item for item in items}
    deep = next(item for item in items if item["original_msg_id"] == "deep")
    assert deep["message"] == NESTED.decode() and deep["truncated"] is False and deep["bytes"] == len(NESTED)
    assert by_seq[900]["message"] == [{"id": "n", "attributes": {"x": "NaN", "y": "-Infinity"}}]
    assert by_seq[901]["message"] == [{"id": "i", "attributes": {"x": "Infinity"}}]
    assert by_seq[902]["message"] == '[{"id":"b","attributes":{"x":' + "7" * 5000 + "}}]"
    assert by_seq[903]["message"] == [row("plain")]
    assert by_seq[0]["rows"] is None and by_seq[0]["message"] == [] and by_seq[0]["error"] == "é"
    status, out = await asyncio.to_thread(_oglog, "replay", "--all", "--url", url)
    assert status == 0, out
    assert out.splitlines()[0] == f"replayed 6: {' '.join(str(item['seq']) for item in items)}"


async def test_a_page_is_bounded_by_bytes_and_pages_on(stack: Any) -> None:
    """20 dead letters of ~900 KB asked for at the largest limit: each page's messages fit in PAGE_BYTES
    (was one answer of every payload), next_after goes on, and paging lists each one exactly once."""
    url, app = stack
    broker = app[PROCESSOR].broker
    big = json.dumps([row("big", blob="x" * 900_000)]).encode()
    for k in range(20):
        await _dead(broker, 1000 + k, big)
    seen: list[int] = []
    pages = 0
    after = 0
    async with aiohttp.ClientSession() as session:
        while True:
            status, text = await _page(session, url, f"?after={after}&limit={MAX_PAGE}")
            assert status == 200
            page = _strict(text)
            messages_bytes = sum(len(json.dumps(item["message"])) for item in page["dead_letters"])
            assert 0 < messages_bytes <= PAGE_BYTES and len(text) < PAGE_BYTES + 64 * 1024
            assert not any(item["truncated"] for item in page["dead_letters"])
            seen += [item["original_seq"] for item in page["dead_letters"]]
            pages += 1
            if page["next_after"] is None:
                break
            after = page["next_after"]
    assert seen == list(range(1000, 1020)) and pages == 3  # 8 + 8 + 4 of ~0.9 MB each


async def test_headers_count_against_the_page_budget(stack: Any) -> None:
    """The reviewer's 500 dead letters with a 31,000-character `é` error header each made one 93 MB page (only
    payloads were counted): headers are clipped to HEADER_CHARS and counted, pages stay near PAGE_BYTES, and
    paging still lists each dead letter once."""
    url, app = stack
    broker = app[PROCESSOR].broker
    for k in range(300):  # published by hand (a tool, an older release): the stack clips its own errors
        headers = {
            "Nats-Msg-Id": f"h{k}", messages.ORIGINAL_SEQ: str(2000 + k), messages.DEAD_REASON: "storage",
            messages.DEAD_ERROR: "\u00e9" * 31_000,
        }
        await broker.publish(DEAD_LETTER_SUBJECT, b"[]", headers)
    seen: list[int] = []
    after = 0
    async with aiohttp.ClientSession() as session:
        while True:
            status, text = await _page(session, url, f"?after={after}&limit={MAX_PAGE}")
            assert status == 200
            assert len(text) <= PAGE_BYTES + 64 * 1024, len(text)
            page = _strict(text)
            assert all(len(item["error"]) <= HEADER_CHARS for item in page["dead_letters"])
            seen += [item["original_seq"] for item in page["dead_letters"]]
            if page["next_after"] is None:
                break
            after = page["next_after"]
    assert seen == list(range(2000, 2300))


@pytest.fixture
async def big_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A nats-server whose max_payload (16 MB) lets one message exceed PAGE_BYTES, and a Broker on it."""
    conf = tmp_path / "nats.conf"
    conf.write_text("max_payload: 16MB\n")
    port = free_port()
    log = tmp_path / "nats.log"
    proc = subprocess.Popen(
        [find_nats_server(), "--jetstream", "--store_dir", str(tmp_path / "js"), "--addr", "127.0.0.1",
         "--port", str(port), "--config", str(conf), "--log", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    broker = Broker(f"nats://127.0.0.1:{port}")
    try:
        await broker.start(wait=10)
        await broker.ensure_stream()
        yield broker
    finally:
        await broker.close()
        proc.terminate()
        proc.wait(timeout=10)


async def test_a_message_larger_than_the_page_is_shown_truncated(big_broker: Broker) -> None:
    """A 9 MiB dead letter between two small ones: listed as its first PREVIEW_BYTES of text with its size
    and `truncated`, and the next one still follows."""
    if big_broker.max_payload <= PAGE_BYTES:
        pytest.fail(f"the test server's max_payload is {big_broker.max_payload}")
    huge = json.dumps([row("huge", blob="y" * (9 * 1024 * 1024))]).encode()
    await _dead(big_broker, 1, b"[]", rows=0)
    await _dead(big_broker, 2, huge)
    await _dead(big_broker, 3, b"[]", rows=0)
    first, next_after = await list_dead_letters(big_broker)
    second, last = await list_dead_letters(big_broker, after=next_after or 0)
    items = first + second
    assert [item["original_seq"] for item in items] == [1, 2, 3] and last is None
    assert [item["truncated"] for item in items] == [False, True, False]
    assert items[1]["bytes"] == len(huge) and items[1]["message"] == huge[:PREVIEW_BYTES].decode()


@pytest.mark.parametrize(
    ("payload", "shown"),
    [
        (b"[1e400, -1e400, NaN]", ["Infinity", "-Infinity", "NaN"]),
        (b"[" * DEEP + b"]" * DEEP, "[" * DEEP + "]" * DEEP),
        (b"[" + b"9" * 5000 + b"]", "[" + "9" * 5000 + "]"),
        (b"\xff[1]", "\ufffd[1]"),
        (b'"\\ud800"', '"\\ud800"'),
        (b"", ""),
        (b'  [{"a": 1}]  ', [{"a": 1}]),
    ],
)
def test_each_payload_kind_is_json_the_answer_can_carry_or_text(payload: bytes, shown: Any) -> None:
    """Non-finite numbers become their text, and whatever the answer could not carry as JSON (too deep, a
    number too large, invalid UTF-8, a lone surrogate, nothing) is shown as text, never an error."""
    message, size, truncated = message_view(payload)
    assert message == shown and not truncated and size == len(json.dumps(message, allow_nan=False))
