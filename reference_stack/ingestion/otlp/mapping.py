"""OTLP logs -> wire entries: mapping each LogRecord of a decoded request onto our entry shape.

Pure functions, no I/O, so the mapping can be tested without a server. The HTTP side is `receiver.py`, body
decoding `decode.py` (re-exported here). Long values are clipped as the SDK clips them
(`wire.clip_bytes`/`clip_chars`: head, TRUNCATION_MARKER, tail), so a long stack trace keeps both its first
frames and the error line.
The mapping is documented for users in docs/otlp.md; keep the two in step.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from oglogstream import wire
from oglogstream.wire import clip_bytes, clip_chars
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from ..schema import format_timestamp
from .decode import MAX_JSON_VALUES, SPAN_ID_BYTES, TRACE_ID_BYTES, PayloadError, decode_json, decode_protobuf

__all__ = [
    "ATTRIBUTE_DROP_COUNT_KEY",
    "MAX_JSON_VALUES",
    "RESOURCE_PREFIX",
    "SCOPE_PREFIX",
    "UNKNOWN_SERVICE",
    "MappedRecords",
    "PayloadError",
    "batch_id",
    "decode_json",
    "decode_protobuf",
    "level_for",
    "map_request",
    "request_digest",
]

#: The OTel spec's fallback when a resource has no `service.name`.
UNKNOWN_SERVICE = "unknown_service"
#: Resource attributes land in `attributes` under this prefix (`resource.deployment.environment`, ...).
RESOURCE_PREFIX = "resource."
#: Instrumentation-scope attributes land under this prefix; the scope *name* becomes `logger`.
SCOPE_PREFIX = "scope."
#: How many attributes were dropped (by the sender, or here to fit MAX_ATTRIBUTES); present only when > 0.
ATTRIBUTE_DROP_COUNT_KEY = "otel.dropped_attributes_count"
SEVERITY_TEXT_KEY = "otel.severity_text"
SEVERITY_NUMBER_KEY = "otel.severity_number"
EVENT_NAME_KEY = "otel.event_name"
SCOPE_VERSION_KEY = "otel.scope.version"

_ID_PREFIX = "otlp-"
#: Entry ids are `otlp-<digest>-<record index>`: the digest gets what MAX_ID_CHARS leaves after room for a
#: 10-digit index (48 hex digits = 192 bits, so distinct requests never collide in practice).
_DIGEST_CHARS = wire.MAX_ID_CHARS - len(_ID_PREFIX) - 1 - 10

# Severity ranges from the OTel logs data model; TRACE has no level of its own here, so it folds into debug.
_LEVEL_BY_RANGE = ((4, "debug"), (8, "debug"), (12, "info"), (16, "warn"), (20, "error"), (24, "fatal"))
_DEFAULT_LEVEL = "info"
#: Severity text (used when the severity number is unspecified): the stored names, their aliases
#: (wire.LEVEL_ALIASES) and a few OpenTelemetry/.NET spellings.
OTLP_TEXT: dict[str, str] = {
    **wire.LEVEL_BY_NAME,
    "trace": "debug",
    "information": "info",
    "informational": "info",
    "emergency": "fatal",
}

# Well-known attributes promoted to first-class entry fields (and then not repeated in `attributes`).
_RESOURCE_HOST = "host.name"
_RESOURCE_PID = "process.pid"
_RESOURCE_SERVICE = "service.name"
_RECORD_THREAD = "thread.name"
_RECORD_STACKTRACE = "exception.stacktrace"



@dataclass
class MappedRecords:
    """Mapping outcome: entries by record index, and the records that could not be mapped."""

    #: (record index, wire entry dict) in request order.
    entries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: (record index, "field: why") for records rejected by the mapping itself.
    rejected: list[tuple[int, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.entries) + len(self.rejected)


def request_digest(body: bytes) -> str:
    """Hex sha256 of the (decompressed) request body: a retried export maps to the same ids."""
    return hashlib.sha256(body).hexdigest()


def batch_id(digest: str) -> str:
    """The request's JetStream `Nats-Msg-Id`: `otlp-<digest>`, the stem of its entry ids."""
    return f"{_ID_PREFIX}{digest[:_DIGEST_CHARS]}"


def level_for(severity_number: int, severity_text: str) -> str:
    """Our level for an OTel severity: by number (1..24), else by text, else info."""
    if 1 <= severity_number <= 24:
        for upper, level in _LEVEL_BY_RANGE:
            if severity_number <= upper:
                return level
    text = severity_text.strip().lower().rstrip("0123456789")  # OTel short names: "INFO2", "WARN4"
    return OTLP_TEXT.get(text, _DEFAULT_LEVEL)


