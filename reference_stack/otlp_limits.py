"""Counting the log records of a binary OTLP request without decoding it, so an export of a million tiny
records is refused before protobuf builds a million messages (which holds the GIL for the whole decode).

Protobuf wire format: every field is a varint tag (field number << 3 | wire type) and a value; wire type 2
is a varint length and that many bytes. ExportLogsServiceRequest.resource_logs = 1, ResourceLogs.scope_logs
= 2, ScopeLogs.log_records = 2. The walk is plain Python (it shares the GIL in slices) and stops as soon as
the count passes the limit, so its cost is bounded by the limit, not by the body.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["count_log_records"]

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


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, value start, value end) of the length-delimited fields in data[start:end]."""
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos, end)
        wire_type = tag & 7
        if wire_type == _LENGTH_DELIMITED:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise _Malformed
            yield tag >> 3, pos, pos + length
            pos += length
        elif wire_type == 0:
            _, pos = _varint(data, pos, end)
        elif wire_type in _FIXED_SIZES:
            pos += _FIXED_SIZES[wire_type]
        else:
            raise _Malformed
    if pos != end:
        raise _Malformed


def count_log_records(body: bytes, limit: int) -> int:
    """The number of log records in a binary ExportLogsServiceRequest, or `limit + 1` as soon as there are
    more than `limit`. A malformed body counts what was found before the fault (the decoder reports it)."""
    count = 0
    try:
        for number, start, end in _fields(body, 0, len(body)):
            if number != _RESOURCE_LOGS:
                continue
            for inner, scope_start, scope_end in _fields(body, start, end):
                if inner != _SCOPE_LOGS:
                    continue
                for field, _, _ in _fields(body, scope_start, scope_end):
                    if field == _LOG_RECORDS:
                        count += 1
                        if count > limit:
                            return count
    except _Malformed:
        pass
    return count
