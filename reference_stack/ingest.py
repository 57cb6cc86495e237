"""Ingestion role: `POST /log` (one entry) and `POST /logs` (a batch), answered 202 only once JetStream
has the entries on disk.

A request's accepted entries become rows (schema.make_rows) and ONE JetStream message whose payload is the
JSON array of rows, exactly what the processor inserts (`INSERT ... FORMAT JSONEachRow` takes an array).
`Nats-Msg-Id` is the client's X-Oglog-Batch-Id (or a fresh id), so a retried request is stored once by the
broker. A payload over the server's max_payload is split into messages `{batch_id}.{k}of{n}`,
deterministically. Concurrent POST /log requests without a batch id share messages (see _Coalescer).
"""

from __future__ import annotations

import asyncio
import itertools
import operator
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from oglogstream import _wire
from pydantic import ValidationError

from . import schema
from .broker import Broker, BrokerUnavailable
from .config import STREAM_SUBJECT, check_at_least
from .metrics import Metrics
from .resources import BROKER, METRICS

__all__ = [
    "DEFAULT_MAX_BATCHES_IN_FLIGHT",
    "OVERLOAD_RETRY_AFTER_SECONDS",
    "RETRY_AFTER_SECONDS",
    "publish_rows",
    "setup",
]

#: What a 503 tells the client to wait before retrying (the broker reconnects every 0.5 s).
RETRY_AFTER_SECONDS = 2
#: POST /logs requests one process handles at once; past this it answers 429 + Retry-After rather than hold
#: more bodies in memory (each up to MAX_BATCH_DECOMPRESSED_BYTES). The SDK backs off and retries on 429.
DEFAULT_MAX_BATCHES_IN_FLIGHT = 64
#: What a 429 tells the client to wait before retrying.
OVERLOAD_RETRY_AFTER_SECONDS = 1
#: Headroom under max_payload for the headers of a JetStream message.
_HEADER_ROOM = 4096
_BATCH_ID = re.compile(schema.ID_PATTERN)
_GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 256 * 1024
_TIMESTAMP = operator.itemgetter("timestamp")


class _HTTPProblem(Exception):
    def __init__(self, status: int, error: str, field: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.error, self.field, self.reason, self.extra = status, error, field, reason, extra


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=schema.dumps(body), content_type="application/json", headers=headers
    )


def _problem(exc: _HTTPProblem) -> web.Response:
    return _json(
        exc.status,
        {"error": exc.error, "details": [{"field": exc.field, "reason": exc.reason}]},
        headers=exc.extra.get("headers"),
    )


def _check_type(request: web.Request, allowed: tuple[str, ...]) -> None:
    if request.content_type not in allowed:
        got = request.headers.get("Content-Type", "(none)")
        raise _HTTPProblem(
            415, "unsupported media type", "Content-Type", f"expected {' or '.join(allowed)}, got {got}"
        )
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise _HTTPProblem(
            415, "unsupported media type", "Content-Encoding", f"expected gzip or identity, got {encoding}"
        )


def _too_large(limit: int, what: str = "body") -> _HTTPProblem:
    return _HTTPProblem(413, "payload too large", "body", f"{what} must be at most {limit} bytes")


async def _read_body(request: web.Request, *, limit: int, decompressed_limit: int) -> bytes:
    """The request body, decompressed, never buffering more than the limits allow (413 past them).

    aiohttp's server may already have decompressed the stream (its default); a body that still starts with the
    gzip magic is decompressed here, incrementally, so a gzip bomb stops at `decompressed_limit`."""
    gzipped = request.headers.get("Content-Encoding", "").strip().lower() in ("gzip", "x-gzip")
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    cap = decompressed_limit if gzipped else limit
    if length is not None and not gzipped:
        try:
            body = await request.content.readexactly(length) if length else b""
        except asyncio.IncompleteReadError as exc:
            raise _HTTPProblem(400, "bad request", "body", "shorter than its Content-Length") from exc
    else:
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := await request.content.read(_READ_CHUNK):
                size += len(chunk)
                if size > cap:
                    raise _too_large(cap, "decompressed body" if gzipped else "body")
                chunks.append(chunk)
        except (zlib.error, RequestPayloadError) as exc:  # aiohttp's own decompression failed
            raise _HTTPProblem(400, "bad request", "body", f"invalid gzip data: {exc}") from exc
        body = b"".join(chunks)
    if gzipped and body.startswith(_GZIP_MAGIC):
        if len(body) > limit:
            raise _too_large(limit)
        body = _gunzip(body, decompressed_limit)
    return body


