"""OTLP/JSON bytes -> the envelope, then its resources, scopes and log records parsed in bounded pieces.

A parser is one C call that holds the GIL from its first byte to its last: `json.loads` of a 32 MiB export
froze every other request of the process for the whole parse (1.5 s for the widest valid export on this
2-core machine under load, 8 s for 32 MiB of nested empty lists, which a comma count does not see). Here no
single call parses more than about SLICE_BYTES of input or MAX_PIECE_VALUES values:

1. `json_values` counts the JSON values on the bytes (commas, `[` and `{` outside strings: an upper bound on
   the values, containers included) in C-speed slices; past MAX_JSON_VALUES the body is refused unparsed.
2. `envelope`: msgspec reads resourceLogs -> scopeLogs -> logRecords level by level keeping each resource,
   scope and log record as raw bytes (`msgspec.Raw`): passes that build no value inside them. Each level's
   keys stay in the body's order (`Node`), so camelCase and snake_case spellings of one field are applied
   in order, the later winning, as json_format's ParseDict of the whole document did.
3. `records` parses raw log records with `pydantic_core.from_json`, SLICE_BYTES of them per call (a longer
   record alone); a record holding MAX_PIECE_VALUES values or more is rejected alone, unparsed. `piece`
   parses a resource or scope (Oversized past MAX_PIECE_VALUES). `from_json` refuses nesting deeper than
   MAX_JSON_DEPTH levels within a piece (JsonShapeError).

The caller (decode.py) turns each slice into protobuf messages before the next is parsed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pydantic_core
from oglogstream import wire

from .protowire import Oversized

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_JSON_VALUES",
    "MAX_PIECE_VALUES",
    "SLICE_BYTES",
    "JsonShapeError",
    "Node",
    "TooBig",
    "envelope",
    "json_values",
    "piece",
    "records",
]

#: JSON values (containers included) an OTLP/JSON request may hold: MAX_BATCH_ENTRIES records of some 32
#: fields and MAX_ATTRIBUTES attributes, each attribute `{"key": .., "value": {..}}` counting four.
MAX_JSON_VALUES = wire.MAX_BATCH_ENTRIES * (32 + 4 * wire.MAX_ATTRIBUTES)
#: Values one resource, scope or log record may hold (its attributes and a structured body): the most one
#: parser call handles, some 10-30 ms of GIL on a loaded 2-core machine.
MAX_PIECE_VALUES = 64 * 1024
#: Raw JSON bytes parsed per call: records are parsed together up to this size.
SLICE_BYTES = 64 * 1024
#: Nesting levels within one resource, scope or log record (pydantic_core.from_json's fixed recursion limit;
#: an AnyValue level takes 3-4 JSON levels, so some 50 nested kvlist/array levels, more than protobuf's 100
#: message levels allow).
MAX_JSON_DEPTH = 200

#: Bytes per C call of the value count (a few ms each).
_COUNT_SLICE = 256 * 1024
_ENVELOPE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


class JsonShapeError(ValueError):
    """The body is not JSON, or not shaped as an ExportLogsServiceRequest envelope (message says which)."""


#: The envelope's fields, by JSON key (OTLP/JSON allows lowerCamelCase and the proto names) -> proto name,
#: per message: ExportLogsServiceRequest, ResourceLogs, ScopeLogs. Other keys are ignored, as json_format
#: ignores unknown fields.
_REQUEST_FIELDS = {"resourceLogs": "resource_logs", "resource_logs": "resource_logs"}
_RESOURCE_LOGS_FIELDS = {"resource": "resource", "scopeLogs": "scope_logs", "scope_logs": "scope_logs",
                         "schemaUrl": "schema_url", "schema_url": "schema_url"}
_SCOPE_LOGS_FIELDS = {"scope": "scope", "logRecords": "log_records", "log_records": "log_records",
                      "schemaUrl": "schema_url", "schema_url": "schema_url"}
#: The element type of the repeated envelope fields.
_ELEMENT_FIELDS = {"resource_logs": _RESOURCE_LOGS_FIELDS, "scope_logs": _SCOPE_LOGS_FIELDS}
_OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_OBJECTS = msgspec.json.Decoder(list[dict[str, msgspec.Raw] | None])
_NULL = b"null"


class Node(msgspec.Struct):
    """One envelope message (the request, a ResourceLogs, a ScopeLogs): its known fields in the body's key
    order, as (proto name, value), so that a field given under both spellings is set twice, the later key
    winning, as json_format does. A value is None for JSON null; `resource_logs`/`scope_logs` are lists of
    Node (None for a null element); `log_records` is a list of raw records; other fields are raw JSON."""

    fields: list[tuple[str, Any]]


def _is_null(raw: msgspec.Raw | bytes) -> bool:
    return len(raw) == len(_NULL) and bytes(raw) == _NULL  # no copy of a long value


def _node(raw: msgspec.Raw | bytes, names: dict[str, str]) -> Node | None:
    """A Node from a raw JSON object with the keys `names` (None for null); msgspec errors for other
    shapes."""
    return None if _is_null(raw) else _fields(_OBJECT.decode(raw), names)


def _fields(members: dict[str, msgspec.Raw], names: dict[str, str]) -> Node:
    fields: list[tuple[str, Any]] = []
    for key, value in members.items():
        name = names.get(key)
        if name is None:
            continue
        if _is_null(value):
            fields.append((name, None))
        elif name == "log_records":
            fields.append((name, _LIST.decode(value)))
        elif name in _ELEMENT_FIELDS:
            # one pass for the list and the keys of its objects
            kind = _ELEMENT_FIELDS[name]
            fields.append((name, [None if e is None else _fields(e, kind) for e in _OBJECTS.decode(value)]))
        else:
            fields.append((name, value))
    return Node(fields)


def json_values(data: bytes | memoryview) -> int:
    """Commas, `[` and `{` outside the JSON strings of `data`: at least the number of values in it, minus
    one. C-speed passes over _COUNT_SLICE slices: escaped backslashes and quotes go first, then every `"`
    opens or closes a string, so the even pieces between quotes lie outside strings."""
    plain = bytes(data)
    if b"\\" in plain:  # a C-speed search; the replaces cost some 30 ms per 30 MB
        plain = plain.replace(b"\\\\", b"").replace(b'\\"', b"")
    count, inside = 0, False
    for start in range(0, len(plain), _COUNT_SLICE):
        pieces = plain[start : start + _COUNT_SLICE].split(b'"')
        outside = b"".join(pieces[1 if inside else 0 :: 2])
        count += outside.count(b",") + outside.count(b"[") + outside.count(b"{")
        inside ^= len(pieces) % 2 == 0  # an odd number of quotes in this slice flips the state
    return count


def _from_json(data: bytes, what: str) -> Any:
    try:
        return pydantic_core.from_json(data, cache_strings="keys")
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise JsonShapeError(f"{what} nested deeper than {MAX_JSON_DEPTH} levels") from None
        raise JsonShapeError(f"not valid JSON in {what} ({exc})") from None


def _too_many_values(data: bytes) -> bool:
    """Whether one piece holds MAX_PIECE_VALUES values or more (only a piece past SLICE_BYTES can)."""
    return len(data) > SLICE_BYTES and json_values(data) >= MAX_PIECE_VALUES


def piece(raw: msgspec.Raw, what: str) -> Any:
    """A resource, scope or schemaUrl value, parsed alone (Oversized past MAX_PIECE_VALUES)."""
    if not len(raw):
        return None
    data = bytes(raw)
    if _too_many_values(data):
        raise Oversized(MAX_PIECE_VALUES, f"JSON values in one {what}")
    return _from_json(data, what)


def records(raws: list[msgspec.Raw]) -> Iterator[Any]:
    """Each raw log record's value, in order, parsed SLICE_BYTES of records per call (a longer record alone);
    a record holding MAX_PIECE_VALUES values or more is not parsed and comes out as a `TooBig`. Lazily, so
    only one slice of parsed records is alive at a time (fewer objects for the collector to walk)."""
    batch: list[bytes] = []
    size = 0
    for raw in raws:
        data = bytes(raw)
        too_big = _too_many_values(data)
        if batch and (too_big or size + len(data) > SLICE_BYTES):
            yield from _from_json(b"[" + b",".join(batch) + b"]", "a log record")
            batch, size = [], 0
        if too_big:
            yield TooBig(f"more than {MAX_PIECE_VALUES} JSON values in one log record")
            continue
        batch.append(data)
        size += len(data) + 1
    if batch:
        yield from _from_json(b"[" + b",".join(batch) + b"]", "a log record")


class TooBig(str):
    """Why a log record was rejected without being parsed (see `records`)."""


def envelope(body: bytes) -> Node:
    """The request's envelope (see Node) with resources, scopes and log records left raw. Oversized past
    MAX_JSON_VALUES (counted on the bytes, before any parsing); JsonShapeError for invalid JSON, a shape
    that is not an ExportLogsServiceRequest, and for a body that is not UTF-8."""
    if json_values(body) + 1 > MAX_JSON_VALUES:
        raise Oversized(MAX_JSON_VALUES, "JSON values in one request")
    try:
        # msgspec skips unknown fields (and their keys) without checking their UTF-8; JSON is UTF-8 text
        # throughout, so the whole body is checked once (C speed: some 10 ms per 32 MiB).
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonShapeError(f"not valid UTF-8 at byte {exc.start}") from None
    try:
        request = _node(body, _REQUEST_FIELDS)
    except _ENVELOPE_ERRORS as exc:
        raise JsonShapeError(f"not a valid OTLP/JSON ExportLogsServiceRequest ({exc})") from None
    if request is None:
        raise JsonShapeError("not a valid OTLP/JSON ExportLogsServiceRequest (null)")
    return request
