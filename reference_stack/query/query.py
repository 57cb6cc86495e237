"""Query role, HTTP side: GET /api/logs, /api/stats and /api/histogram over the `logs` table.

Every statement uses server-side bound parameters (`{name:Type}`) and runs through `Storage.run`, so
ClickHouse (or embedded chDB) never blocks the event loop. The SQL lives in `query_sql.py`; this module
parses requests, calls it, and renders responses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Histogram

from ..http.boundary import Problem
from ..http.resources import METRICS, STORAGE
from ..ingestion.row_codec import dumps, public_entry
from ..ingestion.slots import client_of
from ..processing.flush import LOG_INTERVAL
from ..storage.scheduler import Busy
from . import query_sql
from .filters import Cursor, Filters, ParamError, check_known, format_micros, parse_int, parse_time, single
from .stored_barrier import BARRIER, SETTLE_TIMEOUT, StoredBarrier

__all__ = [
    "BUSY_RETRY_AFTER_SECONDS",
    "DEFAULT_HISTOGRAM_RANGE",
    "DEFAULT_LIMIT",
    "MAX_HISTOGRAM_BUCKETS",
    "MAX_HISTOGRAM_INTERVAL",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "NEXT_CURSOR_HEADER",
    "REFUSAL_HOLD_SECONDS",
    "SETTLED_HEADER",
    "setup",
]

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Offsets make ClickHouse read and discard every skipped row; past this, page with `cursor` instead.
MAX_OFFSET = 100_000
NEXT_CURSOR_HEADER = "X-Next-Cursor"
#: The answer to `settle=true`: "true" when everything acknowledged before the request was stored first,
#: "false" when SETTLE_TIMEOUT passed (entries accepted just before may be missing from this page).
SETTLED_HEADER = "X-Oglog-Settled"
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
#: What a query refused by the storage's limits (429/503) is told to wait before retrying (seconds).
BUSY_RETRY_AFTER_SECONDS = 1
#: A query refused at once (its client's share taken, or too many waiting) is answered after this many
#: seconds: a client that ignores Retry-After (the reviewer's flood loops) otherwise spins at 150-270
#: refusals/s in the process that also runs chDB and the processor, and other clients' ingestion took 2-3x
#: longer (docs/benchmarks.md, "Queries against inserts"). Holding costs one idle request of that client.
REFUSAL_HOLD_SECONDS = 1.0
_HELD_REASONS = frozenset({"client_share", "queue_full"})
#: /api/histogram without `from`: this many seconds before `to` (or now).
DEFAULT_HISTOGRAM_RANGE = 3600
#: The auto interval aims at about this many buckets; an explicit one may give at most MAX_HISTOGRAM_BUCKETS.
TARGET_HISTOGRAM_BUCKETS = 60
MAX_HISTOGRAM_BUCKETS = 1500
_NICE_INTERVALS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The widest histogram bucket: the column's whole range (1900..2299), 400 years of 366 days. Larger values
#: (up to 2**63 s) overflowed ClickHouse's Int64 bucket arithmetic into 503s and wrong totals.
MAX_HISTOGRAM_INTERVAL = 400 * 366 * 86400
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: The query parameters of each route (anything else is a 400; openapi.py documents exactly these).
LOGS_PARAMS = (*Filters.PARAMS, "limit", "offset", "cursor", "settle")
STATS_PARAMS = Filters.PARAMS
HISTOGRAM_PARAMS = (*Filters.PARAMS, "interval")

QUERY_LATENCY: web.AppKey[Histogram] = web.AppKey("oglog_query_latency", Histogram)
QUERIES_REFUSED: web.AppKey[Counter] = web.AppKey("oglog_queries_refused", Counter)
# When each refusal reason was last logged (time.monotonic()).
_REFUSAL_LOGGED: web.AppKey[dict[str, float]] = web.AppKey("oglog_query_refusal_logged", dict)


def _bad_parameter(exc: ParamError) -> Problem:
    return Problem(400, "invalid query parameter", exc.field, exc.reason)


def setup(app: web.Application) -> None:
    """Add the query routes (storage comes from the app's storage context, metrics from app[METRICS])."""
    app[QUERIES_REFUSED] = Counter(
        "oglog_query_refused",
        "Queries refused or given up before they ran, by reason (storage.scheduler.Busy.reason).",
        ["reason"],
        registry=app[METRICS].registry,
    )
    app[_REFUSAL_LOGGED] = {}
    app[BARRIER] = StoredBarrier(app)
    app[QUERY_LATENCY] = Histogram(
        "oglog_query_seconds",
        "Query API request duration by route.",
        ["route"],
        buckets=_LATENCY_BUCKETS,
        registry=app[METRICS].registry,
    )
    for route, handler in (
        ("/api/logs", get_logs),
        ("/api/stats", get_stats),
        ("/api/histogram", get_histogram),
    ):
        app.router.add_get(route, _instrumented(route, handler))


def _instrumented(route: str, handler: Callable[[web.Request], Awaitable[web.Response]]) -> Any:
    async def handle(request: web.Request) -> web.Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except (web.HTTPException, Problem) as exc:
            status = exc.status
            raise
        finally:
            request.app[METRICS].requests.labels(route, str(status)).inc()
            request.app[QUERY_LATENCY].labels(route).observe(time.perf_counter() - start)

    return handle


def _refused(request: web.Request, busy: Busy) -> Problem:
    """The answer to a query the storage refused or gave up on: 429 for a client over its share, else 503;
    counted by reason, logged at most once per LOG_INTERVAL per reason."""
    request.app[QUERIES_REFUSED].labels(busy.reason).inc()
    now = time.monotonic()
    last = request.app[_REFUSAL_LOGGED]
    if now - last.get(busy.reason, -LOG_INTERVAL) >= LOG_INTERVAL:
        last[busy.reason] = now
        log.warning("query refused on %s (%s): %s", request.path, busy.reason, busy)
    headers = {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)}
    if busy.reason == "client_share":
        return Problem(429, "too many requests", "query", str(busy), headers=headers, kind="query_busy")
    title = "shutting down" if busy.reason == "closed" else "storage busy"
    return Problem(503, title, "storage", str(busy), headers=headers, kind="query_busy")


