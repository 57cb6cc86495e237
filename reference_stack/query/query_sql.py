"""Query role, SQL side: blocking functions `fn(client, ...)` meant to run through `Storage.run`.

The `logs` table is ordered by (service, timestamp), so "newest N rows across all services" cannot be read in
order: ClickHouse would read and sort the timestamp of every row. `latest_logs` therefore scans newest-first
in widening time segments (1 min, 10 min, 1 h, 6 h, 1 d, 7 d, then the rest) and stops as soon as it has
enough rows; the partition key and the primary key's timestamp column prune everything outside a segment. On
a busy table the first segment answers; on a quiet one every segment is small, so the extra statements cost
a millisecond or two each (see docs/benchmarks.md, "Query").
"""

from __future__ import annotations

import re
from typing import Any

from clickhouse_connect.driver.client import Client
from oglogstream import _wire, wire

from ..storage.migrations import LOGS_TABLE, TYPED_ATTRIBUTE_COLUMNS
from ..storage.scheduler import time_left
from .filters import Cursor, Filters

__all__ = [
    "LEVELS",
    "QUERY_TIMEOUT",
    "SEGMENTS",
    "SERVICE_SEGMENTS",
    "histogram",
    "is_timeout",
    "latest_logs",
    "statement_settings",
    "stats",
    "typed_attributes",
]

LEVELS = _wire.LEVELS
#: Seconds a query may take, waiting for a storage thread included (`Storage.query`'s deadline); each
#: statement's `max_execution_time` is the rest of it (`statement_settings`), so a runaway query ends with
#: a 503 instead of holding the storage thread (on chDB the only one, which the processor's inserts need).
QUERY_TIMEOUT = 30
#: The smallest `max_execution_time` a statement gets when its deadline is (nearly) past: ClickHouse
#: reads 0 as "no limit".
MIN_STATEMENT_TIME = 0.05
#: Newest-first scan windows, in seconds before the anchor (the cursor, `to`, or now).
SEGMENTS = (60, 600, 3600, 6 * 3600, 86400, 7 * 86400)
#: With a `service` filter the scan stays inside that service's key range (ORDER BY service, timestamp), so
#: a wide first window costs no more than a narrow one and saves a statement.
SERVICE_SEGMENTS = SEGMENTS[1:]
# The entry's columns (oglogstream.wire), the typed attribute maps, and the timestamp in µs for cursors.
_COLUMNS = ", ".join(
    (
        *(field.column for field in wire.FIELDS),
        *TYPED_ATTRIBUTE_COLUMNS,
        "toUnixTimestamp64Micro(timestamp) AS ts_us",
    )
)
_INTEGER = re.compile(r"-?[0-9]+")
_TIMEOUT_CODE = "159"  # TIMEOUT_EXCEEDED


def is_timeout(exc: BaseException) -> bool:
    """True when ClickHouse gave up because of `max_execution_time`."""
    text = str(exc)
    return "TIMEOUT_EXCEEDED" in text or f"Code: {_TIMEOUT_CODE}" in text


def statement_settings(**extra: Any) -> dict[str, Any]:
    """Settings for one statement: `max_execution_time` = QUERY_TIMEOUT, or the seconds left before the
    running query's deadline (`scheduler.time_left`) when fewer, at least MIN_STATEMENT_TIME; plus `extra`."""
    left = time_left()
    limit = QUERY_TIMEOUT if left is None else min(QUERY_TIMEOUT, max(MIN_STATEMENT_TIME, left))
    return {"max_execution_time": limit, **extra}


