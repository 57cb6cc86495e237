"""create_app composition: /health and /metrics on every role, degraded health when NATS is down, and the
full ingest -> process -> query path in one app."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.config import StackConfig

from .query_helpers import running

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("roles", [("ingest",), ("process",), ("query",), ("ingest", "process", "query")])
async def test_health_and_metrics_on_every_role(
    nats_server: Any, chdb_dsn: str, roles: tuple[str, ...]
) -> None:
    """Each role answers /health 200 with the seed's fields and /metrics in Prometheus text format."""
    config = StackConfig(roles=roles, nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    async with running(config) as (base, _), aiohttp.ClientSession() as session:
        async with session.get(f"{base}/health") as response:
            body = await response.json()
            assert response.status == 200
        assert body["status"] == "ok" and body["service"] == "+".join(roles)
        assert body["nats_status"] == "CONNECTED" and body["timestamp"].endswith("Z")
        assert ("storage_status" in body) == (roles != ("ingest",))
        async with session.get(f"{base}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        assert "# TYPE oglog_http_requests_total counter" in text


async def test_health_degrades_when_nats_goes_away(nats_server: Any, chdb_dsn: str) -> None:
    """With NATS down, /health answers 503 "degraded" naming the NATS state; it recovers when NATS is back."""
    config = StackConfig(roles=("query",), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    async with running(config) as (base, _), aiohttp.ClientSession() as session:
        nats_server.stop()
        for _ in range(100):
            async with session.get(f"{base}/health") as response:
                if response.status == 503:
                    body = await response.json()
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("health never degraded")
        assert body["status"] == "degraded" and body["nats_status"] != "CONNECTED"
        assert body["storage_status"] == "ok"
        nats_server.start()
        for _ in range(200):
            async with session.get(f"{base}/health") as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("health never recovered")


async def test_all_roles_store_and_serve_what_they_accept(nats_server: Any, chdb_dsn: str) -> None:
    """An entry POSTed to /log comes back from /api/logs and is counted by /api/stats in the same app."""
    config = StackConfig(
        roles=("ingest", "process", "query"),
        nats_url=nats_server.url,
        clickhouse_dsn=chdb_dsn,
        flush_timeout=0.1,
    )
    async with running(config) as (base, _), aiohttp.ClientSession() as session:
        entry = {"level": "warn", "message": "Hello OgLogStream", "service": "test-app", "logger": "x.y"}
        async with session.post(f"{base}/log", json=entry) as response:
            assert response.status == 202
        for _ in range(100):
            async with session.get(f"{base}/api/logs?service=test-app") as response:
                logs = await response.json()
            if logs:
                break
            await asyncio.sleep(0.05)
        assert [(e["level"], e["message"], e["logger"]) for e in logs] == [
            ("warn", "Hello OgLogStream", "x.y")
        ]
        async with session.get(f"{base}/api/stats") as response:
            stats = await response.json()
        assert stats["total_logs"] == 1 and stats["logs_by_level"]["warn"] == 1