async def _run(request: web.Request, fn: Any, *args: Any) -> Any:
    """Run a query function on the storage threads as this client's query, within QUERY_TIMEOUT seconds
    (waiting included). A refusal (`_refused`) or storage trouble becomes a 429/503 the client may retry."""
    storage = request.app[STORAGE]
    deadline = time.monotonic() + query_sql.QUERY_TIMEOUT
    try:
        return await storage.query(client_of(request), deadline, fn, *args)
    except Busy as busy:
        if busy.reason in _HELD_REASONS:
            await asyncio.sleep(REFUSAL_HOLD_SECONDS)
        raise _refused(request, busy) from None
    except Exception as exc:
        log.warning("query failed on %s: %s", request.path, exc)
        reason = (
            "query timed out" if query_sql.is_timeout(exc) else f"storage unavailable ({type(exc).__name__})"
        )
        raise Problem(503, "storage unavailable", "storage", reason, headers={"Retry-After": "1"}) from None


async def get_logs(request: web.Request) -> web.Response:
    """Newest first, filtered, in the public entry shape; `X-Next-Cursor`/`Link` name the next page. With
    `settle=true`, first waits (<= SETTLE_TIMEOUT) until every entry acknowledged before the request is
    stored, and says whether it got there in `X-Oglog-Settled`."""
    query = request.query
    try:
        check_known(query, LOGS_PARAMS)
        filters = Filters.from_query(query)
        raw_limit, raw_offset, raw_cursor = (single(query, name) for name in ("limit", "offset", "cursor"))
        limit = DEFAULT_LIMIT if raw_limit is None else parse_int(raw_limit, "limit", low=1, high=MAX_LIMIT)
        offset = 0 if raw_offset is None else parse_int(raw_offset, "offset", low=0, high=MAX_OFFSET)
        cursor = None if raw_cursor is None else Cursor.decode(raw_cursor)
        raw_settle = single(query, "settle")
        settle = False if raw_settle is None else _BOOLEANS.get(raw_settle.lower())
        if settle is None:
            raise ParamError("settle", f"expected true or false, got {raw_settle[:40]!r}")
    except ParamError as exc:
        raise _bad_parameter(exc) from None
    headers = {}
    if settle:  # read-your-acknowledged-writes (query/stored_barrier.py), at most SETTLE_TIMEOUT
        settled = await request.app[BARRIER].wait(SETTLE_TIMEOUT)
        headers[SETTLED_HEADER] = "true" if settled else "false"
    now_us = time.time_ns() // 1000
    rows = await _run(request, query_sql.latest_logs, filters, cursor, limit, offset, now_us)
    if len(rows) == limit:
        last = rows[-1]
        token = Cursor(int(last["ts_us"]), str(last["id"])).encode()
        headers[NEXT_CURSOR_HEADER] = token
        next_url = request.rel_url.without_query_params("cursor", "offset").update_query(cursor=token)
        headers["Link"] = f'<{next_url}>; rel="next"'
    body = dumps([public_entry(row) for row in rows])
    return web.Response(body=body, content_type="application/json", headers=headers)


