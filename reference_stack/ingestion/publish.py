"""Making rows durable: one JetStream message per request (its payload the JSON array of rows, exactly what
the processor inserts), split into parts `<id>/<k>of<n>` when it exceeds the server's max_payload, then the
best-effort live-tail copy. Used by POST /log and /logs (ingest.py) and OTLP (otlp/receiver.py)."""

from __future__ import annotations

import asyncio
import operator
from typing import Any

from ..broker import messages
from ..broker.broker import Broker
from ..http.boundary import too_large
from ..http.metrics import Metrics
from . import dedup, row_codec

__all__ = ["payload_limit", "publish_parts", "publish_rows", "split_rows"]

#: Rows serialised per call when a publish is split into parts (about 1 ms of GIL per slice).
_DUMP_SLICE_ROWS = 256
#: Headroom under max_payload for the headers of a JetStream message.
_HEADER_ROOM = 4096
_TIMESTAMP = operator.itemgetter("timestamp")


def split_rows(rows: list[dict[str, Any]], limit: int) -> list[tuple[list[dict[str, Any]], bytes]]:
    """(rows, JSON-array payload) parts of at most `limit` bytes each, deterministically (a retried batch
    gets the same parts, hence the same Nats-Msg-Ids).

    Rows are serialised in slices of _DUMP_SLICE_ROWS (each a short GIL hold when this runs on a worker
    thread) and consecutive slices packed greedily into parts; compact JSON arrays concatenate byte for byte
    (`[a,b]` + `[c]` = `[a,b,c]`). A slice larger than `limit` is halved until it fits."""
    parts: list[tuple[list[dict[str, Any]], bytes]] = []
    for start in range(0, len(rows), _DUMP_SLICE_ROWS):
        for part_rows, payload in _halve(rows[start : start + _DUMP_SLICE_ROWS], limit):
            if parts and len(parts[-1][1]) + len(payload) - 1 <= limit:
                last_rows, last_payload = parts[-1]
                parts[-1] = (last_rows + part_rows, last_payload[:-1] + b"," + payload[1:])
            else:
                parts.append((part_rows, payload))
    return parts


def _halve(rows: list[dict[str, Any]], limit: int) -> list[tuple[list[dict[str, Any]], bytes]]:
    payload = row_codec.dump_rows(rows)
    if len(payload) <= limit:
        return [(rows, payload)]
    if len(rows) == 1:
        raise too_large(limit, "one entry as stored", "bytes")
    half = len(rows) // 2
    return _halve(rows[:half], limit) + _halve(rows[half:], limit)


def payload_limit(broker: Broker) -> int:
    return broker.max_payload - _HEADER_ROOM


async def publish_rows(
    broker: Broker,
    metrics: Metrics,
    rows: list[dict[str, Any]],
    batch_id: str,
) -> None:
    """Make `rows` (from `schema.make_rows`) durable in JetStream (raises BrokerUnavailable), then fan them
    out to the live tail. `batch_id`: the Nats-Msg-Id (a `dedup` message id, never a raw client id; parts of
    a split payload get `dedup.part_id`)."""
    limit = payload_limit(broker)
    if len(rows) <= _DUMP_SLICE_ROWS:
        parts = split_rows(rows, limit)
    else:  # on a worker thread, in slices: the event loop keeps serving meanwhile
        parts = await asyncio.to_thread(split_rows, rows, limit)
    await publish_parts(broker, metrics, parts, batch_id)


async def publish_parts(
    broker: Broker, metrics: Metrics, parts: list[tuple[list[dict[str, Any]], bytes]], batch_id: str
) -> None:
    """`publish_rows` once its rows are serialised into `parts` (`split_rows`)."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(k: int, part_rows: list[dict[str, Any]], payload: bytes) -> None:
        stamps = list(map(_TIMESTAMP, part_rows))
        message_id = batch_id if len(parts) == 1 else dedup.part_id(batch_id, k + 1, len(parts))
        headers = messages.rows_headers(message_id, len(part_rows), min(stamps), max(stamps))
        ack = await broker.publish(messages.STREAM_SUBJECT, payload, headers)
        if ack.duplicate:
            metrics.duplicates_skipped.labels("broker").inc()

    if len(parts) == 1:
        await one(0, *parts[0])
    else:
        await asyncio.gather(*(one(k, *part) for k, part in enumerate(parts)))
    metrics.publish_latency.observe(loop.time() - started)
    # The row payloads as they are: the live tail makes them public entries (row_codec.live_payload) only
    # when it has clients, instead of every request paying that pass here (#14: ~1.3 µs per entry). Sent only
    # while some live-tail hub announces clients (Broker.live_interest): nobody watching costs nothing.
    if not broker.live_interest:
        return
    for _, payload in parts:  # one live message per part: each fits under max_payload
        try:
            await broker.publish_live(payload)
        except Exception:  # best effort by contract: the entries are durable already
            metrics.live_publish_errors.inc()
