"""Test helpers shared by the stack test groups: run a real app on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.broker.natsd import NatsServer
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.resources import STORAGE
from oglogstream.stack.server.worker_proxy import install
from oglogstream.stack.storage.storage import Storage

__all__ = [
    "all_roles",
    "broker_and_storage",
    "count_rows",
    "hold_reads",
    "query_rows",
    "ready_storage",
    "running_app",
    "slowest_health",
    "started_broker",
    "wait_for",
]

StorageT = TypeVar("StorageT", bound=Storage)


@contextlib.asynccontextmanager
async def running_app(config: StackConfig, *, app: web.Application | None = None) -> AsyncIterator[str]:
    """Run `create_app(config)` (or the given `app`) on a free 127.0.0.1 port; yield its base URL
    ("http://127.0.0.1:PORT").

    Every cleanup_ctx has started when the body runs; leaving the block shuts the app down gracefully (the
    processor flushes and acks its in-flight batch, storage is closed), so the next test can open its own
    chDB path. `config.http_port` is ignored.
    """
    app = app if app is not None else create_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def ready_storage(store: Storage) -> AsyncIterator[Storage]:
    """`store` with its schema applied, closed on the way out (the processor's and queries' own tests)."""
    try:
        await store.run(store.ensure_schema)
        yield store
    finally:
        store.close()


@contextlib.asynccontextmanager
async def started_broker(nats_url: str) -> AsyncIterator[Broker]:
    """A Broker on `nats_url`, started (up to 10 s to connect), closed on the way out."""
    broker = Broker(nats_url)
    try:
        await broker.start(wait=10)
        yield broker
    finally:
        await broker.close()


@contextlib.asynccontextmanager
async def broker_and_storage(nats_url: str, store: StorageT) -> AsyncIterator[tuple[Broker, StorageT]]:
    """(started Broker, `store` with its schema applied): the processor's parts; the broker is closed
    before the storage."""
    async with ready_storage(store), started_broker(nats_url) as broker:
        yield broker, store


def hold_reads(broker: Broker) -> asyncio.Event:
    """Hold `broker`'s client socket reads until the returned event is set (its event loop keeps running):
    a slow reader injected at the client boundary."""
    transport = broker.nc._transport
    assert transport is not None
    read = transport.read
    resume = asyncio.Event()

    async def held_read(size: int) -> bytes:
        await resume.wait()
        return await read(size)

    transport.read = held_read  # type: ignore[method-assign]
    return resume


@contextlib.asynccontextmanager
async def all_roles(nats_url: str, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """ingest + process + query in one app (defaults but a 0.1 s flush, so stored rows show up at once) on a
    free port; yields (base URL, a client session)."""
    config = StackConfig(
        roles=("ingest", "process", "query"), nats_url=nats_url, clickhouse_dsn=chdb_dsn, flush_timeout=0.1
    )
    async with running_app(config) as url, aiohttp.ClientSession() as session:
        yield url, session


async def wait_for(
    probe: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Await `probe()` until it returns something truthy (returned); AssertionError past `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)


async def count_rows(app: web.Application, where: str = "1") -> int:
    """`SELECT count() FROM logs WHERE {where}` through the app's Storage (its one chDB session)."""
    return int(
        await app[STORAGE].run(lambda client: client.command(f"SELECT count() FROM logs WHERE {where}"))
    )


async def query_rows(app: web.Application, sql: str) -> list[dict[str, Any]]:
    """Rows of `sql` as dicts, through the app's Storage."""
    result = await app[STORAGE].run(lambda client: client.query(sql))
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


async def slowest_health(session: Any, url: str, stop: asyncio.Event) -> float:
    """Seconds of the slowest `GET {url}/health` while `stop` is unset, probed back to back on `session`
    (an aiohttp ClientSession): the event-loop lag the server shows meanwhile."""
    worst = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(f"{url}/health") as resp:
            await resp.read()
        worst = max(worst, time.perf_counter() - started)
    return worst


@contextlib.asynccontextmanager
async def relayed_supervisor(
    tmp_path: Path, supervisor: web.Application | None = None
) -> AsyncIterator[tuple[str, web.Application, NatsServer]]:
    """The supervisor's app (every role, chDB in `tmp_path`; or `supervisor`, a stand-in) on a Unix socket,
    reached through one ingest worker's relay on a free TCP port, as `oglog stack up --ingest-workers N` wires
    them: yields (the worker's base URL, the supervisor's app, the nats-server)."""
    with NatsServer(tmp_path / "nats") as nats:
        sup_app = supervisor or create_app(
            StackConfig(nats_url=nats.url, clickhouse_dsn=f"chdb://{tmp_path / 'ch'}")
        )
        sup = web.AppRunner(sup_app, handle_signals=False, access_log=None, shutdown_timeout=5)
        await sup.setup()
        sock = tmp_path / "s.sock"
        await web.UnixSite(sup, str(sock)).start()
        worker_app = create_app(StackConfig(roles=("ingest",), nats_url=nats.url))
        install(worker_app, sock)
        worker = web.AppRunner(worker_app, handle_signals=False, access_log=None, shutdown_timeout=5)
        await worker.setup()
        try:
            await web.TCPSite(worker, "127.0.0.1", 0).start()
            yield "http://{}:{}".format(*worker.addresses[0][:2]), sup_app, nats
        finally:
            await worker.cleanup()
            await sup.cleanup()