def typed_attributes(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with `attributes` holding each value's JSON type again and the typed maps removed: a bool from
    `attributes_bool`; a number from `attributes_number`, rebuilt from the exact stored text (99 stays the
    integer 99, 99.5 the float, a 64-bit integer exact); else the string. Rows stored before migration 2
    have empty typed maps: all their values come back as strings."""
    numbers = row.pop("attributes_number", None) or {}
    bools = row.pop("attributes_bool", None) or {}
    if numbers or bools:
        attributes = dict(row.get("attributes") or {})
        for key, text in attributes.items():
            if key in bools:
                attributes[key] = bool(bools[key])
            elif key in numbers:
                attributes[key] = int(text) if _INTEGER.fullmatch(text) else float(text)
        row["attributes"] = attributes
    return row


def _select(client: Client, conditions: list[str], params: dict[str, Any], tail: str) -> list[dict[str, Any]]:
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"SELECT {_COLUMNS} FROM {LOGS_TABLE} {where} ORDER BY timestamp DESC, id DESC {tail}"
    result = client.query(sql, parameters=params, settings=statement_settings())
    return [typed_attributes(row) for row in result.named_results()]


def latest_logs(
    client: Client, filters: Filters, cursor: Cursor | None, limit: int, offset: int, now_us: int
) -> list[dict[str, Any]]:
    """Rows newest first ((timestamp, id) descending), after `cursor` if given, `offset` skipped."""
    conditions, params = filters.where()
    anchor = now_us
    if cursor is not None:
        # Strictly after the cursor row in (timestamp DESC, id DESC) order; the `<=` lets the indexes prune.
        conditions.append(
            "timestamp <= fromUnixTimestamp64Micro({c_ts:Int64}, 'UTC') AND "
            "(timestamp < fromUnixTimestamp64Micro({c_ts:Int64}, 'UTC') OR id < {c_id:String})"
        )
        params.update(c_ts=cursor.timestamp_us, c_id=cursor.id)
        anchor = min(anchor, cursor.timestamp_us)
    if filters.to_us is not None:
        anchor = min(anchor, filters.to_us)
    if offset:
        # Offsets count rows across segments; one plain statement is simpler and no slower at depth.
        params.update(p_limit=limit, p_offset=offset)
        return _select(client, conditions, params, "LIMIT {p_limit:UInt32} OFFSET {p_offset:UInt32}")
    rows: list[dict[str, Any]] = []
    upper: int | None = None
    segments = SERVICE_SEGMENTS if filters.services else SEGMENTS
    for lower in (*(anchor - seconds * 10**6 for seconds in segments), None):
        if lower is not None and filters.from_us is not None and lower <= filters.from_us:
            lower = None  # `from` already bounds this, the last, segment
        segment = list(conditions)
        segment_params = dict(params, p_limit=limit - len(rows))
        if lower is not None:
            segment.append("timestamp >= fromUnixTimestamp64Micro({s_lower:Int64}, 'UTC')")
            segment_params["s_lower"] = lower
        if upper is not None:
            segment.append("timestamp < fromUnixTimestamp64Micro({s_upper:Int64}, 'UTC')")
            segment_params["s_upper"] = upper
        rows.extend(_select(client, segment, segment_params, "LIMIT {p_limit:UInt32}"))
        if len(rows) >= limit or lower is None:
            break
        upper = lower
    return rows


def stats(client: Client, filters: Filters) -> tuple[dict[str, int], dict[str, int]]:
    """(count per level with all five levels present, count per service, largest first)."""
    conditions, params = filters.where()
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    # One pass, grouped by the sort key's first column so ClickHouse aggregates in order (no hash table), with
    # the five levels as countIf columns: 3x faster at 10M rows than GROUP BY level (LowCardinality) or
    # GROUPING SETS (see docs/benchmarks.md, "Query").
    per_level = ", ".join(f"countIf(level = {{l_{level}:String}})" for level in LEVELS)
    params.update({f"l_{level}": level for level in LEVELS})
    sql = f"SELECT service, {per_level} FROM {LOGS_TABLE} {where} GROUP BY service"
    settings = statement_settings(optimize_aggregation_in_order=1)
    by_level = dict.fromkeys(LEVELS, 0)
    by_service: dict[str, int] = {}
    for service, *counts in client.query(sql, parameters=params, settings=settings).result_rows:
        by_service[service] = sum(int(n) for n in counts)
        for level, n in zip(LEVELS, counts, strict=True):
            by_level[level] += int(n)
    by_service = dict(sorted(by_service.items(), key=lambda item: (-item[1], item[0])))
    return by_level, by_service


def histogram(client: Client, filters: Filters, first_us: int, interval: int) -> dict[tuple[int, str], int]:
    """{(bucket start in µs, level): count} over the filters' [from, to) range; buckets are `interval` seconds
    wide and aligned on `first_us` (<= from), so every row falls in a bucket the caller also generates."""
    conditions, params = filters.where()
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        "SELECT {h_first:Int64} + "
        "intDiv(toUnixTimestamp64Micro(timestamp) - {h_first:Int64}, {h_step:Int64}) * {h_step:Int64} "
        f"AS bucket, level, count() FROM {LOGS_TABLE} {where} GROUP BY bucket, level"
    )
    params.update(h_first=first_us, h_step=interval * 10**6)
    rows = client.query(sql, parameters=params, settings=statement_settings()).result_rows
    return {(int(bucket), level): int(count) for bucket, level, count in rows}