async def get_stats(request: web.Request) -> web.Response:
    """The seed's shape: total_logs, logs_by_level (all five levels), logs_by_service; optional filters."""
    try:
        check_known(request.query, STATS_PARAMS)
        filters = Filters.from_query(request.query)
    except ParamError as exc:
        raise _bad_parameter(exc) from None
    by_level, by_service = await _run(request, query_sql.stats, filters)
    return web.json_response(
        {"total_logs": sum(by_level.values()), "logs_by_level": by_level, "logs_by_service": by_service}
    )


def parse_interval(value: str) -> int:
    """`30s`, `5m`, `1h`, `1d` or plain seconds -> seconds, in 1..MAX_HISTOGRAM_INTERVAL; else ParamError."""
    text = value.strip().lower()
    unit = text[-1:] if text[-1:] in _UNIT_SECONDS else "s"
    number = text[:-1] if text[-1:] in _UNIT_SECONDS else text
    # ASCII digits only: str.isdigit() also takes "²", which int() then refuses.
    if not (number.isascii() and number.isdigit()) or len(number) > 20 or int(number) < 1:
        raise ParamError("interval", f"expected a duration like 30s, 5m, 1h or 1d, got {value[:40]!r}")
    seconds = int(number) * _UNIT_SECONDS[unit]
    if seconds > MAX_HISTOGRAM_INTERVAL:
        raise ParamError(
            "interval", f"must be at most {MAX_HISTOGRAM_INTERVAL} s (400 years), got {value[:40]!r}"
        )
    return seconds


def _format_interval(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def auto_interval(span_seconds: float) -> int:
    """The smallest 'nice' interval that yields at most about TARGET_HISTOGRAM_BUCKETS buckets."""
    for interval in _NICE_INTERVALS:
        if span_seconds / interval <= TARGET_HISTOGRAM_BUCKETS:
            return interval
    return int(-(-span_seconds // TARGET_HISTOGRAM_BUCKETS))


async def get_histogram(request: web.Request) -> web.Response:
    """Counts per time bucket and level over [from, to): every bucket present (zeros too), oldest first."""
    query = request.query
    try:
        check_known(query, HISTOGRAM_PARAMS)
        filters = Filters.from_query(query, time_range=False)
        now_us = time.time_ns() // 1000
        raw_from, raw_to, raw_interval = (single(query, name) for name in ("from", "to", "interval"))
        to_us = now_us if raw_to is None else parse_time(raw_to, "to")
        from_us = (
            to_us - DEFAULT_HISTOGRAM_RANGE * 10**6 if raw_from is None else parse_time(raw_from, "from")
        )
        if from_us >= to_us:
            field = "to" if raw_to is not None else "from"
            raise ParamError(field, "must be later than from (and from earlier than now)")
        span = (to_us - from_us) / 10**6
        interval = auto_interval(span) if raw_interval is None else parse_interval(raw_interval)
        first = from_us // (interval * 10**6) * interval * 10**6
        buckets = -(-(to_us - first) // (interval * 10**6))
        if buckets > MAX_HISTOGRAM_BUCKETS:
            raise ParamError(
                "interval",
                f"{_format_interval(interval)} gives {buckets} buckets, at most {MAX_HISTOGRAM_BUCKETS}",
            )
    except ParamError as exc:
        raise _bad_parameter(exc) from None
    filters = dataclasses.replace(filters, from_us=from_us, to_us=to_us)
    counts = await _run(request, query_sql.histogram, filters, first, interval)
    step = interval * 10**6
    levels = filters.levels or query_sql.LEVELS
    out = []
    for index in range(buckets):
        start = first + index * step
        per_level = {level: counts.get((start, level), 0) for level in levels}
        out.append({"timestamp": format_micros(start), "total": sum(per_level.values()), "counts": per_level})
    return web.json_response(
        {
            "interval": _format_interval(interval),
            "interval_seconds": interval,
            "from": format_micros(from_us),
            "to": format_micros(to_us),
            "buckets": out,
        }
    )
