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
        resources = _check_shape(envelope)
        request = ExportLogsServiceRequest()
        errors: dict[int, str] = {}
        index = 0
        for resource_logs in resources:
            out = request.resource_logs.add()
            _parse_into(_bounded(jsondoc.piece(resource_logs.resource, "resource"), "resource"), out.resource)
            _schema_url(resource_logs, out)
            for scope_logs in _listed(resource_logs.scopeLogs, resource_logs.scope_logs):
                scope_out = out.scope_logs.add()
                _parse_into(_bounded(jsondoc.piece(scope_logs.scope, "scope"), "scope"), scope_out.scope)
                _schema_url(scope_logs, scope_out)
                for record in jsondoc.records(_listed(scope_logs.logRecords, scope_logs.log_records)):
                    record_out = scope_out.log_records.add()
                    if record is None:
                        raise PayloadError("body: null is not allowed as an element of logRecords")
                    if isinstance(record, jsondoc.TooBig):
                        errors[index] = f"record: {record}"
                    else:
                        problem = _rewrite_hex_ids(record)
                        if problem:
                            errors[index] = problem
                        _parse_into(record, record_out)
                    index += 1
    except jsondoc.JsonShapeError as exc:
        raise PayloadError(f"body: {exc}") from None
    return request, errors


def _listed(camel: list[Any] | None, snake: list[Any] | None) -> list[Any]:
    items: list[Any] = jsondoc.pick(camel, snake) or []
    if any(item is None for item in items):  # as json_format: null is no element of a repeated field
        raise PayloadError("body: null is not allowed as an element of resourceLogs or scopeLogs")
    return items


def _schema_url(item: jsondoc.ResourceLogs | jsondoc.ScopeLogs, out: Message) -> None:
    """`schemaUrl` set on `out` as json_format sets it (a non-string is a PayloadError, null leaves it)."""
    value = jsondoc.piece(jsondoc.pick(item.schemaUrl, item.schema_url), "schemaUrl")
    _parse_into({"schemaUrl": value}, out)


_Path = tuple[tuple[str, int | None], ...]


def _parse_into(value: Any, message: Message) -> None:
    """json_format.ParseDict of one piece into `message`; every exception it raises (ParseError, and the
    OverflowError/ValueError of a non-finite number where protobuf wants an integer) is a PayloadError."""
    if value is None:
        return
    long_strings: list[tuple[_Path, str]] = []
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


def _check_shape(envelope: jsondoc.Request) -> list[jsondoc.ResourceLogs]:
    """The binary walk's bounds (protowire.count_log_records) on the envelope's list lengths, before any
    resource, scope or record is parsed: Oversized past a bound."""
    resources = _listed(envelope.resourceLogs, envelope.resource_logs)
    if len(resources) > MAX_SCOPES:
        raise Oversized(MAX_SCOPES, "resourceLogs")
    scopes = records = 0
    for resource_logs in resources:
        for scope_logs in _listed(resource_logs.scopeLogs, resource_logs.scope_logs):
            scopes += 1
            if scopes > MAX_SCOPES:
                raise Oversized(MAX_SCOPES, "scopeLogs")
            records += len(jsondoc.pick(scope_logs.logRecords, scope_logs.log_records) or ())
            if records > wire.MAX_BATCH_ENTRIES:
                raise Oversized(wire.MAX_BATCH_ENTRIES, "log records")
    return resources


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
