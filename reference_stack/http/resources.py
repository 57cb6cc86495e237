"""The app's shared resources: AppKeys, and one aiohttp cleanup context per resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ..broker.broker import Broker
from ..config import StackConfig
from ..storage.storage import Storage
from .metrics import Metrics

__all__ = [
    "BROKER",
    "CONFIG",
    "METRICS",
    "STORAGE",
    "broker_ctx",
    "refuse_queries",
    "refuse_queries_on_shutdown",
    "storage_ctx",
]

log = logging.getLogger(__name__)

CONFIG: web.AppKey[StackConfig] = web.AppKey("oglog_config", StackConfig)
BROKER: web.AppKey[Broker] = web.AppKey("oglog_broker", Broker)
STORAGE: web.AppKey[Storage] = web.AppKey("oglog_storage", Storage)
METRICS: web.AppKey[Metrics] = web.AppKey("oglog_metrics", Metrics)

#: How long startup waits for NATS before serving anyway (ingest answers 503 until it is up).
BROKER_STARTUP_WAIT = 5.0


async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to NATS (in the background, forever) and ensure the stream; close on shutdown."""
    config = app[CONFIG]
    broker = Broker(
        config.nats_url, stream_replicas=config.stream_replicas, name=f"oglog-{'+'.join(config.roles)}"
    )
    app[BROKER] = broker
    await broker.start(wait=BROKER_STARTUP_WAIT)
    try:
        yield
    finally:
        await broker.close(drain_timeout=min(config.shutdown_timeout, 5.0))


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open ClickHouse (chDB or a server), create the schema idempotently; close on shutdown."""
    config = app[CONFIG]
    storage = Storage(config.clickhouse_dsn, retention_days=config.retention_days)
    app[STORAGE] = storage
    try:
        await storage.run(storage.ensure_schema)
        yield
    finally:
        storage.close()


def refuse_queries(app: web.Application) -> None:
    """The shutdown began: queries still waiting for storage are answered 503 (problem+json, Retry-After) at
    once and new ones too, instead of holding the shutdown until the queue is served (27.7 s under a query
    flood); running queries and the processor's inserts finish. Idempotent; nothing when the app has no
    storage (an ingest-only process). Called by the app's on_shutdown and, earlier, by the supervisor before
    it drains its ingest workers (whose relayed queries wait on this process)."""
    storage = app.get(STORAGE)
    if storage is None:
        return
    failed = storage.refuse_queries()
    if failed:
        log.warning("shutting down: %d waiting queries answered 503", failed)


async def refuse_queries_on_shutdown(app: web.Application) -> None:
    """`refuse_queries` as an aiohttp on_shutdown handler (it runs before in-flight requests are awaited)."""
    refuse_queries(app)