def map_request(
    request: ExportLogsServiceRequest,
    *,
    digest: str,
    now: dt.datetime,
    record_errors: Mapping[int, str] | None = None,
) -> MappedRecords:
    """Map every LogRecord of `request` to a wire entry (index = position across all resources and scopes).

    `digest` is `request_digest(body)`; `now` fills timestamps for records that carry none;
    `record_errors` are per-record problems found while decoding (see `decode_json`).
    """
    errors = record_errors or {}
    out = MappedRecords()
    received = format_timestamp(now)
    id_stem = f"{batch_id(digest)}-"
    index = 0
    for resource_logs in request.resource_logs:  # resource and scope attributes: mapped once per container
        resource = _Resource.from_attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_attrs = [(f"{SCOPE_PREFIX}{k}", _attribute_value(v)) for k, v in _flatten(scope.attributes)]
            if scope.version:
                scope_attrs.insert(0, (SCOPE_VERSION_KEY, _attribute_value(scope.version)))
            shared = _Shared.of(scope_attrs + resource.attributes)
            for record in scope_logs.log_records:
                problem = errors.get(index)
                if problem is None:
                    try:
                        entry = _map_record(record, resource, scope.name, shared, received)
                    except _RecordError as exc:
                        problem = str(exc)
                    else:
                        entry["id"] = f"{id_stem}{index}"
                        out.entries.append((index, entry))
                if problem is not None:
                    out.rejected.append((index, problem))
                index += 1
    return out


class _RecordError(ValueError):
    pass


@dataclass
class _Resource:
    service: str
    host: str | None
    pid: int | None
    attributes: list[tuple[str, Any]]

    @classmethod
    def from_attributes(cls, attributes: Any) -> _Resource:
        service, host, pid = UNKNOWN_SERVICE, None, None
        rest: list[tuple[str, Any]] = []
        for key, value in _flatten(attributes):
            if key == _RESOURCE_SERVICE and value not in ("", None):
                text = value if isinstance(value, str) else _json(value)
                service = clip_chars(text, wire.MAX_SERVICE_CHARS)
            elif key == _RESOURCE_HOST and isinstance(value, str) and value:
                host = clip_chars(value, wire.MAX_SHORT_FIELD_CHARS)
            elif key == _RESOURCE_PID and type(value) is int and 0 <= value <= wire.MAX_PID:
                pid = value
            else:
                rest.append((f"{RESOURCE_PREFIX}{key}", _attribute_value(value)))
        return cls(service=service, host=host, pid=pid, attributes=rest)


def _map_record(
    record: LogRecord,
    resource: _Resource,
    scope_name: str,
    shared: _Shared,
    received: str,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "timestamp": _timestamp(record) or received,
        "level": level_for(record.severity_number, record.severity_text),
        "message": _message(record),
        "service": resource.service,
    }
    if scope_name:
        entry["logger"] = clip_chars(scope_name, wire.MAX_SHORT_FIELD_CHARS)
    if resource.host:
        entry["host"] = resource.host
    if resource.pid is not None:
        entry["pid"] = resource.pid
    trace_id = _hex_id(record.trace_id, TRACE_ID_BYTES, "traceId")
    if trace_id:
        entry["trace_id"] = trace_id
    span_id = _hex_id(record.span_id, SPAN_ID_BYTES, "spanId")
    if span_id:
        entry["span_id"] = span_id

    own: list[tuple[str, Any]] = []
    for key, value in _flatten(record.attributes):
        if key == _RECORD_STACKTRACE and isinstance(value, str) and value:
            entry["exception"] = clip_bytes(value, wire.MAX_EXCEPTION_BYTES)
        elif key == _RECORD_THREAD and isinstance(value, str) and value:
            entry["thread"] = clip_chars(value, wire.MAX_SHORT_FIELD_CHARS)
        else:
            own.append((key, _attribute_value(value)))
    derived: list[tuple[str, Any]] = []
    if record.severity_text:
        derived.append((SEVERITY_TEXT_KEY, _attribute_value(record.severity_text)))
    if record.severity_number:
        derived.append((SEVERITY_NUMBER_KEY, int(record.severity_number)))
    if record.event_name:
        derived.append((EVENT_NAME_KEY, _attribute_value(record.event_name)))
    attributes = _fit_attributes([own, derived], shared, already_dropped=record.dropped_attributes_count)
    if attributes:
        entry["attributes"] = attributes
    return entry


#: Attributes an entry gets besides the drop count (one slot stays free for it).
_ATTRIBUTE_BUDGET = wire.MAX_ATTRIBUTES - 1


