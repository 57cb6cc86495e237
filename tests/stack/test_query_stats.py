"""GET /api/stats and GET /api/histogram: the seed's stats shape, filters, dense histogram buckets, 400s."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.config import StackConfig
from oglogstream.stack.query.query import auto_interval

from .query_helpers import insert_rows, make_row, running

pytestmark = pytest.mark.timeout(60)

BASE_TIME = dt.datetime(2026, 11, 27, 10, 0, 0)


@pytest.fixture
async def query_app(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, Any, aiohttp.ClientSession]]:
    """A query-only app with 3 services x known levels stored between 10:00 and 10:30 UTC."""
    config = StackConfig(
        roles=("query",), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn, retention_days=3650
    )
    async with running(config) as (base, app), aiohttp.ClientSession() as session:
        rows = []
        for i in range(90):  # one row every 20 s from 10:00:00; levels info/error only, services a/b/c
            level = "error" if i % 3 == 0 else "info"
            rows.append(
                make_row(
                    f"r{i}",
                    BASE_TIME + dt.timedelta(seconds=20 * i),
                    level=level,
                    service="abc"[i % 3],
                    message=f"request {i} {'timeout' if i % 10 == 0 else 'ok'}",
                )
            )
        await insert_rows(app, rows)
        yield base, app, session


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def test_stats_shape_has_every_level(query_app: Any) -> None:
    """total_logs, logs_by_level with all five levels (zeros included) and logs_by_service, as the seed."""
    base, _, session = query_app
    status, body = await get(session, f"{base}/api/stats")
    assert status == 200
    assert body == {
        "total_logs": 90,
        "logs_by_level": {"debug": 0, "info": 60, "warn": 0, "error": 30, "fatal": 0},
        "logs_by_service": {"a": 30, "b": 30, "c": 30},
    }


async def test_stats_filters(query_app: Any) -> None:
    """service, from/to, level and q narrow the counts."""
    base, _, session = query_app
    _, body = await get(session, f"{base}/api/stats?service=a")
    assert body["total_logs"] == 30 and body["logs_by_service"] == {"a": 30}
    assert body["logs_by_level"]["error"] == 30  # i % 3 == 0 is both service a and level error
    _, body = await get(session, f"{base}/api/stats?from=2026-11-27T10:10:00Z&to=2026-11-27T10:20:00Z")
    assert body["total_logs"] == 30
    _, body = await get(session, f"{base}/api/stats?q=TIMEOUT")
    assert body["total_logs"] == 9
    status, body = await get(session, f"{base}/api/stats?from=noon")
    assert status == 400 and body["details"][0]["field"] == "from"


async def test_histogram_buckets_are_dense_and_counted_per_level(query_app: Any) -> None:
    """Every bucket in [from, to) is present, oldest first, with counts per level that add up."""
    base, _, session = query_app
    status, body = await get(
        session, f"{base}/api/histogram?from=2026-11-27T09:55:00Z&to=2026-11-27T10:40:00Z&interval=5m"
    )
    assert status == 200
    assert body["interval"] == "5m" and body["interval_seconds"] == 300
    buckets = body["buckets"]
    assert [b["timestamp"] for b in buckets][:2] == [
        "2026-11-27T09:55:00.000000Z",
        "2026-11-27T10:00:00.000000Z",
    ]
    assert len(buckets) == 9
    assert buckets[0]["total"] == 0 and buckets[0]["counts"] == dict.fromkeys(
        ("debug", "info", "warn", "error", "fatal"), 0
    )
    assert (
        buckets[1]["total"] == 15
        and buckets[1]["counts"]["error"] == 5
        and buckets[1]["counts"]["info"] == 10
    )
    assert sum(b["total"] for b in buckets) == 90
    _, body = await get(
        session, f"{base}/api/histogram?from=2026-11-27T10:00:00Z&to=2026-11-27T11:00:00Z&level=error"
    )
    assert body["interval"] == "1m" and len(body["buckets"]) == 60
    assert set(body["buckets"][0]["counts"]) == {"error"}
    assert sum(b["total"] for b in body["buckets"]) == 30


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("interval=0s", "interval"),
        ("interval=fast", "interval"),
        ("interval=1s&from=2026-11-20T00:00:00Z&to=2026-11-27T00:00:00Z", "interval"),
        ("from=2026-11-27T11:00:00Z&to=2026-11-27T10:00:00Z", "to"),
        ("bucket=1m", "bucket"),
        ("interval=1m&interval=5m", "interval"),
    ],
)
async def test_histogram_bad_parameters(query_app: Any, query: str, field: str) -> None:
    """Bad interval, reversed range, too many buckets and unknown parameters are 400s naming the field."""
    base, _, session = query_app
    status, body = await get(session, f"{base}/api/histogram?{query}")
    assert status == 400 and body["details"][0]["field"] == field


def test_auto_interval_is_a_nice_step() -> None:
    """The default interval keeps about 60 buckets and uses round steps."""
    assert auto_interval(3600) == 60
    assert auto_interval(86400) == 1800
    assert auto_interval(60) == 1
    assert auto_interval(10 * 365 * 86400) >= 10 * 365 * 86400 / 60
