"""Live tail through ingest workers (worker_proxy.py relays /ws/live to the supervisor): the supervisor's
"entries may be missing" close reaches the client with its code and reason, and as many simultaneous upgrades
as the hub admits (MAX_CLIENTS) all get through the supervisor's socket (none is a 502)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from oglogstream.stack.broker.natsd import NatsServer, free_port
from oglogstream.stack.query.live import (
    CLOSE_INTERRUPTED,
    INTERRUPTED_REASON,
    MAX_CLIENTS,
    MAX_CLIENTS_PER_CLIENT,
)

from .helpers import relayed_supervisor
from .query_helpers import OglogProcess
from .test_live_gaps import closed_with

pytestmark = pytest.mark.timeout(110)


async def test_the_interrupted_close_reaches_a_client_through_a_worker(tmp_path: Path) -> None:
    """A NATS restart closes the supervisor's live clients with 1013 and a reason; a client connected
    through an ingest worker gets both unchanged (so it knows entries may be missing)."""
    restarted: NatsServer | None = None
    try:
        async with (
            relayed_supervisor(tmp_path) as (base, _app, nats),
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{base}/ws/live") as ws,
        ):
            nats.stop()
            restarted = NatsServer(nats.store_dir, port=nats.port).start()
            assert await closed_with(ws) == (CLOSE_INTERRUPTED, INTERRUPTED_REASON)
    finally:
        if restarted is not None:
            restarted.stop()


@pytest.fixture
async def stack_with_workers(tmp_path: Path) -> AsyncIterator[str]:
    """`oglog stack up --ingest-workers 2` at its defaults; its base URL once /health answers."""
    port = free_port()
    args = ["stack", "up", "--data-dir", str(tmp_path / "data"), "--port", str(port), "--ingest-workers", "2"]
    with OglogProcess(args, tmp_path / "stack.log") as process:
        base = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(process.wait_healthy, base)
        yield base


async def test_every_admitted_simultaneous_upgrade_through_the_workers_gets_through(
    stack_with_workers: str,
) -> None:
    """MAX_CLIENTS + 10 upgrades at once through the workers (as after every client was closed with 1013 and
    reconnects), all from one address: as many as one client may hold (MAX_CLIENTS less the share kept for
    others) get 101, the rest the hub's 429, none a 502 from the relay."""
    outcome: collections.Counter[int | str] = collections.Counter()
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def upgrade() -> None:
            try:
                sockets.append(await session.ws_connect(f"{stack_with_workers}/ws/live"))
                outcome[101] += 1
            except aiohttp.WSServerHandshakeError as exc:
                outcome[exc.status] += 1
            except aiohttp.ClientError as exc:
                outcome[type(exc).__name__] += 1

        try:
            await asyncio.wait_for(asyncio.gather(*(upgrade() for _ in range(MAX_CLIENTS + 10))), 60)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    held = MAX_CLIENTS - MAX_CLIENTS_PER_CLIENT
    assert outcome == {101: held, 429: MAX_CLIENTS + 10 - held}