def _gunzip(data: bytes, limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    try:
        while data:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = data
            while pending and not inflater.eof:
                chunk = inflater.decompress(pending, limit + 1 - size)
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit, "decompressed body")
                out.append(chunk)
                pending = inflater.unconsumed_tail
            if not inflater.eof:
                raise _HTTPProblem(400, "bad request", "body", "invalid gzip data: truncated stream")
            data = inflater.unused_data  # concatenated gzip members are one stream (RFC 1952)
    except zlib.error as exc:
        raise _HTTPProblem(400, "bad request", "body", f"invalid gzip data: {exc}") from exc
    return b"".join(out)


def _batch_id(request: web.Request) -> str:
    given = request.headers.get(_wire.BATCH_ID_HEADER)
    if given is None:
        return _fresh_id()
    if not _BATCH_ID.match(given):
        raise _HTTPProblem(
            400,
            "validation failed",
            _wire.BATCH_ID_HEADER,
            f"must be 1..{_wire.MAX_ID_CHARS} characters of A-Z a-z 0-9 _ . : -",
        )
    return given


#: Fresh batch ids: a random per-process prefix and a counter (unique across processes, cheaper than uuid4).
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def _fresh_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):x}"


_second = -1
_second_text = ""


def _now() -> str:
    """Server time as RFC 3339 UTC with microseconds (the second's text is cached: this runs per request)."""
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second, _second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second_text}.{min(int((now - second) * 1_000_000), 999_999):06d}Z"


def _split(rows: list[dict[str, Any]], limit: int) -> list[tuple[list[dict[str, Any]], bytes]]:
    """(rows, JSON-array payload) parts of at most `limit` bytes each, halving deterministically."""
    payload = schema.dump_rows(rows)
    if len(payload) <= limit:
        return [(rows, payload)]
    if len(rows) == 1:
        raise _too_large(limit, "one entry as stored")
    half = len(rows) // 2
    return _split(rows[:half], limit) + _split(rows[half:], limit)


async def publish_rows(
    broker: Broker,
    metrics: Metrics,
    rows: list[dict[str, Any]],
    batch_id: str,
    *,
    received_at: str | None = None,
) -> None:
    """Make `rows` (from `schema.make_rows`) durable in JetStream (raises BrokerUnavailable), then fan them
    out to the live tail. `received_at`: given when every row has that value (one make_rows call), which
    makes the live payload a plain replace."""
    parts = _split(rows, broker.max_payload - _HEADER_ROOM)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(k: int, part_rows: list[dict[str, Any]], payload: bytes) -> None:
        stamps = list(map(_TIMESTAMP, part_rows))
        headers = {
            "Nats-Msg-Id": batch_id if len(parts) == 1 else f"{batch_id}.{k + 1}of{len(parts)}",
            "Oglog-Rows": str(len(part_rows)),
            "Oglog-Ts-Min": min(stamps),
            "Oglog-Ts-Max": max(stamps),
        }
        ack = await broker.publish(STREAM_SUBJECT, payload, headers)
        if ack.duplicate:
            metrics.duplicates_skipped.labels("broker").inc()

    if len(parts) == 1:
        await one(0, *parts[0])
    else:
        await asyncio.gather(*(one(k, *part) for k, part in enumerate(parts)))
    metrics.publish_latency.observe(loop.time() - started)
    for _, payload in parts:  # one live message per part: each fits under max_payload
        try:
            await broker.publish_live(schema.live_payload(payload, received_at))
        except Exception:  # best effort by contract: the entries are durable already
            metrics.live_publish_errors.inc()


