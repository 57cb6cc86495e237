"""OTLP/HTTP bodies -> ExportLogsServiceRequest: binary protobuf, or OTLP/JSON with its hex ids and bounds.

Pure functions, no I/O. The mapping onto wire entries is `mapping.py`; the binary walk that counts and
slices protobuf bodies is `protowire.py`; the bounded, piecewise OTLP/JSON parse is `jsondoc.py`.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from oglogstream import wire
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from . import jsondoc
from .jsondoc import MAX_JSON_VALUES
from .protowire import MAX_SCOPE_ATTRIBUTES, MAX_SCOPES, Oversized

__all__ = [
    "LONG_STRING_CHARS",
    "MAX_JSON_VALUES",
    "SPAN_ID_BYTES",
    "TRACE_ID_BYTES",
    "PayloadError",
    "decode_json",
    "decode_protobuf",
]

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8
#: Strings longer than this (characters) skip json_format: it runs a surrogate regex over every string it
#: sets, with the GIL held (0.66 s for 15 million characters), so they are set on the message directly (C:
#: a UTF-8 encode) after ParseDict has set a short stand-in in their place. The mapping then clips them.
LONG_STRING_CHARS = 64 * 1024


class PayloadError(ValueError):
    """The request body cannot be decoded as an ExportLogsServiceRequest (HTTP 400, not retryable)."""


def decode_protobuf(body: bytes) -> ExportLogsServiceRequest:
    """Parse a binary protobuf ExportLogsServiceRequest."""
    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError) as exc:
        raise PayloadError(f"body: not a valid protobuf ExportLogsServiceRequest ({exc})") from None
    return request


def decode_json(body: bytes) -> tuple[ExportLogsServiceRequest, dict[int, str]]:
    """Parse OTLP/JSON. Returns the request and errors found in individual records (by record index).

    OTLP/JSON departs from the protobuf JSON mapping in one way that matters: `traceId`/`spanId` are hex,
    not base64. We rewrite them to base64 before handing each record to json_format; a record whose id is
    not valid hex, or that holds too many values (jsondoc.MAX_PIECE_VALUES), is rejected on its own (partial
    success) instead of failing the whole request. Unknown fields are ignored, as the OTLP spec requires of
    receivers. The body is parsed in bounded pieces (jsondoc.py) and each piece becomes protobuf before the
    next is parsed. Oversized past a bound (the binary walk's, protowire.count_log_records, checked on list
    lengths before anything inside is parsed); PayloadError for invalid JSON, a wrong shape or nesting past
    jsondoc.MAX_JSON_DEPTH.
    """
    try:
        envelope = jsondoc.envelope(body)
        _check_shape(envelope)
        request = ExportLogsServiceRequest()
        decoded = _Decoded()
        decoded.fill(envelope, request)
    except jsondoc.JsonShapeError as exc:
        raise PayloadError(f"body: {exc}") from None
    return request, decoded.errors


class _Decoded:
    """The envelope's fields applied in the body's order onto the request, as json_format applies them: a
    repeated field set again (its other spelling) or set to null is cleared first. Records are numbered
    across the request; the records a clear removes are always the last ones numbered, so their numbers
    and errors are taken back."""

    def __init__(self) -> None:
        self.errors: dict[int, str] = {}
        self.index = 0

    def fill(self, node: jsondoc.Node, message: Message) -> None:
        for name, value in node.fields:
            if name in _REPEATED:
                self._clear(message, name)
                if value is None:
                    continue
                if name == "log_records":
                    self._records(value, getattr(message, name))
                    continue
                for item in value:
                    if item is None:  # as json_format: null is no element of a repeated field
                        raise PayloadError(f"body: null is not allowed as an element of {_REPEATED[name]}")
                    self.fill(item, getattr(message, name).add())
            elif value is None:
                message.ClearField(name)
            elif name == "schema_url":  # a string, as json_format checks it
                _parse_into({"schemaUrl": jsondoc.piece(value, "schemaUrl")}, message, len(value))
            else:  # resource, scope: present once named, even if empty (json_format's SetInParent)
                getattr(message, name).SetInParent()
                _parse_into(_bounded(jsondoc.piece(value, name), name), getattr(message, name), len(value))

    def _clear(self, message: Message, name: str) -> None:
        removed = _records_in(getattr(message, name), name)
        if removed:
            self.index -= removed
            self.errors = {i: e for i, e in self.errors.items() if i < self.index}
        message.ClearField(name)

    def _records(self, raws: list[Any], out: Any) -> None:
        for raw, record in zip(raws, jsondoc.records(raws), strict=True):  # one value or TooBig per raw
            record_out = out.add()
            if record is None:
                raise PayloadError("body: null is not allowed as an element of logRecords")
            if isinstance(record, jsondoc.TooBig):
                self.errors[self.index] = f"record: {record}"
            else:
                problem = _rewrite_hex_ids(record)
                if problem:
                    self.errors[self.index] = problem
                _parse_into(record, record_out, len(raw))
            self.index += 1


#: The repeated envelope fields (proto name -> JSON name).
_REPEATED = {"resource_logs": "resourceLogs", "scope_logs": "scopeLogs", "log_records": "logRecords"}


def _records_in(items: Any, name: str) -> int:
    """Log records held by the repeated field `name`'s current `items`."""
    if name == "log_records":
        return len(items)
    if name == "scope_logs":
        return sum(len(scope.log_records) for scope in items)
    return sum(_records_in(resource.scope_logs, "scope_logs") for resource in items)


