"""Ingestion role: `POST /log` (one entry) and `POST /logs` (a batch), answered 202 only once JetStream
has the entries on disk.

A request's accepted entries become rows (schema.make_rows, typed attribute maps included) and ONE JetStream
message whose payload is the JSON array of rows, exactly what the processor inserts (`INSERT ... FORMAT
JSONEachRow` takes an array); its headers are `messages.rows_headers` (the row format among them).
`Nats-Msg-Id` and the stem of derived entry ids come from dedup: bound to the body when the client gives
X-Oglog-Batch-Id (a retried request is stored once by the broker, another body under a reused id is not lost);
without one the stem is the body's digest (a resent body's timestamped entries are stored once) and the
message id random. A payload over the server's max_payload is split into messages `<id>/<k>of<n>`,
deterministically (publish.py). Concurrent POST /log requests without a batch id share messages (see
_Coalescer).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from oglogstream import wire as _wire
from pydantic import ValidationError

from ..broker.broker import Broker
from ..config import check_at_least
from ..http.boundary import (
    Problem,
    body_started,
    check_media,
    problem_response,
    read_body,
    to_problem,
)
from ..http.metrics import Metrics
from ..http.resources import BROKER, CONFIG, METRICS
from . import batch_decode, dedup, row_codec, schema
from .publish import payload_limit, publish_parts, publish_rows, split_rows
from .slots import (
    DEFAULT_MAX_BATCHES_IN_FLIGHT,
    DEFAULT_MAX_BATCHES_PER_CLIENT,
    OVERLOAD_RETRY_AFTER_SECONDS,
    BatchSlots,
    client_of,
)

__all__ = [
    "DEFAULT_MAX_BATCHES_IN_FLIGHT",
    "DEFAULT_MAX_BATCHES_PER_CLIENT",
    "OVERLOAD_RETRY_AFTER_SECONDS",
    "publish_rows",
    "setup",
]

#: Bodies up to this size (decompressed) and with at most _INLINE_DECODE_OBJECTS `}` are decoded on the
#: event loop (about 1 ms of work per 64 KiB of valid entries); others on a worker thread.
_INLINE_DECODE_BYTES = 64 * 1024
#: An invalid entry costs 5-10 µs (its error), a valid one about 2: 9,000 `{}` lines are only 27 KB but
#: held the loop for 75 ms. `}` counts entries (and nested objects) from above without parsing.
_INLINE_DECODE_OBJECTS = 500
#: Answers larger than this go gzip-compressed to clients that accept it (the SDK does): a 400 or 202 listing
#: MAX_REJECTED_ERRORS long errors is up to ~25 KB as JSON, several times less compressed.
_COMPRESS_ANSWER_BYTES = 8 * 1024
_BATCH_ID = re.compile(schema.ID_PATTERN)


def _given_batch_id(request: web.Request) -> str | None:
    """The client's X-Oglog-Batch-Id, checked (400 when it is not an id); None when not given."""
    given = request.headers.get(_wire.BATCH_ID_HEADER)
    if given is not None and not _BATCH_ID.match(given):
        raise Problem(
            400,
            "validation failed",
            _wire.BATCH_ID_HEADER,
            f"must be 1..{_wire.MAX_ID_CHARS} characters of A-Z a-z 0-9 _ . : -",
        )
    return given


def _identity(given: str | None, body: bytes) -> dedup.Identity:
    """The request's dedup identity (see dedup): bound to its body (sha256) when the client names it."""
    return dedup.server_identity() if given is None else dedup.client_identity(given, body)


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


class _Counters:
    """Label children looked up once: `Counter.labels()` costs more than the increment itself."""

    def __init__(self, metrics: Metrics, slots: BatchSlots) -> None:
        self.metrics = metrics
        self.slots = slots
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
    with it gets its own message, whose Nats-Msg-Id binds that id to the body (dedup), as on POST /logs.
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
                await publish_rows(
                    self.broker, self.metrics, [row for row, _ in group], dedup.server_identity().message_id
                )
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
        except Exception as exc:
            problem = to_problem(exc)
            if problem is None:  # the error middleware answers 500 and logs it
                counters.request(route, 500)
                raise
            counters.rejected(problem.kind)
            response = problem_response(problem)
        counters.request(route, response.status)
        return response

    return handle


def _window(request: web.Request) -> schema.TimeWindow:
    return schema.current_window(request.app[CONFIG].retention_days)


async def _post_log(request: web.Request, counters: _Counters) -> web.Response:
    check_media(request, ("application/json",))
    body = await read_body(
        request, limit=_wire.MAX_SINGLE_BODY_BYTES, decompressed_limit=_wire.MAX_SINGLE_BODY_BYTES
    )
    given = _given_batch_id(request)
    ident = _identity(given, body)
    try:
        entry = schema.ENTRY.validate_json(body, context={"window": _window(request)})
    except ValidationError as exc:
        details = schema.validation_details(exc)
        raise Problem(
            400, "validation failed", details[0]["field"], details[0]["reason"], details=details
        ) from None
    received_at = _now()
    rows = schema.make_rows([entry], batch_id=ident.stem, received_at=received_at)
    if given is not None:
        # The client can retry this request: its own message, so JetStream deduplicates by Nats-Msg-Id.
        await publish_rows(request.app[BROKER], counters.metrics, rows, ident.message_id)
    else:
        await request.app[_COALESCER].publish(rows[0])
    counters.accepted["/log"].inc()
    return _json(202, {"status": "accepted", "timestamp": received_at, "id": rows[0]["id"]})


