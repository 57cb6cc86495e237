"""Binary OTLP at the wire level: counting log records before decoding, and decoding in slices.

protobuf decodes a whole ExportLogsServiceRequest in one C call that holds the GIL throughout (120 ms
for 10,000 records of 64 attributes), so even on a worker thread it would stall the event loop. Here the
request is walked at the wire level in plain Python (which shares the GIL in slices): `count_log_records`
stops as soon as the count passes the limit (and bounds resources, scopes, their attributes and the fields
walked), and `decode_sliced` decodes each resource's and scope's own fields once and appends the records to
their scope `records_per_slice` at a time - the same records with the same resources and scopes, in order.

Protobuf wire format: every field is a varint tag (field number << 3 | wire type) and a value; wire type 2
is a varint length and that many bytes. ExportLogsServiceRequest.resource_logs = 1, ResourceLogs.scope_logs
= 2, ScopeLogs.log_records = 2.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import DecodeError
from oglogstream import wire
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

__all__ = [
    "DEFAULT_RECORDS_PER_SLICE",
    "MAX_SCOPES",
    "MAX_SCOPE_ATTRIBUTES",
    "MAX_WIRE_FIELDS",
    "Oversized",
    "count_log_records",
    "decode_sliced",
]

#: Records decoded per protobuf call (a few ms each, even at 64 attributes per record).
DEFAULT_RECORDS_PER_SLICE = 250
#: ResourceLogs in one request, and ScopeLogs in one request (all resources together): a request cannot
#: usefully hold more containers than records.
MAX_SCOPES = wire.MAX_BATCH_ENTRIES
#: Top-level attributes of one resource or one instrumentation scope. Only MAX_ATTRIBUTES reach an entry;
#: more is refused (413) rather than decoded, since protobuf decodes a message in one GIL-holding call.
MAX_SCOPE_ATTRIBUTES = 1024
#: Fields the wire walk visits above the records (containers, heads, unknown fields): a legitimate request
#: needs at most about 7 per record (10,000 resources of one scope of one record each).
MAX_WIRE_FIELDS = 8 * wire.MAX_BATCH_ENTRIES

_RESOURCE_LOGS = 1
_SCOPE_LOGS = 2
_LOG_RECORDS = 2
_RESOURCE = 1  # ResourceLogs.resource; Resource.attributes = 1
_RESOURCE_ATTRIBUTES = 1
_SCOPE = 1  # ScopeLogs.scope; InstrumentationScope.attributes = 3
_SCOPE_ATTRIBUTES = 3
_LENGTH_DELIMITED = 2
_FIXED_SIZES = {1: 8, 5: 4}


class _Malformed(Exception):
    pass


class Oversized(Exception):
    """The request holds more of `what` than `limit` (HTTP 413)."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(f"more than {limit} {what}")
        self.limit, self.what = limit, what


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise _Malformed


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, field start incl. its tag, value start, value end) of each field in data[start:end]."""
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _varint(data, pos, end)
        wire_type = tag & 7
        if wire_type == _LENGTH_DELIMITED:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise _Malformed
            yield tag >> 3, field_start, pos, pos + length
            pos += length
        elif wire_type == 0:
            value_start = pos
            _, pos = _varint(data, pos, end)
            yield tag >> 3, field_start, value_start, pos
        elif wire_type in _FIXED_SIZES:
            value_start, pos = pos, pos + _FIXED_SIZES[wire_type]
            yield tag >> 3, field_start, value_start, pos
        else:
            raise _Malformed
    if pos != end:
        raise _Malformed


class _Budget:
    """Counts what the walk visits; raises Oversized past a bound, so the walk's work is bounded too."""

    def __init__(self) -> None:
        self.fields = self.resources = self.scopes = 0

    def field(self) -> None:
        self.fields += 1
        if self.fields > MAX_WIRE_FIELDS:
            raise Oversized(MAX_WIRE_FIELDS, "protobuf fields outside the log records")