class _Counters:
    """Label children looked up once: `Counter.labels()` costs more than the increment itself."""

    def __init__(
        self, metrics: Metrics, *, max_batches_in_flight: int = DEFAULT_MAX_BATCHES_IN_FLIGHT
    ) -> None:
        self.metrics = metrics
        self.max_batches_in_flight = max_batches_in_flight
        self.batches_in_flight = 0
        self._requests: dict[tuple[str, int], Any] = {}
        self.accepted = {r: metrics.entries_accepted.labels(r) for r in ("/log", "/logs")}

    def request(self, route: str, status: int) -> None:
        child = self._requests.get((route, status))
        if child is None:
            child = self._requests[(route, status)] = self.metrics.requests.labels(route, str(status))
        child.inc()

    def rejected(self, reason: str, n: int = 1) -> None:
        self.metrics.entries_rejected.labels(reason).inc(n)


class _Coalescer:
    """Coalesces concurrent POST /log entries into one JetStream message.

    The first entry is published at once; entries arriving while that publish is in flight go out together
    in the next one, so a lone request pays no added latency and a busy node pays one broker round trip per
    group instead of per request. Each request still gets 202 only after the ack of the message carrying its
    entry. Only requests WITHOUT X-Oglog-Batch-Id are coalesced (they have no retry identity anyway); one
    with it gets its own message whose Nats-Msg-Id is that id, as on POST /logs.
    """

    def __init__(self, broker: Broker, metrics: Metrics, *, max_rows: int = 1000, in_flight: int = 2) -> None:
        self.broker, self.metrics, self.max_rows = broker, metrics, max_rows
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._slots = asyncio.Semaphore(in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, row: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if len(self._pending) == 1:
            task = asyncio.create_task(self._send())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await future

    async def _send(self) -> None:
        async with self._slots:
            group, self._pending = self._pending[: self.max_rows], self._pending[self.max_rows :]
            if self._pending:  # more than one group's worth waiting: the next group starts right away
                task = asyncio.create_task(self._send())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not group:
                return
            try:
                await publish_rows(self.broker, self.metrics, [row for row, _ in group], _fresh_id())
            except Exception as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in group:
                    if not future.done():
                        future.set_result(None)

    async def close(self) -> None:
        """Let in-flight groups finish (their requests are waiting for them)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


_COUNTERS: web.AppKey[_Counters] = web.AppKey("oglog_ingest_counters", _Counters)
_COALESCER: web.AppKey[_Coalescer] = web.AppKey("oglog_ingest_coalescer", _Coalescer)


def _handler(route: str, fn: Callable[[web.Request, _Counters], Any]) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        counters = request.app[_COUNTERS]
        try:
            response: web.StreamResponse = await fn(request, counters)
        except _HTTPProblem as exc:
            counters.rejected(
                {400: "invalid", 413: "too_large", 415: "unsupported_type", 429: "overloaded"}.get(
                    exc.status, "other"
                )
            )
            response = _problem(exc)
        except BrokerUnavailable as exc:
            counters.rejected("broker_unavailable")
            response = _json(
                503,
                {"error": "broker unavailable", "details": [{"field": "broker", "reason": str(exc)}]},
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        counters.request(route, response.status)
        return response

    return handle


async def _post_log(request: web.Request, counters: _Counters) -> web.Response:
    _check_type(request, ("application/json",))
    body = await _read_body(
        request, limit=_wire.MAX_SINGLE_BODY_BYTES, decompressed_limit=_wire.MAX_SINGLE_BODY_BYTES
    )
    batch_id = _batch_id(request)
    try:
        entry = schema.ENTRY.validate_json(body)
    except ValidationError as exc:
        counters.rejected("invalid")
        return _json(400, {"error": "validation failed", "details": schema.validation_details(exc)})
    received_at = _now()
    rows = schema.make_rows([entry], batch_id=batch_id, received_at=received_at)
    if _wire.BATCH_ID_HEADER in request.headers:
        # The client can retry this request: its own message, so JetStream deduplicates by Nats-Msg-Id.
        await publish_rows(request.app[BROKER], counters.metrics, rows, batch_id, received_at=received_at)
    else:
        await request.app[_COALESCER].publish(rows[0])
    counters.accepted["/log"].inc()
    return _json(202, {"status": "accepted", "timestamp": received_at, "id": rows[0]["id"]})


#: A line of the joined array (see _ndjson_rows) whose first token is not `{`.
_NOT_AN_OBJECT_LINE = re.compile(rb"\n[ \t\r\x0b\x0c]*[^ \t\r\x0b\x0c{]")


def _ndjson_lines(body: bytes) -> list[bytes]:
    """The non-blank lines of an NDJSON body (413 past MAX_BATCH_ENTRIES)."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    if len(lines) > _wire.MAX_BATCH_ENTRIES:
        raise _too_large(_wire.MAX_BATCH_ENTRIES, "entry count")
    return lines


def _ndjson_rows(lines: list[bytes], *, batch_id: str, received_at: str) -> list[dict[str, Any]] | None:
    """The rows of all lines, validated in ONE pydantic call (the per-call overhead is a sixth of the work),
    or None when any line is invalid (the caller then validates line by line, for per-index errors).

    The lines are joined as a JSON array, each on its own line. That yields exactly one entry per line, as if
    each were validated alone: a JSON string cannot hold a raw newline, entries hold no arrays, and every line
    starts with `{` - so each separating comma is the array's own, and the count check rules out a line
    holding two entries."""
    if not lines:
        return None
    joined = b"[\n" + b",\n".join(lines) + b"]"
    if _NOT_AN_OBJECT_LINE.search(joined):
        return None
    try:
        rows = schema.rows_from_json(joined, batch_id=batch_id, received_at=received_at)
    except ValidationError:
        return None
    return rows if len(rows) == len(lines) else None


def _validate_lines(lines: list[bytes]) -> tuple[list[schema.Entry], list[int], list[dict[str, Any]], int]:
    entries: list[schema.Entry] = []
    indexes: list[int] = []
    rejected: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        try:
            entries.append(schema.ENTRY.validate_json(line))
            indexes.append(index)
        except ValidationError as exc:
            rejected.append({"index": index, "error": _summary(exc)})
    return entries, indexes, rejected, len(lines)


def _array_rows(body: bytes, *, batch_id: str, received_at: str) -> list[dict[str, Any]] | None:
    """The rows of a JSON array of entries, or None if it is empty or not all valid (see _validate_array)."""
    try:
        rows = schema.rows_from_json(body, batch_id=batch_id, received_at=received_at)
    except ValidationError:
        return None
    if len(rows) > _wire.MAX_BATCH_ENTRIES:
        raise _too_large(_wire.MAX_BATCH_ENTRIES, "entry count")
    return rows or None


def _validate_array(body: bytes) -> tuple[list[schema.Entry], list[int], list[dict[str, Any]], int]:
    try:
        entries = schema.ENTRY_LIST.validate_json(body)
    except ValidationError:
        pass
    else:
        if len(entries) > _wire.MAX_BATCH_ENTRIES:
            raise _too_large(_wire.MAX_BATCH_ENTRIES, "entry count")
        return entries, list(range(len(entries))), [], len(entries)
    try:
        items = schema.ANY_LIST.validate_json(body)
    except ValidationError as exc:
        raise _HTTPProblem(
            400,
            "validation failed",
            "body",
            f"expected a JSON array of entries: {schema.validation_details(exc)[0]['reason']}",
        ) from exc
    if len(items) > _wire.MAX_BATCH_ENTRIES:
        raise _too_large(_wire.MAX_BATCH_ENTRIES, "entry count")
    valid: list[schema.Entry] = []
    indexes: list[int] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            # Re-validate from JSON so both content types apply exactly the same (JSON-mode) rules.
            valid.append(schema.ENTRY.validate_json(schema.dumps(item)))
            indexes.append(index)
        except ValidationError as exc:
            rejected.append({"index": index, "error": _summary(exc)})
    return valid, indexes, rejected, len(items)


def _summary(exc: ValidationError) -> str:
    return "; ".join(f"{d['field']}: {d['reason']}" for d in schema.validation_details(exc))


async def _post_logs(request: web.Request, counters: _Counters) -> web.Response:
    # Checked before the body is read: each batch in flight may hold up to MAX_BATCH_DECOMPRESSED_BYTES.
    if counters.batches_in_flight >= counters.max_batches_in_flight:
        raise _HTTPProblem(
            429,
            "too many requests",
            "body",
            f"{counters.max_batches_in_flight} batches are in flight on this server; retry later",
            headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_SECONDS)},
        )
    counters.batches_in_flight += 1
    try:
        return await _accept_batch(request, counters)
    finally:
        counters.batches_in_flight -= 1


