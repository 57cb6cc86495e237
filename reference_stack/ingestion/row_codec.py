"""Rows as JetStream payload bytes: writing rows (`dump_rows`, `dumps`), reading a payload back at C speed
(`payload_ids`, `split_rows`, `row_timestamp`), the live tail's NDJSON (`live_payload`, `live_entries`) and
the public entry shape (`public_entry`).

A payload is the JSON array `dump_rows(make_rows(...))` writes (`schema`): each row starts with `{"id":"`,
its second key is `timestamp` and its last `received_at`, so these helpers find rows by position.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Mapping
from operator import methodcaller
from typing import Any

import msgspec
import pydantic_core
from oglogstream import wire
from pydantic import ConfigDict, TypeAdapter, with_config
from typing_extensions import TypedDict

from .schema import BOOL_MAP, NUMBER_MAP
from .timestamps import format_timestamp

__all__ = [
    "attribute_value_types",
    "dump_rows",
    "dumps",
    "live_entries",
    "live_payload",
    "payload_ids",
    "public_entry",
    "row_dicts",
    "row_timestamp",
    "split_rows",
]

#: Finds the id of every row but the first in a JetStream payload (a JSON array of rows, each starting with
#: `{"id":"`). Safe because quotes inside JSON strings are escaped and the only nested object (`attributes`)
#: follows a `:`, never `},`. The literal prefix lets `re` scan with memchr: ~0.2 µs per row.
_NEXT_ROW_ID = re.compile(rb'\},\{"id":"([A-Za-z0-9_.:\-]{1,%d})"' % wire.MAX_ID_CHARS)
_FIRST_ROW_ID = re.compile(rb'\[\{"id":"([A-Za-z0-9_.:\-]{1,%d})"' % wire.MAX_ID_CHARS)
#: A row's head: `timestamp` is its second key (`make_rows`), written as `format_timestamp` writes it.
_ROW_TIMESTAMP = re.compile(
    rb'\{"id":"[A-Za-z0-9_.:\-]{1,%d}","timestamp":"([0-9T:.\-]{26}Z)"' % wire.MAX_ID_CHARS
)

_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "object": dict[str, Any]}
#: A row's types, for serialising: every column of `wire.COLUMNS` (the entry plus received_at), any key.
_Row = with_config(ConfigDict(extra="allow", ser_json_inf_nan="null"))(
    TypedDict(  # type: ignore[operator]
        "_Row", {field.name: _JSON_TYPES[field.json_type] for field in wire.COLUMNS}, total=False
    )
)


#: Serialises `make_rows` output with the types known up front (a third faster than `dumps`' inference).
_ROW_LIST: TypeAdapter[list[_Row]] = TypeAdapter(list[_Row])
#: Writes the same compact JSON as pydantic-core for strings (same escapes: `\u001f`, raw UTF-8 otherwise),
#: ints, bools and dicts, 2.5x faster than _ROW_LIST; floats differ (1e+308 here is 1e308 there).
_ENCODER = msgspec.json.Encoder()
_get_attributes = methodcaller("get", "attributes")
_is_dict = dict.__instancecheck__


def attribute_value_types(rows: list[dict[str, Any]]) -> set[type]:
    """The types of all attribute values of `rows` (row dicts whose `attributes`, when present, is a dict):
    C-level passes, about 30 ns a value."""
    values = itertools.chain.from_iterable(map(dict.values, filter(None, map(_get_attributes, rows))))
    return set(map(type, values))


def dump_rows(rows: list[Any]) -> bytes:
    """`dumps(row_dicts(rows))`, byte for byte, for rows that `make_rows` built from validated entries (whose
    values have exactly the declared types; any other key is still serialised, by inference, as `dumps`
    would) or that `fast_rows.rows_from_json` made as `fast_rows.Row` structs (never with a float value).
    Rows without float attribute values (the only floats a row holds, typed maps included) are written by
    msgspec - a struct's fields in declaration order, None and UNSET left out, as its dict has them - the
    others by pydantic-core, whose float format `dumps` has."""
    dicts = list(filter(_is_dict, rows))
    if float not in attribute_value_types(dicts):
        return _ENCODER.encode(rows)
    if len(dicts) < len(rows):  # rare: slices of one NDJSON body decided by both paths
        rows = row_dicts(rows)
    return _ROW_LIST.dump_json(rows, warnings=False)  # type: ignore[arg-type]


def row_dicts(rows: list[Any]) -> list[dict[str, Any]]:
    """`rows` as dicts, in row key order: dict rows as they are, `fast_rows.Row` structs converted (fields
    that are None or UNSET left out, as `dump_rows` writes them)."""
    return [row if row.__class__ is dict else msgspec.to_builtins(row) for row in rows]


#: A row's own `received_at` is its last key: followed by the row's `}` and then the next row or the array's
#: end. An attribute named received_at is followed by the attributes' `}` and then the row's `,"received_at"`.
_RECEIVED_AT = re.compile(rb',"received_at":"[^"]*"(?=\}(?:,\{"id":"|\]\Z))')


#: A row's typed maps (`,"attributes_number":{...}`): keys are JSON strings, values numbers or booleans. Only
#: a row key can match: inside a string every quote is escaped, and attribute values are never objects.
_TYPED_MAPS = re.compile(
    rb',"(?:%s|%s)":\{(?:"(?:[^"\\]|\\.)*":[^,}]*,?)*\}' % (NUMBER_MAP.encode(), BOOL_MAP.encode())
)
_TYPED_MAP_KEYS = (b'"%s":{' % NUMBER_MAP.encode(), b'"%s":{' % BOOL_MAP.encode())


#: The last row's `received_at` (its last key, right before the array's end).
_LAST_RECEIVED_AT = re.compile(rb',"received_at":"([0-9T:.\-]{1,40}Z)"\}\]\Z')


def _shared_received_at(payload: bytes) -> str | None:
    """The `received_at` every row of the payload has (one ingestion request's rows share it), or None."""
    last = _LAST_RECEIVED_AT.search(payload, max(0, len(payload) - 64))
    if last is None:
        return None
    end = b',"received_at":"' + last.group(1) + b'"},{"id":"'
    return last.group(1).decode() if payload.count(end) == payload.count(b'},{"id":"') else None


def live_payload(payload: bytes, received_at: str | None = None) -> bytes:
    """NDJSON of public entries from a row payload (`dumps(make_rows(...))`), at C speed: rows are the public
    shape plus their typed maps (removed here; only payloads that have some pay that pass) and a last
    `received_at` key, and rows are separated by `},{"id":"` (see `payload_ids`).

    When every row has the same `received_at` (given by the caller, or found so by two counts), one plain
    replace removes it instead of a regex pass (same bytes out: quotes inside JSON strings are escaped, so
    `,"received_at":"..."},{"id":"` only occurs where a row ends and the next begins)."""
    if _TYPED_MAP_KEYS[0] in payload or _TYPED_MAP_KEYS[1] in payload:
        payload = _TYPED_MAPS.sub(b"", payload)
    if received_at is None:
        received_at = _shared_received_at(payload)
    if received_at is not None:
        end = b',"received_at":"' + received_at.encode() + b'"}'
        body = payload[1:-1].replace(end + b',{"id":"', b'}\n{"id":"')
        if body.endswith(end) and payload.startswith(b"[") and payload.endswith(b"]"):
            return body[: -len(end)] + b"}"
    return _RECEIVED_AT.sub(b"", payload)[1:-1].replace(b'},{"id":"', b'}\n{"id":"')


def live_entries(payload: bytes) -> bytes:
    """NDJSON of public entries from a LIVE_SUBJECT payload: a row payload (what ingestion publishes) through
    `live_payload`; NDJSON (what an ingestion of the release before published) as it is."""
    return live_payload(payload) if payload[:1] == b"[" else payload


def payload_ids(payload: bytes) -> list[str] | None:
    """The row ids of a JetStream payload written by `dumps(make_rows(...))`, or None if it is not one."""
    first = _FIRST_ROW_ID.match(payload)
    if first is None or not payload.endswith(b"}]"):
        return None
    return [first.group(1).decode()] + [m.decode() for m in _NEXT_ROW_ID.findall(payload)]


def split_rows(payload: bytes) -> list[bytes]:
    """The rows of a `payload_ids`-valid payload as separate JSON objects (bytes), in order."""
    rows = []
    start = 1
    for match in _NEXT_ROW_ID.finditer(payload):
        rows.append(payload[start : match.start() + 1])
        start = match.start() + 2
    rows.append(payload[start:-1])
    return rows


def row_timestamp(row: bytes) -> str | None:
    """The `timestamp` of one row of `split_rows` as the row carries it ("2026-11-27T10:00:00.123456Z"): read
    from the row's head (~0.3 µs), else by parsing the row (a head `make_rows` did not write); None if the row
    is not a JSON object with a string `timestamp` (ClickHouse refuses such a row; it is isolated, not
    deduplicated)."""
    head = _ROW_TIMESTAMP.match(row)
    if head is not None:
        return head.group(1).decode()
    try:
        value = pydantic_core.from_json(row)
    except ValueError:
        return None
    stamp = value.get("timestamp") if isinstance(value, dict) else None
    return stamp if isinstance(stamp, str) else None


def _public_timestamp(value: object) -> str:
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    text = str(value)
    if text.endswith("Z"):
        return text
    # ClickHouse renders DateTime64(6, 'UTC') as "2026-11-27 10:00:00.123456".
    return format_timestamp(dt.datetime.fromisoformat(text.replace(" ", "T")))


def public_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """The public entry shape (GET /api/logs, /ws/live) from a stored row or a validated row dict:
    id, timestamp (RFC 3339 UTC, µs, `Z`), level, message, service always; the rest only when non-empty."""
    out: dict[str, Any] = {key: row.get(key, "") for key in wire.PUBLIC_ALWAYS}
    out["timestamp"] = _public_timestamp(out["timestamp"])
    for key in wire.PUBLIC_OPTIONAL:
        value = row.get(key)
        if value:
            out[key] = dict(value) if key == "attributes" else value
    return out


def dumps(value: Any) -> bytes:
    """Compact JSON bytes (pydantic-core's serializer: several times faster than `json.dumps`)."""
    return pydantic_core.to_json(value)