def _json(status: int, body: Any) -> web.Response:
    """A JSON answer, gzip-compressed when over _COMPRESS_ANSWER_BYTES and the client accepts gzip."""
    response = web.Response(status=status, body=row_codec.dumps(body), content_type="application/json")
    if response.content_length is not None and response.content_length > _COMPRESS_ANSWER_BYTES:
        response.enable_compression()  # only if the request's Accept-Encoding allows it
    return response


async def _post_logs(request: web.Request, counters: _Counters) -> web.Response:
    # A connection that declares a body and sends nothing must not hold a slot (408 after BODY_IDLE_TIMEOUT).
    await body_started(request, limit=_wire.MAX_BATCH_BODY_BYTES)
    # Taken before the rest of the body is read: each batch in flight may hold up to
    # MAX_BATCH_DECOMPRESSED_BYTES, and one client may hold only its share of the slots (slots.py).
    with counters.slots.take(client_of(request)):
        return await _accept_batch(request, counters)


async def _accept_batch(request: web.Request, counters: _Counters) -> web.Response:
    check_media(request, (_wire.NDJSON_CONTENT_TYPE, "application/json"))
    body = await read_body(
        request, limit=_wire.MAX_BATCH_BODY_BYTES, decompressed_limit=_wire.MAX_BATCH_DECOMPRESSED_BYTES
    )
    decode = functools.partial(
        _decode_batch,
        _given_batch_id(request),
        body,
        ndjson=request.content_type == _wire.NDJSON_CONTENT_TYPE,
        received_at=_now(),
        window=_window(request),
        limit=payload_limit(request.app[BROKER]),
    )
    # A large body is hashed, decoded and serialised in ONE worker-thread hop, where its Python parts share
    # the GIL with the event loop (hashing and part of the rest release it); a small one inline (the thread
    # hop would cost more than the work).
    inline = len(body) <= _INLINE_DECODE_BYTES and body.count(b"}") <= _INLINE_DECODE_OBJECTS
    ident, decoded, parts = decode() if inline else await asyncio.to_thread(decode)
    if decoded.rejected:
        counters.rejected("invalid", len(decoded.rejected))
    if not decoded.rows:
        reason = "no entries in the body" if decoded.total == 0 else "no valid entries"
        listed = batch_decode.answer_rejected(decoded.rejected)
        raise Problem(400, "validation failed", "body", reason, extra={"accepted": 0, **listed})
    await publish_parts(request.app[BROKER], counters.metrics, parts, ident.message_id)
    counters.accepted["/logs"].inc(len(decoded.rows))
    listed = batch_decode.answer_rejected(decoded.rejected)
    return _json(202, {"accepted": len(decoded.rows), **listed})


def _decode_batch(
    given: str | None,
    body: bytes,
    *,
    ndjson: bool,
    received_at: str,
    window: schema.TimeWindow,
    limit: int,
) -> tuple[dedup.Identity, batch_decode.Decoded, list[tuple[list[dict[str, Any]], bytes]]]:
    """Blocking: the request's identity, its rows and rejections (`batch_decode.decode`, Problem for a body
    that cannot be read as a batch) and the rows' payload parts of at most `limit` bytes (`split_rows`; none
    when no row is valid)."""
    ident = _identity(given, body)
    decoded = batch_decode.decode(
        body, ndjson=ndjson, batch_id=ident.stem, received_at=received_at, window=window
    )
    return ident, decoded, split_rows(decoded.rows, limit) if decoded.rows else []


async def _coalescer_ctx(app: web.Application) -> AsyncIterator[None]:
    app[_COALESCER] = _Coalescer(app[BROKER], app[METRICS])
    yield
    await app[_COALESCER].close()


def setup(
    app: web.Application,
    *,
    max_batches_in_flight: int = DEFAULT_MAX_BATCHES_IN_FLIGHT,
    max_batches_per_client: int = DEFAULT_MAX_BATCHES_PER_CLIENT,
) -> None:
    """Add POST /log and POST /logs (needs BROKER and METRICS, see resources). `max_batches_in_flight`:
    POST /logs bodies this process takes at once, `max_batches_per_client` of them one client (slots.py);
    ValueError when either is < 1 or the share exceeds the total."""
    check_at_least(
        1, max_batches_in_flight=max_batches_in_flight, max_batches_per_client=max_batches_per_client
    )
    app[_COUNTERS] = _Counters(app[METRICS], BatchSlots(max_batches_in_flight, max_batches_per_client))
    app.cleanup_ctx.append(_coalescer_ctx)
    app.router.add_post("/log", _handler("/log", _post_log))
    app.router.add_post("/logs", _handler("/logs", _post_logs))
