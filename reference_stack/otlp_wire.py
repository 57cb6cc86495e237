"""Binary OTLP at the wire level: counting log records before decoding, and decoding in slices.

protobuf decodes a whole ExportLogsServiceRequest in one C call that holds the GIL throughout (120 ms
for 10,000 records of 64 attributes), so even on a worker thread it would stall the event loop. Here the
request is walked at the wire level in plain Python (which shares the GIL in slices): `count_log_records`
stops as soon as the count passes the limit, and `decode_sliced` re-frames the records into sub-requests of
at most `records_per_slice` records, each carrying its own resource and scope fields byte for byte, and
merges their decodings in order - the same records with the same resources and scopes, in the same order.

Protobuf wire format: every field is a varint tag (field number << 3 | wire type) and a value; wire type 2
is a varint length and that many bytes. ExportLogsServiceRequest.resource_logs = 1, ResourceLogs.scope_logs
= 2, ScopeLogs.log_records = 2.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

__all__ = ["DEFAULT_RECORDS_PER_SLICE", "count_log_records", "decode_sliced"]

#: Records decoded per protobuf call (a few ms each, even at 64 attributes per record).
DEFAULT_RECORDS_PER_SLICE = 250

_RESOURCE_LOGS = 1
_SCOPE_LOGS = 2
_LOG_RECORDS = 2
_LENGTH_DELIMITED = 2
_FIXED_SIZES = {1: 8, 5: 4}


class _Malformed(Exception):
    pass


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


def count_log_records(body: bytes, limit: int) -> int:
    """The number of log records in a binary ExportLogsServiceRequest, or `limit + 1` as soon as there are
    more than `limit`. A malformed body counts what was found before the fault (the decoder reports it)."""
    count = 0
    try:
        for number, _, start, end in _fields(body, 0, len(body)):
            if number != _RESOURCE_LOGS:
                continue
            for inner, _, scope_start, scope_end in _fields(body, start, end):
                if inner != _SCOPE_LOGS:
                    continue
                for field, *_ in _fields(body, scope_start, scope_end):
                    if field == _LOG_RECORDS:
                        count += 1
                        if count > limit:
                            return count
    except _Malformed:
        pass
    return count


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _slices(body: bytes, per_slice: int) -> Iterator[bytes]:
    """Sub-requests (serialised ExportLogsServiceRequests) of at most `per_slice` records each, in order."""
    for number, _, start, end in _fields(body, 0, len(body)):
        if number != _RESOURCE_LOGS:
            continue  # unknown top-level fields: ignored by receivers anyway
        resource_head, scopes = bytearray(), []
        for inner, field_start, value_start, value_end in _fields(body, start, end):
            if inner == _SCOPE_LOGS:
                scopes.append((value_start, value_end))
            else:
                resource_head += body[field_start:value_end]
        for scope_start, scope_end in scopes:
            scope_head, records = bytearray(), []
            for field, field_start, _, value_end in _fields(body, scope_start, scope_end):
                if field == _LOG_RECORDS:
                    records.append(body[field_start:value_end])
                else:
                    scope_head += body[field_start:value_end]
            for first in range(0, len(records), per_slice):
                scope = bytes(scope_head) + b"".join(records[first : first + per_slice])
                yield _length_delimited(
                    _RESOURCE_LOGS, bytes(resource_head) + _length_delimited(_SCOPE_LOGS, scope)
                )


def decode_sliced(
    body: bytes, *, records_per_slice: int = DEFAULT_RECORDS_PER_SLICE
) -> ExportLogsServiceRequest | None:
    """The request's log records, decoded `records_per_slice` at a time: one ResourceLogs/ScopeLogs pair per
    slice, each a byte-for-byte copy of the original's own fields. None when the body is not well-formed at
    the wire level or a slice does not decode (the caller then decodes it whole, for the error message)."""
    request = ExportLogsServiceRequest()
    try:
        for part in _slices(body, records_per_slice):
            request.MergeFromString(part)
    except (_Malformed, DecodeError, RecursionError):
        return None
    return request
