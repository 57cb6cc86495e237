"""OTLP/HTTP bodies -> ExportLogsServiceRequest: binary protobuf, or OTLP/JSON with its hex ids and bounds.

Pure functions, no I/O. The mapping onto wire entries is `mapping.py`; the binary walk that counts and
slices protobuf bodies is `protowire.py`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from oglogstream import wire
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from ..batch_decode import separators
from .protowire import MAX_SCOPE_ATTRIBUTES, MAX_SCOPES, Oversized

__all__ = [
    "MAX_JSON_VALUES",
    "SPAN_ID_BYTES",
    "TRACE_ID_BYTES",
    "PayloadError",
    "decode_json",
    "decode_protobuf",
]

#: JSON values an OTLP/JSON request may hold: MAX_BATCH_ENTRIES records of some 16 fields and MAX_ATTRIBUTES
#: attributes (two values each: key and value) - twice what POST /logs allows, for OTLP/JSON's wordier shape.
MAX_JSON_VALUES = wire.MAX_BATCH_ENTRIES * (16 + 2 * wire.MAX_ATTRIBUTES)
TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8


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
    not base64. We rewrite them to base64 before handing the document to json_format; a record whose id is
    not valid hex is rejected on its own (partial success) instead of failing the whole request.
    Unknown fields are ignored, as the OTLP spec requires of receivers.
    """
    # Bounded before parsing, as on POST /logs: a few KB of gzip can hold millions of `{}`.
    if body.count(b",") >= MAX_JSON_VALUES and separators(body) + 1 > MAX_JSON_VALUES:
        raise Oversized(MAX_JSON_VALUES, "JSON values in one request")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"body: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise PayloadError("body: expected a JSON object (ExportLogsServiceRequest)")
    _check_json_shape(document)
    record_errors = _rewrite_hex_ids(document)
    request = ExportLogsServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise PayloadError(f"body: not a valid OTLP/JSON ExportLogsServiceRequest ({exc})") from None
    return request, record_errors


def _items(parent: Mapping[str, Any], camel: str, snake: str) -> list[Any]:
    value = parent.get(camel, parent.get(snake))
    return value if isinstance(value, list) else []


def _check_json_shape(document: dict[str, Any]) -> None:
    """The binary walk's bounds (protowire.count_log_records) on a parsed OTLP/JSON document, checked
    with list lengths before json_format builds any message: Oversized past a bound."""
    resources = _items(document, "resourceLogs", "resource_logs")
    if len(resources) > MAX_SCOPES:
        raise Oversized(MAX_SCOPES, "resourceLogs")
    scopes = records = 0
    for resource_logs in resources:
        if not isinstance(resource_logs, dict):
            continue  # json_format reports the shape error
        _check_json_attributes(resource_logs, "resource")
        for scope_logs in _items(resource_logs, "scopeLogs", "scope_logs"):
            scopes += 1
            if scopes > MAX_SCOPES:
                raise Oversized(MAX_SCOPES, "scopeLogs")
            if isinstance(scope_logs, dict):
                _check_json_attributes(scope_logs, "scope")
                records += len(_items(scope_logs, "logRecords", "log_records"))
                if records > wire.MAX_BATCH_ENTRIES:
                    raise Oversized(wire.MAX_BATCH_ENTRIES, "log records")


def _check_json_attributes(parent: dict[str, Any], what: str) -> None:
    holder = parent.get(what)
    if isinstance(holder, dict) and len(_items(holder, "attributes", "attributes")) > MAX_SCOPE_ATTRIBUTES:
        raise Oversized(MAX_SCOPE_ATTRIBUTES, f"attributes on one {what}")


def _rewrite_hex_ids(document: dict[str, Any]) -> dict[int, str]:
    errors: dict[int, str] = {}
    index = 0
    for resource_logs in _items(document, "resourceLogs", "resource_logs"):
        if not isinstance(resource_logs, dict):
            continue  # json_format reports the shape error
        for scope_logs in _items(resource_logs, "scopeLogs", "scope_logs"):
            if not isinstance(scope_logs, dict):
                continue
            for record in _items(scope_logs, "logRecords", "log_records"):
                if isinstance(record, dict):
                    for camel, snake, size in (
                        ("traceId", "trace_id", TRACE_ID_BYTES),
                        ("spanId", "span_id", SPAN_ID_BYTES),
                    ):
                        for key in (camel, snake):
                            if key in record:
                                problem = _hex_to_base64(record, key, size)
                                if problem:
                                    errors.setdefault(index, f"{camel}: {problem}")
                index += 1
    return errors


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
