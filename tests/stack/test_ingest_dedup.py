"""Deduplication only ever drops a true retry: no client batch id can claim another request's message or
entry ids (server-made ids, split parts, reused batch ids with another body), so every 202 is stored."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream import _wire
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.ingestion import dedup, schema

from .helpers import count_rows, running_app, wait_for

NDJSON = {"Content-Type": "application/x-ndjson"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, Any, aiohttp.ClientSession]]:
    config = StackConfig(
        roles=("ingest", "process"), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn, flush_timeout=0.1
    )
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        yield url, app, session


def line(message: str, service: str = "dedup") -> str:
    return json.dumps({"level": "info", "message": message, "service": service})


async def _at_least(app: Any, n: int, where: str = "1") -> bool:
    return await count_rows(app, where) >= n


async def post(session: aiohttp.ClientSession, url: str, body: str, **headers: str) -> dict[str, Any]:
    route = "/log" if headers.pop("single", None) else "/logs"
    content_type = JSON if route == "/log" else NDJSON
    async with session.post(f"{url}{route}", data=body.encode(), headers={**content_type, **headers}) as r:
        assert r.status == 202, await r.text()
        answer: dict[str, Any] = await r.json()
        return answer


async def test_batch_ids_guessed_from_answers_do_not_swallow_other_requests(stack: Any) -> None:
    """Issue example F2a: a client squatting batch ids built from a /log answer's id (the old prefix +
    counter scheme and every plausible server form) does not make later id-less requests vanish."""
    url, app, session = stack
    observed = (await post(session, url, line("probe"), single="1"))["id"]
    stem = observed.rsplit("-", 1)[0]
    assert re.fullmatch(r"[0-9a-f]{32}", stem), observed  # random 128 bits, nothing to count up from
    squats = [stem, f"s:{stem}", f"{stem}-0", f"{stem}.1of2", "s"]
    squats += [f"{stem[:16]}{k:x}" for k in range(1, 40)]  # the old per-process prefix + counter
    for squat in squats:
        await post(session, url, line("squat", "atk"), **{_wire.BATCH_ID_HEADER: squat})
    for k in range(10):
        await post(session, url, line(f"victim{k}"), single="1")
        await post(session, url, line(f"victimb{k}"))
    await wait_for(lambda: _at_least(app, 21, "service = 'dedup'"))
    await asyncio.sleep(0.5)
    assert await count_rows(app, "service = 'dedup'") == 21
    assert await count_rows(app, "service = 'atk'") == len(squats)


async def test_a_batch_id_naming_a_split_part_does_not_swallow_that_part(stack: Any) -> None:
    """Issue example F2b: batch id `S.1of2`, then a 1.6 MB batch under `S` (split in two parts): all
    1500 entries of the big batch are stored (the issue saw 732)."""
    url, app, session = stack
    await post(session, url, line("first", "split-first"), **{_wire.BATCH_ID_HEADER: "S.1of2"})
    body = "\n".join(line(f"n{k} " + "x" * 1000, "split") for k in range(1500))
    assert len(body) > 1_500_000
    assert (await post(session, url, body, **{_wire.BATCH_ID_HEADER: "S"}))["accepted"] == 1500
    await wait_for(lambda: _at_least(app, 1500, "service = 'split'"))
    await asyncio.sleep(0.5)
    assert await count_rows(app, "service = 'split'") == 1500
    assert await count_rows(app, "service = 'split-first'") == 1


@pytest.mark.parametrize("single", [True, False], ids=["log", "logs"])
async def test_a_reused_batch_id_with_another_body_is_stored(stack: Any, single: bool) -> None:
    """The same X-Oglog-Batch-Id with a different body is new data, not a retry: both stored; the same
    body again is a retry: stored once."""
    url, app, session = stack
    extra = {"single": "1"} if single else {}
    for message in ("one", "two", "two"):
        await post(session, url, line(message), **{_wire.BATCH_ID_HEADER: "reused"}, **extra)
    await wait_for(lambda: _at_least(app, 2))
    await asyncio.sleep(0.5)
    assert await count_rows(app) == 2


def test_identities_stay_in_their_namespaces() -> None:
    """Client message ids start `c:`, server ones `s:`, OTLP ones `o:`; parts use `/`, which no client
    batch id may contain; derived entry ids stay valid ids."""
    client = dedup.client_identity("S", b"body")
    server = dedup.server_identity()
    assert client.message_id.startswith("c:S.") and server.message_id.startswith("s:")
    assert dedup.otlp_message_id("otlp-ab").startswith("o:")
    assert dedup.part_id(client.message_id, 1, 2) == f"{client.message_id}/1of2"
    assert not re.match(schema.ID_PATTERN, dedup.part_id("S", 1, 2))
    assert client != dedup.client_identity("S", b"other body")
    assert client == dedup.client_identity("S", b"body")
    assert server.stem != dedup.server_identity().stem
    for stem in (client.stem, server.stem, dedup.client_identity("b" * 64, b"x").stem):
        assert re.match(schema.ID_PATTERN, schema.derived_id(stem, 9999))


def _day_at_11(days_ago: int) -> str:
    """11:00 UTC `days_ago` days before today: inside the accepted window whatever the day the suite runs."""
    now = dt.datetime.now(dt.timezone.utc).replace(hour=11, minute=0, second=0, microsecond=0)
    return schema.format_timestamp(now - dt.timedelta(days=days_ago))


def twin(timestamp: str, entry_id: str = "dupid-3") -> str:
    return json.dumps(
        {"id": entry_id, "timestamp": timestamp, "level": "info", "message": "twin", "service": "dupsvc3"}
    )


async def _skipped(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/metrics") as r:
        found = re.search(r'^oglog_duplicates_skipped_total\{stage="storage"\} (\S+)$', await r.text(), re.M)
    return found.group(1) if found else "0"


@pytest.mark.parametrize("timing", ["coalesced", "apart"])
async def test_the_same_id_at_another_timestamp_is_stored_whatever_the_timing(
    stack: Any, timing: str
) -> None:
    """Attacker finding: two /log posts with the same id and timestamps a day apart are two entries, both
    stored (the quick pair, coalesced into one message, used to keep one), as when sent after the first
    is stored."""
    url, app, session = stack
    first, second = twin(_day_at_11(2)), twin(_day_at_11(1))
    if timing == "coalesced":
        await asyncio.gather(*(post(session, url, body, single="1") for body in (first, second)))
    else:
        await post(session, url, first, single="1")
        await wait_for(lambda: _at_least(app, 1, "service = 'dupsvc3'"))
        await post(session, url, second, single="1")
    await wait_for(lambda: _at_least(app, 2, "service = 'dupsvc3'"))
    await asyncio.sleep(0.5)
    assert await count_rows(app, "service = 'dupsvc3'") == 2
    assert await _skipped(session, url) in ("0", "0.0")


@pytest.mark.parametrize("route", ["log", "logs"])
async def test_a_retry_sent_twice_at_once_is_stored_once(stack: Any, route: str) -> None:
    """The same (id, timestamp) posted twice at once (two /log requests coalesced, or two /logs requests,
    two messages flushed in one batch), then once more after it is stored: one row."""
    url, app, session = stack
    body = twin(_day_at_11(1), "retry-1")
    extra = {"single": "1"} if route == "log" else {}
    await asyncio.gather(*(post(session, url, body, **extra) for _ in range(2)))
    await wait_for(lambda: _at_least(app, 1, "service = 'dupsvc3'"))
    await post(session, url, body, **extra)
    await wait_for(lambda: _skipped_at_least(session, url, 2))
    assert await count_rows(app, "service = 'dupsvc3'") == 1


async def _skipped_at_least(session: aiohttp.ClientSession, url: str, n: int) -> bool:
    return float(await _skipped(session, url)) >= n
