"""The OpenAPI document's tables: every query parameter (schema from the handlers' own bounds, prose), the
error statuses per kind of route, and each operation's summary, parameters, request body and answer shape.

Read by openapi.py, which builds the document from the app's router; the rules behind each entry are named
there. Nothing here restates a bound: each is the constant the handler checks with.
"""

from __future__ import annotations

from typing import Any

from oglogstream import wire

from ..ingestion import batch_decode
from ..ingestion.otlp.receiver import OTLP_LOGS_PATH
from ..processing import deadletter
from ..query import explore, filters, query
from ..query.filters import ATTR_PREFIX, Filters

__all__ = ["ERRORS", "OPENAPI_PATH", "OPERATIONS", "PARAMETERS", "PROBLEM_SCHEMA", "ROUTE_PARAMETERS",
           "entry_schema"]

OPENAPI_PATH = "/openapi.json"

_TIME = {"type": "string", "description": "RFC 3339 date-time with an offset, e.g. 2026-11-29T12:00:00Z"}


def _int(low: int, high: int, default: int | None = None) -> dict[str, Any]:
    schema_: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    return schema_ if default is None else {**schema_, "default": default}


_REPEATABLE = {"type": "array", "items": {"type": "string"}}

#: Every query parameter a route accepts, by name: (JSON Schema, description). `attr.*` stands for the family.
#: Bounds are the constants the handlers check with (a 400 past them; tests/stack/test_openapi.py tries each).
PARAMETERS: dict[str, tuple[dict[str, Any], str]] = {
    "level": (
        _REPEATABLE,
        f"Level(s) {', '.join(wire.LEVELS)}, any case, comma-separated or repeated; "
        "Python's and syslog's names too (WARNING, CRITICAL, err, notice).",
    ),
    "service": ({**_REPEATABLE, "maxItems": filters.MAX_SERVICES}, "Service name; repeat for several."),
    "q": (
        {"type": "string", "maxLength": filters.MAX_Q_CHARS},
        f"Full-text words, all must appear in the message (at most {filters.MAX_Q_WORDS} words).",
    ),
    "logger": ({"type": "string"}, "Exact logger name."),
    "host": ({"type": "string"}, "Exact host name."),
    "trace_id": ({"type": "string"}, "Exact trace id."),
    f"{ATTR_PREFIX}*": (
        {"type": "string"},
        "A family of parameters, one per condition (the name holds the attribute key: OpenAPI cannot "
        f"declare it, see x-oglog-name-pattern), at most {filters.MAX_ATTR_FILTERS}, ANDed: "
        "`attr.<key>=<value>` equal (string form), `attr.<key>!=<value>` not equal, "
        "`attr.<key>>=<n>`, `<=`, `>`, `<` numeric, "
        "`attr.<key>=*` present, `attr.<key>!=*` absent. See docs/api.md.",
    ),
    "from": (_TIME, "Start of the time range (inclusive)."),
    "to": (_TIME, "End of the time range (exclusive)."),
    "limit": (_int(1, query.MAX_LIMIT, query.DEFAULT_LIMIT), "Page size."),
    "offset": (_int(0, query.MAX_OFFSET, 0), "Entries to skip (prefer `cursor`)."),
    "cursor": ({"type": "string"}, "The previous page's `X-Next-Cursor`."),
    "settle": (
        {"type": "boolean", "default": False},
        "Wait (at most 5 s) until every entry acknowledged (202) before this request is stored; "
        "`X-Oglog-Settled: true|false` says whether it was.",
    ),
    "interval": ({"type": "string"}, "Bucket width: 30s, 5m, 1h, 1d or seconds; default: about 60 buckets."),
    "keys": (
        _int(1, explore.MAX_KEYS, explore.DEFAULT_KEYS),
        "How many attribute keys (most frequent first).",
    ),
    "values": (
        _int(1, explore.MAX_VALUES, explore.DEFAULT_VALUES),
        "How many values per key (most frequent).",
    ),
    "before": (_int(0, explore.MAX_CONTEXT, explore.DEFAULT_CONTEXT), "Entries before this one."),
    "after": (_int(0, explore.MAX_CONTEXT, explore.DEFAULT_CONTEXT), "Entries after this one."),
}
#: Where a route gives a parameter of the same name another meaning or bound.
ROUTE_PARAMETERS: dict[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("/api/dead-letters", "limit"): (
        _int(1, deadletter.MAX_PAGE, deadletter.DEFAULT_PAGE),
        f"Page size; a page also stops at {deadletter.PAGE_BYTES // 2**20} MiB of messages (see next_after).",
    ),
    ("/api/dead-letters", "after"): (_int(0, 2**63 - 1, 0), "Return dead letters after this sequence."),
}
#: The error statuses each kind of route documents (any other 4XX/5XX is still a problem document).
ERRORS: dict[str | None, tuple[str, ...]] = {
    "ingest": ("400", "401", "403", "408", "413", "415", "429", "503"),
    "query": ("400", "401", "403", "404", "429", "503"),
    "admin": ("400", "401", "403", "404", "429", "503"),
    None: (),
}