async def _accept_batch(request: web.Request, counters: _Counters) -> web.Response:
    _check_type(request, (_wire.NDJSON_CONTENT_TYPE, "application/json"))
    body = await _read_body(
        request, limit=_wire.MAX_BATCH_BODY_BYTES, decompressed_limit=_wire.MAX_BATCH_DECOMPRESSED_BYTES
    )
    batch_id = _batch_id(request)
    received_at = _now()
    # The common case first: every entry valid, validated and made into rows in one pydantic call. Otherwise
    # the entries are validated one by one, for per-index errors.
    if request.content_type == "application/json":
        rows = _array_rows(body, batch_id=batch_id, received_at=received_at)
        if rows is not None:
            return await _publish_batch(request, counters, rows, batch_id, received_at, [])
        entries, indexes, rejected, total = _validate_array(body)
    else:
        lines = _ndjson_lines(body)
        rows = _ndjson_rows(lines, batch_id=batch_id, received_at=received_at)
        if rows is not None:
            return await _publish_batch(request, counters, rows, batch_id, received_at, [])
        entries, indexes, rejected, total = _validate_lines(lines)
    if rejected:
        counters.rejected("invalid", len(rejected))
    if not entries:
        reason = "no entries in the body" if total == 0 else "no valid entries"
        return _json(
            400, {"error": "validation failed", "reason": reason, "accepted": 0, "rejected": rejected}
        )
    rows = schema.make_rows(
        entries, batch_id=batch_id, received_at=received_at, indexes=indexes if rejected else None
    )
    return await _publish_batch(request, counters, rows, batch_id, received_at, rejected)


async def _publish_batch(
    request: web.Request,
    counters: _Counters,
    rows: list[dict[str, Any]],
    batch_id: str,
    received_at: str,
    rejected: list[dict[str, Any]],
) -> web.Response:
    await publish_rows(request.app[BROKER], counters.metrics, rows, batch_id, received_at=received_at)
    counters.accepted["/logs"].inc(len(rows))
    return _json(202, {"accepted": len(rows), "rejected": rejected})


async def _coalescer_ctx(app: web.Application) -> AsyncIterator[None]:
    app[_COALESCER] = _Coalescer(app[BROKER], app[METRICS])
    yield
    await app[_COALESCER].close()


def setup(app: web.Application, *, max_batches_in_flight: int = DEFAULT_MAX_BATCHES_IN_FLIGHT) -> None:
    """Add POST /log and POST /logs (needs BROKER and METRICS, see resources)."""
    check_at_least(1, max_batches_in_flight=max_batches_in_flight)
    app[_COUNTERS] = _Counters(app[METRICS], max_batches_in_flight=max_batches_in_flight)
    app.cleanup_ctx.append(_coalescer_ctx)
    app.router.add_post("/log", _handler("/log", _post_log))
    app.router.add_post("/logs", _handler("/logs", _post_logs))
