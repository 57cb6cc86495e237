"""GET /api/logs: filters, ordering, paging (offset and cursor), full-text `q`, and parameter errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.config import StackConfig
from oglogstream.stack.query.filters import Cursor

from .query_helpers import insert_rows, make_row, running, utc

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def query_app(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, Any, aiohttp.ClientSession]]:
    """A query-only app on real NATS and chDB, plus a client session."""
    config = StackConfig(roles=("query",), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    async with running(config) as (base, app), aiohttp.ClientSession() as session:
        yield base, app, session


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, Any]:
    async with session.get(url) as response:
        return response.status, await response.json(), response.headers


async def test_newest_first_in_public_shape(query_app: Any) -> None:
    """Entries come newest first, 100 by default, with exactly the public fields."""
    base, app, session = query_app
    await insert_rows(
        app, [make_row(f"r{i:03d}", utc(seconds=i), attributes={"n": str(i)}) for i in range(150)]
    )
    status, body, headers = await get(session, f"{base}/api/logs")
    assert status == 200
    assert [e["id"] for e in body] == [f"r{i:03d}" for i in range(100)]
    assert set(body[0]) == {"id", "timestamp", "level", "message", "service", "attributes"}
    assert body[0]["timestamp"].endswith("Z") and len(body[0]["timestamp"]) == 27
    assert body[0]["attributes"] == {"n": "0"}
    assert "X-Next-Cursor" in headers and 'rel="next"' in headers["Link"]


async def test_level_service_limit_offset_and_time_filters(query_app: Any) -> None:
    """level (one or comma-separated), service (repeatable), limit, offset, from/to all narrow the result."""
    base, app, session = query_app
    levels = ["debug", "info", "warn", "error", "fatal"]
    rows = [
        make_row(f"r{i:02d}", utc(minutes=i), level=levels[i % 5], service=f"s{i % 3}") for i in range(60)
    ]
    await insert_rows(app, rows)
    _, body, _ = await get(session, f"{base}/api/logs?level=error")
    assert {e["level"] for e in body} == {"error"} and len(body) == 12
    _, body, _ = await get(session, f"{base}/api/logs?level=error,FATAL&service=s1")
    assert {(e["level"], e["service"]) for e in body} <= {("error", "s1"), ("fatal", "s1")} and len(body) == 8
    _, body, _ = await get(session, f"{base}/api/logs?service=s1&service=s2&limit=1000")
    assert len(body) == 40
    _, body, headers = await get(session, f"{base}/api/logs?limit=5&offset=10")
    assert [e["id"] for e in body] == [f"r{i:02d}" for i in range(10, 15)]
    frm = (utc(minutes=20.5)).isoformat() + "Z"
    to = (utc(minutes=10.5)).isoformat() + "Z"
    _, body, _ = await get(session, f"{base}/api/logs?from={frm}&to={to}")
    assert [e["id"] for e in body] == [f"r{i:02d}" for i in range(11, 21)]
    _, body, headers = await get(session, f"{base}/api/logs?service=nope")
    assert body == [] and "X-Next-Cursor" not in headers


async def test_order_holds_across_scan_segments(query_app: Any) -> None:
    """Rows seconds, minutes, hours and days old come back in one correct newest-first order."""
    base, app, session = query_app
    ages = {"a": {"seconds": 5}, "b": {"minutes": 40}, "c": {"hours": 3}, "d": {"days": 2}, "e": {"days": 20}}
    await insert_rows(app, [make_row(key, utc(**age)) for key, age in ages.items()])
    _, body, _ = await get(session, f"{base}/api/logs?limit=5")
    assert [e["id"] for e in body] == ["a", "b", "c", "d", "e"]
    _, body, _ = await get(session, f"{base}/api/logs?limit=3")
    assert [e["id"] for e in body] == ["a", "b", "c"]
    seen, url = [], f"{base}/api/logs?limit=1"
    while url:
        async with session.get(url) as response:
            seen += [e["id"] for e in await response.json()]
            nxt = response.headers.get("X-Next-Cursor")
        url = f"{base}/api/logs?limit=1&cursor={nxt}" if nxt else ""
    assert seen == ["a", "b", "c", "d", "e"]


async def test_cursor_pages_are_stable_while_rows_arrive(query_app: Any) -> None:
    """Walking pages by cursor yields every row exactly once while newer rows and same-timestamp ties land."""
    base, app, session = query_app
    tie = utc(seconds=30)
    original = [make_row(f"old{i:03d}", utc(seconds=60 + i)) for i in range(95)]
    original += [make_row(f"tie{i}", tie) for i in range(10)]
    await insert_rows(app, original)
    expected = [f"tie{i}" for i in reversed(range(10))] + [f"old{i:03d}" for i in range(95)]
    seen: list[str] = []
    url = f"{base}/api/logs?limit=7&service=svc"
    page = 0
    while url:
        async with session.get(url) as response:
            assert response.status == 200
            seen += [e["id"] for e in await response.json()]
            cursor = response.headers.get("X-Next-Cursor")
            link = response.headers.get("Link")
        # New arrivals between pages: newer rows, and one more row at the tie timestamp with a larger id.
        await insert_rows(app, [make_row(f"new{page}", utc()), make_row(f"tiz{page}", tie)])
        page += 1
        url = f"{base}{link[1 : link.index('>')]}" if cursor else ""
    # Rows that sort after the current position (tiz* > tie*) never appear; older pages never shift.
    assert seen == expected


async def test_full_text_q_matches_all_words_case_insensitively(query_app: Any) -> None:
    """`q` matches messages containing every word, whole words only, ignoring case (ASCII and beyond)."""
    base, app, session = query_app
    messages = {
        "m1": "Connection TIMEOUT after 5s",
        "m2": "connection refused",
        "m3": "request timed out",
        "m4": "Ärger mit dem Server: timeout",
        "m5": "timeouts are not timeout-free",
    }
    await insert_rows(
        app, [make_row(k, utc(seconds=i), message=m) for i, (k, m) in enumerate(messages.items())]
    )

    async def ids(q: str) -> set[str]:
        status, body, _ = await get(session, f"{base}/api/logs?q={q}")
        assert status == 200
        return {e["id"] for e in body}

    assert await ids("timeout") == {"m1", "m4", "m5"}
    assert await ids("connection%20timeout") == {"m1"}
    assert await ids("CONNECTION") == {"m1", "m2"}
    assert await ids("ärger") == {"m4"}
    assert await ids("time") == set()
    assert await ids("timeout-free") == {"m5"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("level=verbose", "level"),
        ("level=info,", "level"),
        ("from=yesterday", "from"),
        ("from=2026-02-30T00:00:00Z", "from"),
        ("to=2026-01-01T00:00:00%2B00:99", "to"),  # an invalid offset (no offset is UTC, as at ingestion)
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        ("q=%21%21%21", "q"),
        ("cursor=garbage", "cursor"),
        ("service=", "service"),
        ("q=a&q=b", "q"),
        ("limit=1&limit=2", "limit"),
        ("levle=info", "levle"),
    ],
)
async def test_bad_parameters_get_400_naming_the_field(query_app: Any, query: str, field: str) -> None:
    """Every invalid parameter is a 400 whose details name the field and say why."""
    base, _, session = query_app
    status, body, _ = await get(session, f"{base}/api/logs?{query}")
    assert status == 400
    assert body["details"][0]["field"] == field and body["details"][0]["reason"]


def test_cursor_round_trips_and_is_opaque() -> None:
    """A cursor encodes (timestamp, id) and decodes back; anything else is rejected."""
    cursor = Cursor(1795814081744773, "id:with|pipe")
    assert Cursor.decode(cursor.encode()) == cursor
    assert "|" not in cursor.encode()


async def test_storage_failure_is_503(query_app: Any) -> None:
    """When storage cannot answer, the query API says 503 with Retry-After instead of a traceback."""
    base, app, session = query_app
    from oglogstream.stack.http.resources import STORAGE

    await app[STORAGE].run(lambda client: client.command("RENAME TABLE logs TO logs_away"))
    try:
        async with session.get(f"{base}/api/logs") as response:
            assert response.status == 503 and response.headers["Retry-After"] == "1"
            assert (await response.json())["details"][0]["field"] == "storage"
    finally:
        await app[STORAGE].run(lambda client: client.command("RENAME TABLE logs_away TO logs"))
    await asyncio.sleep(0)