def entry_schema() -> dict[str, Any]:
    """A public entry: the table's fields (the always-present ones required); attributes keep JSON types."""
    kinds = {"string": {"type": "string"}, "integer": {"type": "integer"}}
    properties: dict[str, Any] = {}
    for field in wire.FIELDS:
        if field.json_type == "object":
            value = {"type": ["string", "number", "integer", "boolean"]}
            properties[field.name] = {"type": "object", "additionalProperties": value}
        else:
            properties[field.name] = dict(kinds[field.json_type])
    properties["level"]["enum"] = list(wire.LEVELS)
    return {"type": "object", "properties": properties, "required": list(wire.PUBLIC_ALWAYS)}


_ENTRIES = {"type": "array", "items": {"$ref": "#/components/schemas/Entry"}}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_TYPED_VALUE = {"type": ["string", "number", "integer", "boolean"]}


def _object(required: tuple[str, ...], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


#: (method, canonical path) -> summary, the route's query parameters (None: takes none), request body media
#: types -> schema, and the success answer (status, media type, schema).
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/log"): {
        "summary": "Ingest one entry",
        "body": {"application/json": {"$ref": "#/components/schemas/NewEntry"}},
        "ok": (
            "202",
            _object(
                ("status", "timestamp", "id"),
                status={"const": "accepted"},
                timestamp=_TIME,
                id={"type": "string"},
            ),
        ),
    },
    ("POST", "/logs"): {
        "summary": "Ingest a batch: NDJSON (one NewEntry per line) or a JSON array, optionally gzip",
        "body": {
            wire.NDJSON_CONTENT_TYPE: {"type": "string", "description": "One NewEntry JSON object per line."},
            "application/json": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/NewEntry"},
                "maxItems": wire.MAX_BATCH_ENTRIES,
            },
        },
        "ok": (
            "202",
            _object(
                ("accepted", "rejected", "rejected_count"),
                accepted={"type": "integer", "description": "Entries stored (durable in JetStream)."},
                rejected={
                    "type": "array",
                    "maxItems": batch_decode.MAX_REJECTED_ERRORS,
                    "description": "The first refused entries, by index, with why; count rejected_count.",
                    "items": _object(("index", "error"), index={"type": "integer"}, error={"type": "string"}),
                },
                rejected_count={
                    "type": "integer",
                    "description": "Every refused entry (not stored); clients count this, not the list.",
                },
            ),
        ),
    },
    ("POST", OTLP_LOGS_PATH): {
        "summary": "OTLP/HTTP logs (protobuf or JSON ExportLogsServiceRequest, OpenTelemetry protocol)",
        "body": {
            "application/x-protobuf": {"type": "string", "format": "binary"},
            "application/json": {"type": "object"},
        },
        "ok": ("200", {"type": "object"}),
    },
    ("GET", "/api/logs"): {
        "summary": "Entries, newest first; the next page is named by X-Next-Cursor and Link",
        "params": query.LOGS_PARAMS,
        "ok": ("200", _ENTRIES),
    },
    ("GET", "/api/stats"): {
        "summary": "Counts: total, by level, by service",
        "params": query.STATS_PARAMS,
        "ok": (
            "200",
            _object(
                ("total_logs", "logs_by_level", "logs_by_service"),
                total_logs={"type": "integer"},
                logs_by_level=_COUNTS,
                logs_by_service=_COUNTS,
            ),
        ),
    },
    ("GET", "/api/histogram"): {
        "summary": "Counts per time bucket and level",
        "params": query.HISTOGRAM_PARAMS,
        "ok": (
            "200",
            _object(
                ("interval", "interval_seconds", "from", "to", "buckets"),
                interval={"type": "string"},
                interval_seconds={"type": "integer"},
                **{"from": _TIME, "to": _TIME},
                buckets={
                    "type": "array",
                    "items": _object(
                        ("timestamp", "total", "counts"),
                        timestamp=_TIME,
                        total={"type": "integer"},
                        counts=_COUNTS,
                    ),
                },
            ),
        ),
    },
    ("GET", "/api/attributes"): {
        "summary": "Top attribute keys of the filtered range, and the top values of each",
        "params": explore.ATTRIBUTES_PARAMS,
        "ok": (
            "200",
            _object(
                ("from", "to", "keys"),
                **{"from": _TIME, "to": _TIME},
                keys={
                    "type": "array",
                    "items": _object(
                        ("key", "count", "values"),
                        key={"type": "string"},
                        count={"type": "integer"},
                        values={
                            "type": "array",
                            "items": _object(
                                ("value", "count"), value=_TYPED_VALUE, count={"type": "integer"}
                            ),
                        },
                    ),
                },
            ),
        ),
    },
    ("GET", "/api/logs/{id}/context"): {
        "summary": "The entries just before and after one entry, same service and host",
        "params": explore.CONTEXT_PARAMS,
        "ok": (
            "200",
            _object(
                ("before", "entry", "after"),
                before=_ENTRIES,
                entry={"$ref": "#/components/schemas/Entry"},
                after=_ENTRIES,
            ),
        ),
    },
    ("GET", "/ws/live"): {
        "summary": "Live tail (WebSocket upgrade; one JSON entry per text message, filtered)",
        "params": Filters.LIVE_PARAMS,
        "ok": ("101", None),
    },
    ("GET", "/api/dead-letters"): {
        "summary": "Batches that could not be stored, oldest first",
        "params": deadletter.LIST_PARAMS,
        "ok": (
            "200",
            _object(
                ("dead_letters", "next_after", "total"),
                dead_letters={"type": "array"},
                next_after={"type": ["integer", "null"]},
                total={"type": "integer"},
            ),
        ),
    },
    ("POST", "/api/dead-letters/replay"): {
        "summary": "Re-publish dead letters for storage",
        "body": {"application/json": {"type": "object"}},
        "ok": (
            "200",
            _object(("replayed", "failed"), replayed={"type": "integer"}, failed={"type": "array"}),
        ),
    },
    ("POST", "/api/dead-letters/discard"): {
        "summary": "Delete dead letters",
        "body": {"application/json": {"type": "object"}},
        "ok": (
            "200",
            _object(("discarded", "failed"), discarded={"type": "integer"}, failed={"type": "array"}),
        ),
    },
    ("DELETE", "/api/dead-letters/{seq}"): {
        "summary": "Delete one dead letter",
        "ok": (
            "200",
            _object(("discarded", "failed"), discarded={"type": "integer"}, failed={"type": "array"}),
        ),
    },
    ("GET", "/api/keys"): {
        "summary": "Active API keys (ids, names, scopes; never the secret)",
        "ok": ("200", _object(("keys",), keys={"type": "array"})),
    },
    ("GET", "/health"): {"summary": "Health of this node (NATS, storage)", "ok": ("200", {"type": "object"})},
    ("GET", "/metrics"): {"summary": "Prometheus metrics", "ok": ("200", None)},
    ("GET", "/"): {"summary": "The web dashboard", "ok": ("200", None)},
    ("GET", "/assets/{name}"): {"summary": "Dashboard assets", "ok": ("200", None)},
    ("GET", OPENAPI_PATH): {"summary": "This document", "ok": ("200", {"type": "object"})},
}

PROBLEM_SCHEMA = _object(
    ("type", "title", "status", "detail", "field", "reason"),
    type={"type": "string", "description": "urn:oglogstream:problem:<kind>"},
    title={"type": "string"},
    status={"type": "integer"},
    detail={"type": "string"},
    field={"type": "string", "description": "The parameter, header or entry field at fault."},
    reason={"type": "string"},
    error={"type": "string"},
    details={
        "type": "array",
        "items": _object(("field", "reason"), field={"type": "string"}, reason={"type": "string"}),
    },
)