_Path = tuple[tuple[str, int | None], ...]


def _parse_into(value: Any, message: Message, raw_bytes: int) -> None:
    """json_format.ParseDict of one piece (`raw_bytes` long as JSON) into `message`; every exception it
    raises (ParseError, and the OverflowError/ValueError of a non-finite number where protobuf wants an
    integer) is a PayloadError."""
    if value is None:
        return
    long_strings: list[tuple[_Path, str]] = []
    if raw_bytes > LONG_STRING_CHARS:  # only then can it hold a longer string: no walk for the others
        _set_aside_long_strings(value, message.DESCRIPTOR, (), long_strings)
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
        for path, text in long_strings:
            _put_back(message, path, text)
    except Exception as exc:  # hostile input may make json_format raise anything
        raise PayloadError(f"body: not a valid OTLP/JSON ExportLogsServiceRequest ({exc})") from None


def _set_aside_long_strings(
    value: Any, descriptor: Descriptor, path: _Path, out: list[tuple[_Path, str]]
) -> None:
    """Replace each string longer than LONG_STRING_CHARS set in a string field of `value` (a parsed JSON
    object for message `descriptor`) by "", appending (path of field names and indexes, string) to `out`.
    A field given twice (camelCase and snake_case) keeps json_format's rule: the later key wins."""
    if not isinstance(value, dict):
        return  # json_format reports the shape error
    last: dict[str, str] = {}
    fields: list[tuple[str, FieldDescriptor]] = []
    for key in value:
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if field is not None:
            last[field.name] = key
            fields.append((key, field))
    for key, field in fields:
        item = value[key]
        long = isinstance(item, str) and len(item) > LONG_STRING_CHARS
        if long and field.type == FieldDescriptor.TYPE_STRING:
            value[key] = ""
            if last[field.name] == key:
                out.append(((*path, (field.name, None)), item))
        elif field.message_type is not None and isinstance(item, list):
            for index, element in enumerate(item):
                _set_aside_long_strings(element, field.message_type, (*path, (field.name, index)), out)
        elif field.message_type is not None:
            _set_aside_long_strings(item, field.message_type, (*path, (field.name, None)), out)


def _put_back(message: Message, path: _Path, text: str) -> None:
    """Set `text` at `path` (from _set_aside_long_strings) in the parsed message; UnicodeEncodeError for a
    lone surrogate, as json_format refuses one."""
    *steps, (name, _) = path
    holder: Any = message
    for step, index in steps:
        holder = getattr(holder, step)
        if index is not None:
            holder = holder[index]
    setattr(holder, name, text)


def _check_shape(envelope: jsondoc.Node) -> None:
    """The binary walk's bounds (protowire.count_log_records) on the envelope's list lengths, every
    spelling counted, before any resource, scope or record is parsed: Oversized past a bound."""
    resources = _all(envelope, "resource_logs")
    if len(resources) > MAX_SCOPES:
        raise Oversized(MAX_SCOPES, "resourceLogs")
    scopes = [scope for resource in resources if resource for scope in _all(resource, "scope_logs")]
    if len(scopes) > MAX_SCOPES:
        raise Oversized(MAX_SCOPES, "scopeLogs")
    if sum(len(_all(scope, "log_records")) for scope in scopes if scope) > wire.MAX_BATCH_ENTRIES:
        raise Oversized(wire.MAX_BATCH_ENTRIES, "log records")


def _all(node: jsondoc.Node, name: str) -> list[Any]:
    """The elements of every occurrence of the repeated field `name` in `node`."""
    return [item for field, items in node.fields if field == name and items for item in items]


def _bounded(holder: Any, what: str) -> Any:
    """A resource or scope, Oversized past MAX_SCOPE_ATTRIBUTES attributes (before json_format)."""
    attributes = holder.get("attributes") if isinstance(holder, dict) else None
    if isinstance(attributes, list) and len(attributes) > MAX_SCOPE_ATTRIBUTES:
        raise Oversized(MAX_SCOPE_ATTRIBUTES, f"attributes on one {what}")
    return holder


def _rewrite_hex_ids(record: Any) -> str | None:
    """Hex trace/span ids of one record -> base64 (json_format's bytes); the first problem, if any."""
    if not isinstance(record, dict):
        return None  # json_format reports the shape error
    found = None
    for camel, snake, size in (("traceId", "trace_id", TRACE_ID_BYTES), ("spanId", "span_id", SPAN_ID_BYTES)):
        for key in (camel, snake):
            if key in record:
                problem = _hex_to_base64(record, key, size)
                if problem and found is None:
                    found = f"{camel}: {problem}"
    return found


def _hex_to_base64(record: dict[str, Any], key: str, size: int) -> str | None:
    value = record[key]
    if value is None or value == "":
        del record[key]
        return None
    if not isinstance(value, str):
        del record[key]
        return f"expected a hex string, got {type(value).__name__}"
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        del record[key]
        return f"not a hex string: {value[:80]!r}"
    if len(raw) != size:
        del record[key]
        return f"expected {size * 2} hex digits, got {len(value)}"
    record[key] = base64.b64encode(raw).decode("ascii")
    return None