def _usable(key: str, taken: Mapping[str, Any]) -> bool:
    return bool(key) and key not in taken and key != ATTRIBUTE_DROP_COUNT_KEY


@dataclass(frozen=True)
class _Shared:
    """The scope then resource attributes every record of a scope gets, fitted once per scope: keys
    clipped, repeats dropped, and cut to what could ever fit in an entry, so each record costs at most
    _ATTRIBUTE_BUDGET steps here however many attributes the resource has."""

    items: list[tuple[str, Any]]
    dropped: int  # never usable by any record (repeats, bad keys, past the budget)

    @classmethod
    def of(cls, pairs: list[tuple[str, Any]]) -> _Shared:
        kept: dict[str, Any] = {}
        dropped = 0
        for key, value in pairs:
            key = key[: wire.MAX_ATTRIBUTE_KEY_CHARS]
            if _usable(key, kept) and len(kept) < _ATTRIBUTE_BUDGET:
                kept[key] = value
            else:
                dropped += 1
        return cls(list(kept.items()), dropped)


def _fit_attributes(
    groups: list[list[tuple[str, Any]]], shared: _Shared, *, already_dropped: int
) -> dict[str, Any]:
    """Merge a record's attribute groups (values already fitted) in priority order, then the shared ones,
    keeping within MAX_ATTRIBUTES; everything left out is counted under ATTRIBUTE_DROP_COUNT_KEY."""
    out: dict[str, Any] = {}
    dropped = already_dropped + shared.dropped
    for group in groups:
        for key, value in group:
            key = key[: wire.MAX_ATTRIBUTE_KEY_CHARS]
            if _usable(key, out) and len(out) < _ATTRIBUTE_BUDGET:
                out[key] = value
            else:
                dropped += 1
    for position, (key, value) in enumerate(shared.items):
        if len(out) >= _ATTRIBUTE_BUDGET:
            dropped += len(shared.items) - position
            break
        if key in out:
            dropped += 1
        else:
            out[key] = value
    if dropped:
        out[ATTRIBUTE_DROP_COUNT_KEY] = dropped
    return out


def _attribute_value(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else wire.finite_json(value)
    text = value if isinstance(value, str) else _json(value)
    return clip_chars(text, wire.MAX_ATTRIBUTE_VALUE_CHARS)


def _flatten(attributes: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted key, python value) for a KeyValue list; nested kvlists become dotted keys."""
    kv: KeyValue
    for kv in attributes:
        key = f"{prefix}{kv.key}"
        if kv.value.WhichOneof("value") == "kvlist_value" and kv.value.kvlist_value.values:
            yield from _flatten(kv.value.kvlist_value.values, f"{key}.")
        else:
            yield key, _python(kv.value)


def _python(value: AnyValue) -> Any:
    """An AnyValue as a JSON-ready python value (bytes as base64, as OTLP/JSON renders them)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _python(kv.value) for kv in value.kvlist_value.values}
    return None  # empty AnyValue, or a profiles-only string-table reference


def _json(value: Any) -> str:
    # NaN/Infinity are not JSON: spell them as OTLP/JSON does, as strings.
    return json.dumps(wire.finite_json(value), ensure_ascii=False, separators=(",", ":"))


def _message(record: LogRecord) -> str:
    if record.HasField("body"):
        body = _python(record.body)
        text = body if isinstance(body, str) else ("" if body is None else _json(body))
    else:
        text = ""
    if not text and record.event_name:
        text = record.event_name  # events often carry everything in attributes
    return clip_bytes(text, wire.MAX_MESSAGE_BYTES)


def _timestamp(record: LogRecord) -> str | None:
    nanos = record.time_unix_nano or record.observed_time_unix_nano
    if not nanos:
        return None
    seconds, rest = divmod(nanos, 1_000_000_000)
    try:
        moment = dt.datetime.fromtimestamp(seconds, dt.timezone.utc) + dt.timedelta(microseconds=rest // 1000)
    except (OverflowError, OSError, ValueError):
        name = "timeUnixNano" if record.time_unix_nano else "observedTimeUnixNano"
        raise _RecordError(f"{name}: {nanos} is out of range") from None
    return format_timestamp(moment)


def _hex_id(raw: bytes, size: int, name: str) -> str | None:
    if not raw or raw == b"\x00" * len(raw):
        return None  # absent; all-zero ids are invalid in OTel and mean "no trace"
    if len(raw) != size:
        raise _RecordError(f"{name}: expected {size} bytes, got {len(raw)}")
    return binascii.hexlify(raw).decode("ascii")
