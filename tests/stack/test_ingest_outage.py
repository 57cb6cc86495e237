"""Broker outages: ingestion answers 503 + Retry-After while NATS is down, loses nothing it accepted, and
recovers by itself when NATS is back (also when it starts before NATS)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import aiohttp
from oglogstream.stack.broker.natsd import NatsServer, free_port
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app

from .helpers import count_rows, running_app, wait_for

GZIP_NDJSON = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}


def batch(prefix: str, n: int = 20) -> bytes:
    return gzip.compress(
        b"".join(
            json.dumps({"level": "error", "message": f"{prefix}{i}", "service": "svc"}).encode() + b"\n"
            for i in range(n)
        )
    )


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, str | None]:
    async with session.post(f"{url}/logs", data=body, headers=GZIP_NDJSON) as resp:
        await resp.read()
        return resp.status, resp.headers.get("Retry-After")


async def test_503_while_nats_is_down_then_recovery_without_loss(nats_server: Any, chdb_dsn: str) -> None:
    """Accepted-before-outage entries are all stored; during the outage 503 + Retry-After; afterwards 202."""
    config = StackConfig(
        roles=("ingest", "process"), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn, flush_timeout=0.1
    )
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        accepted = 0
        for k in range(5):
            assert (await post(session, url, batch(f"before{k}-")))[0] == 202
            accepted += 20
        nats_server.stop()

        async def unavailable() -> tuple[int, str | None] | None:
            status, retry_after = await post(session, url, batch("during-"))
            return (status, retry_after) if status == 503 else None

        _, retry_after = await wait_for(unavailable, timeout=15)
        assert retry_after is not None and int(retry_after) > 0
        async with session.post(f"{url}/log", json={"level": "info", "message": "m", "service": "s"}) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"]
            assert (await resp.json())["error"] == "broker unavailable"

        restarted = NatsServer(nats_server.store_dir, port=nats_server.port).start()
        try:

            async def available() -> bool:
                return (await post(session, url, batch("after-")))[0] == 202

            await wait_for(available, timeout=20)
            accepted += 20
            # Everything accepted, before and after the outage, ends up stored exactly once.
            await wait_for(lambda: _at_least(app, accepted), timeout=20)
            assert await count_rows(app) == accepted
            assert await count_rows(app, "message LIKE 'during-%'") == 0
        finally:
            restarted.stop()


async def _at_least(app: Any, n: int) -> bool:
    return await count_rows(app) >= n


async def test_app_starting_before_nats_answers_503_until_it_is_up(tmp_path: Path, chdb_dsn: str) -> None:
    """Starting while NATS is down does not crash: 503 first, then 202 and stored once NATS listens."""
    port = free_port()
    config = StackConfig(
        roles=("ingest", "process"),
        nats_url=f"nats://127.0.0.1:{port}",
        clickhouse_dsn=chdb_dsn,
        flush_timeout=0.1,
    )
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        status, retry_after = await post(session, url, batch("early-"))
        assert status == 503 and retry_after
        server = NatsServer(tmp_path / "late-nats", port=port).start()
        try:

            async def available() -> bool:
                return (await post(session, url, batch("late-")))[0] == 202

            await wait_for(available, timeout=20)
            await wait_for(lambda: _at_least(app, 20), timeout=20)
            assert await count_rows(app) == 20
        finally:
            server.stop()
