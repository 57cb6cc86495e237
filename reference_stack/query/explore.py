"""Query role, exploring: GET /api/attributes (top attribute keys and values) and GET /api/logs/{id}/context
(the entries around one entry). Both feed the dashboard's side panel and entry detail (docs/api-explore.md).

Filters, errors, metrics and the storage threads are the query API's own (`filters.Filters`, `query._run`,
`query._instrumented`), so these routes accept and reject exactly what `/api/logs` does. Work is bounded: at
most MAX_KEYS keys x MAX_VALUES values, MAX_CONTEXT entries each side, and every statement carries the query
API's server-side time limit (a runaway statement ends in 503, not a held thread).
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from ..http.boundary import Problem
from ..ingestion.row_codec import dumps, public_entry
from ..ingestion.schema import ID_PATTERN
from ..storage.migrations import LOGS_TABLE
from .filters import Filters, ParamError, check_known, format_micros, parse_int, single
from .query import _bad_parameter, _instrumented, _run
from .query_sql import _COLUMNS as ENTRY_COLUMNS
from .query_sql import statement_settings, typed_attributes

__all__ = [
    "DEFAULT_ATTRIBUTES_RANGE",
    "DEFAULT_CONTEXT",
    "DEFAULT_KEYS",
    "DEFAULT_VALUES",
    "MAX_CONTEXT",
    "MAX_KEYS",
    "MAX_SUMMARY_MEMORY",
    "MAX_VALUES",
    "attribute_summary",
    "entry_context",
    "setup",
]

#: /api/attributes: keys returned by default and at most; values per key by default and at most.
DEFAULT_KEYS = 20
MAX_KEYS = 100
DEFAULT_VALUES = 10
MAX_VALUES = 100
#: /api/attributes without `from`: this many seconds before `to` (or now), like /api/histogram. An open range
#: would read every attribute ever stored for a side panel.
DEFAULT_ATTRIBUTES_RANGE = 3600
#: /api/logs/{id}/context: entries each side by default and at most.
DEFAULT_CONTEXT = 20
MAX_CONTEXT = 200

#: Memory one attribute-summary statement may use (bytes). Counting values exactly holds one group per
#: distinct (key, value); a key unique per entry (a request id) over a long range would otherwise grow
#: without bound, and embedded chDB shares the server's process. Beyond it: 400 asking for a narrower range.
MAX_SUMMARY_MEMORY = 512 * 1024**2
#: The query parameters of each route (anything else is a 400; openapi.py documents exactly these).
ATTRIBUTES_PARAMS = (*Filters.PARAMS, "keys", "values")
CONTEXT_PARAMS = ("before", "after")

_ID = re.compile(ID_PATTERN)
_MEMORY_LIMIT = "MEMORY_LIMIT_EXCEEDED"


def setup(app: web.Application) -> None:
    """Add the explore routes (call after `query.setup`: they share its latency histogram)."""
    for route, handler in (
        ("/api/attributes", get_attributes),
        ("/api/logs/{id}/context", get_context),
    ):
        app.router.add_get(route, _instrumented(route, handler))


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def attribute_summary(client: Client, filters: Filters, keys: int, values: int) -> list[dict[str, Any]]:
    """`[{"key", "count", "values": [{"value", "count"}]}]`: the `keys` most frequent attribute keys among the
    filtered entries (count = entries carrying the key), most frequent first (ties by key), each with its
    `values` most frequent values. Two statements: top keys, then top values of those keys only."""
    conditions, params = filters.where()
    key_sql = (
        f"SELECT key, count() AS n FROM {LOGS_TABLE} ARRAY JOIN mapKeys(attributes) AS key "
        f"{_where(conditions)} GROUP BY key ORDER BY n DESC, key LIMIT {{a_keys:UInt32}}"
    )
    settings = statement_settings(max_memory_usage=MAX_SUMMARY_MEMORY)
    top = client.query(key_sql, parameters=dict(params, a_keys=keys), settings=settings).result_rows
    if not top:
        return []
    # `kind` keeps the JSON type (the typed maps of migration 2): 500 and "500" are different values.
    value_sql = (
        f"SELECT key, value, multiIf(mapContains(attributes_bool, key), 'bool', "
        "mapContains(attributes_number, key), 'number', 'string') AS kind, count() AS n "
        f"FROM {LOGS_TABLE} ARRAY JOIN mapKeys(attributes) AS key, mapValues(attributes) AS value "
        f"{_where([*conditions, 'key IN {a_names:Array(String)}'])} "
        "GROUP BY key, value, kind ORDER BY key, n DESC, value, kind LIMIT {a_values:UInt32} BY key"
    )
    names = [str(key) for key, _ in top]
    value_params = dict(params, a_names=names, a_values=values)
    per_key: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    result = client.query(value_sql, parameters=value_params, settings=settings)
    for key, value, kind, count in result.result_rows:
        per_key[str(key)].append({"value": _typed_value(str(key), str(value), kind), "count": int(count)})
    return [{"key": str(key), "count": int(count), "values": per_key[str(key)]} for key, count in top]


def _typed_value(key: str, text: str, kind: str) -> Any:
    # The value with its JSON type, rebuilt exactly as /api/logs rebuilds an entry's (query_sql).
    row: dict[str, Any] = {"attributes": {key: text}}
    if kind == "bool":
        row["attributes_bool"] = {key: text == "true"}
    elif kind == "number":
        row["attributes_number"] = {key: float(text)}
    return typed_attributes(row)["attributes"][key]


async def get_attributes(request: web.Request) -> web.Response:
    """Top attribute keys and values over the filtered range (default: DEFAULT_ATTRIBUTES_RANGE s to now)."""
    query = request.query
    try:
        check_known(query, ATTRIBUTES_PARAMS)
        filters = Filters.from_query(query)
        raw_keys, raw_values = single(query, "keys"), single(query, "values")
        keys = DEFAULT_KEYS if raw_keys is None else parse_int(raw_keys, "keys", low=1, high=MAX_KEYS)
        values = (
            DEFAULT_VALUES if raw_values is None else parse_int(raw_values, "values", low=1, high=MAX_VALUES)
        )
        to_us = filters.to_us if filters.to_us is not None else time.time_ns() // 1000
        from_us = filters.from_us
        if from_us is None:
            from_us = to_us - DEFAULT_ATTRIBUTES_RANGE * 10**6
    except ParamError as exc:
        raise _bad_parameter(exc) from None
    bounded = dataclasses.replace(filters, from_us=from_us, to_us=to_us)
    summary = await _run(request, _bounded_summary, bounded, keys, values)
    if summary is None:
        raise Problem(
            400,
            "range too large",
            "from",
            f"counting the attribute values of this range needs more than {MAX_SUMMARY_MEMORY} bytes of "
            "memory; narrow from/to or add filters (service, level, ...)",
        )
    body = {"from": format_micros(from_us), "to": format_micros(to_us), "keys": summary}
    return web.Response(body=dumps(body), content_type="application/json")


def _bounded_summary(client: Client, filters: Filters, keys: int, values: int) -> list[dict[str, Any]] | None:
    # None when the statement hit MAX_SUMMARY_MEMORY (a property of the request, not a storage outage).
    try:
        return attribute_summary(client, filters, keys, values)
    except Exception as exc:
        if _MEMORY_LIMIT in str(exc):
            return None
        raise


def entry_context(client: Client, entry_id: str, before: int, after: int) -> dict[str, Any] | None:
    """`{"before": [rows oldest first], "entry": row, "after": [rows oldest first]}` around the entry
    `entry_id` within its service and host, in (timestamp, id) order; None when no entry has that id."""
    found = list(
        client.query(
            f"SELECT {ENTRY_COLUMNS} FROM {LOGS_TABLE} WHERE id = {{c_id:String}} LIMIT 1",
            parameters={"c_id": entry_id},
            settings=statement_settings(),
        ).named_results()
    )
    if not found:
        return None
    entry = typed_attributes(found[0])
    params = {
        "c_id": entry_id,
        "c_ts": int(entry["ts_us"]),
        "c_service": entry["service"],
        "c_host": entry.get("host") or "",
    }
    same = "service = {c_service:String} AND host = {c_host:String}"
    at = "fromUnixTimestamp64Micro({c_ts:Int64}, 'UTC')"
    sides: dict[str, list[dict[str, Any]]] = {}
    for side, count, compare, order in (("before", before, "<", "DESC"), ("after", after, ">", "ASC")):
        if count == 0:
            sides[side] = []
            continue
        # (timestamp, id) strictly before/after the entry; the bare `timestamp <=`/`>=` lets the key prune.
        sql = (
            f"SELECT {ENTRY_COLUMNS} FROM {LOGS_TABLE} WHERE {same} AND timestamp {compare}= {at} "
            f"AND (timestamp {compare} {at} OR id {compare} {{c_id:String}}) "
            f"ORDER BY timestamp {order}, id {order} LIMIT {{c_limit:UInt32}}"
        )
        rows = list(
            client.query(
                sql, parameters=dict(params, c_limit=count), settings=statement_settings()
            ).named_results()
        )
        rows = [typed_attributes(row) for row in rows]
        sides[side] = rows[::-1] if order == "DESC" else rows
    return {"before": sides["before"], "entry": entry, "after": sides["after"]}


async def get_context(request: web.Request) -> web.Response:
    """The entry `{id}` and up to `before`/`after` entries around it (same service, host); 404 unknown id."""
    query = request.query
    entry_id = request.match_info["id"]
    try:
        check_known(query, CONTEXT_PARAMS)
        if not _ID.fullmatch(entry_id):
            raise ParamError("id", "not an entry id (letters, digits and _ . : - only)")
        counts = []
        for name in ("before", "after"):
            raw = single(query, name)
            counts.append(DEFAULT_CONTEXT if raw is None else parse_int(raw, name, low=0, high=MAX_CONTEXT))
    except ParamError as exc:
        raise _bad_parameter(exc) from None
    context = await _run(request, entry_context, entry_id, *counts)
    if context is None:
        raise Problem(404, "entry not found", "id", f"no stored entry has id {entry_id!r}")
    body = {
        "before": [public_entry(row) for row in context["before"]],
        "entry": public_entry(context["entry"]),
        "after": [public_entry(row) for row in context["after"]],
    }
    return web.Response(body=dumps(body), content_type="application/json")