def _check_attributes(
    body: bytes, start: int, end: int, attributes_field: int, what: str, budget: _Budget
) -> None:
    count = 0
    for number, *_ in _fields(body, start, end):
        if number != attributes_field:
            budget.field()
            continue
        count += 1
        if count > MAX_SCOPE_ATTRIBUTES:
            raise Oversized(MAX_SCOPE_ATTRIBUTES, f"attributes on one {what}")


def count_log_records(body: bytes, limit: int) -> int:
    """The number of log records in a binary ExportLogsServiceRequest, or `limit + 1` as soon as there are
    more than `limit`. A malformed body counts what was found before the fault (the decoder reports it).
    Raises Oversized past MAX_SCOPES resources or scopes, MAX_SCOPE_ATTRIBUTES attributes on a resource or
    a scope, or MAX_WIRE_FIELDS fields outside the records (each check stops the walk at its bound)."""
    count = 0
    budget = _Budget()
    try:
        for number, _, start, end in _fields(body, 0, len(body)):
            budget.field()
            if number != _RESOURCE_LOGS:
                continue
            budget.resources += 1
            if budget.resources > MAX_SCOPES:
                raise Oversized(MAX_SCOPES, "resourceLogs")
            for inner, _, scope_start, scope_end in _fields(body, start, end):
                budget.field()
                if inner == _RESOURCE:
                    _check_attributes(body, scope_start, scope_end, _RESOURCE_ATTRIBUTES, "resource", budget)
                if inner != _SCOPE_LOGS:
                    continue
                budget.scopes += 1
                if budget.scopes > MAX_SCOPES:
                    raise Oversized(MAX_SCOPES, "scopeLogs")
                for field, _, value_start, value_end in _fields(body, scope_start, scope_end):
                    if field == _LOG_RECORDS:
                        count += 1
                        if count > limit:
                            return count
                        continue
                    budget.field()
                    if field == _SCOPE:
                        _check_attributes(body, value_start, value_end, _SCOPE_ATTRIBUTES, "scope", budget)
    except _Malformed:
        pass
    return count


def _merge_sliced(request: ExportLogsServiceRequest, body: bytes, per_slice: int) -> None:
    """Decode `body` into `request`: each resource's and each scope's own fields once, then its records
    `per_slice` at a time appended to that same scope (a resource is never copied per slice)."""
    for number, _, start, end in _fields(body, 0, len(body)):
        if number != _RESOURCE_LOGS:
            continue  # unknown top-level fields: ignored by receivers anyway
        resource_logs = request.resource_logs.add()
        resource_head, scopes = bytearray(), []
        for inner, field_start, value_start, value_end in _fields(body, start, end):
            if inner == _SCOPE_LOGS:
                scopes.append((value_start, value_end))
            else:
                resource_head += body[field_start:value_end]
        resource_logs.MergeFromString(bytes(resource_head))
        for scope_start, scope_end in scopes:
            scope_logs = resource_logs.scope_logs.add()
            scope_head, records = bytearray(), []
            for field, field_start, _, value_end in _fields(body, scope_start, scope_end):
                if field == _LOG_RECORDS:
                    records.append(body[field_start:value_end])
                else:
                    scope_head += body[field_start:value_end]
            scope_logs.MergeFromString(bytes(scope_head))
            for first in range(0, len(records), per_slice):
                scope_logs.MergeFromString(b"".join(records[first : first + per_slice]))


def decode_sliced(
    body: bytes, *, records_per_slice: int = DEFAULT_RECORDS_PER_SLICE
) -> ExportLogsServiceRequest | None:
    """The request's log records, decoded `records_per_slice` at a time into the resource and scope they
    belong to: the same resources, scopes and records in the same order as a whole decode. None when the
    body is not well-formed at the wire level or a part does not decode (the caller then decodes it whole,
    for the error message)."""
    request = ExportLogsServiceRequest()
    try:
        _merge_sliced(request, body, records_per_slice)
    except (_Malformed, DecodeError, RecursionError):
        return None
    return request
