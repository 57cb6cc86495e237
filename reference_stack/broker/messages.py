"""The JetStream message format between ingestion, processing and the dead-letter stream: one definition.

A logs message on STREAM_SUBJECT: the payload is the JSON array of `logs` rows ingestion built
(`schema.make_rows`: `id` first, the typed attribute maps, `received_at` last); headers:

- `Nats-Msg-Id` (MSG_ID): the dedup id (dedup.py), so the broker stores a retried publish once;
- `Oglog-Rows`, `Oglog-Ts-Min`, `Oglog-Ts-Max`: the row count and timestamp range the processor checks and
  searches for ids already stored;
- `Oglog-Ids` (IDS): the rows' ids in payload order, comma-separated, when they fit under max_payload next to
  the payload; the processor reads them from here instead of scanning the payload (`row_ids`). Optional: a
  message without it (the release before, a replayed dead letter, a payload too large) is scanned as before;
- `Oglog-Row-Format` (ROW_FORMAT): ROW_FORMAT_VERSION when the rows carry their typed attribute maps
  (`attributes_number`/`attributes_bool`, made at ingestion). Messages without it were published by the
  release before and are upgraded by the processor (`upgrade_payload`) before they are batched.

A dead letter (DEAD_LETTER_SUBJECT) keeps every `Oglog-*` header of the message it came from but IDS (its
payload may be only the refused rows; the row format is kept, so a replay is read as what it is) plus
DEAD_REASON, DEAD_ERROR, ORIGINAL_SEQ and ORIGINAL_MSG_ID; a replay drops the first three (DEAD_ONLY_HEADERS)
and keeps ORIGINAL_MSG_ID.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pydantic_core
from oglogstream import wire

from ..config import STREAM_SUBJECT
from ..ingestion import row_codec, schema

__all__ = [
    "DEAD_ERROR",
    "DEAD_ONLY_HEADERS",
    "DEAD_REASON",
    "HEADER_PREFIX",
    "IDS",
    "MSG_ID",
    "ORIGINAL_MSG_ID",
    "ORIGINAL_SEQ",
    "ROWS",
    "ROW_FORMAT",
    "ROW_FORMAT_VERSION",
    "STREAM_SUBJECT",
    "TS_MAX",
    "TS_MIN",
    "has_current_format",
    "oglog_headers",
    "row_ids",
    "rows_headers",
    "upgrade_payload",
]

#: JetStream's deduplication header.
MSG_ID = "Nats-Msg-Id"
#: Our headers all start with this; a dead letter keeps them (`oglog_headers`).
HEADER_PREFIX = "Oglog-"
ROWS = "Oglog-Rows"
TS_MIN = "Oglog-Ts-Min"
TS_MAX = "Oglog-Ts-Max"
#: The rows' format: absent = the release before (typed attribute maps made by the processor);
#: ROW_FORMAT_VERSION = typed maps made by ingestion.
ROW_FORMAT = "Oglog-Row-Format"
ROW_FORMAT_VERSION = "2"
#: The rows' ids, comma-separated in payload order (an id never holds a comma: wire.ID_PATTERN).
IDS = "Oglog-Ids"
#: Headers describing one message's exact rows: not carried into a dead letter, whose payload may be a part.
_EXACT_ROW_HEADERS = frozenset({IDS})
DEAD_REASON = "Oglog-Dead-Reason"
DEAD_ERROR = "Oglog-Error"
ORIGINAL_SEQ = "Oglog-Original-Seq"
#: The id of the message ingestion first wrote, kept across any number of replays.
ORIGINAL_MSG_ID = "Oglog-Original-Msg-Id"
#: Headers that describe a dead letter itself, not carried back into the logs stream on replay.
DEAD_ONLY_HEADERS = (DEAD_REASON, DEAD_ERROR, ORIGINAL_SEQ)


def rows_headers(
    message_id: str, rows: int, ts_min: str, ts_max: str, ids: Sequence[str] = (), ids_room: int = 0
) -> dict[str, str]:
    """The headers of a logs message ingestion publishes: `rows` rows with timestamps in [ts_min, ts_max];
    `ids`: the rows' ids in payload order, sent as IDS when that header's value fits in `ids_room` bytes
    (what max_payload leaves next to the payload; default: not sent)."""
    headers = {
        MSG_ID: message_id,
        ROWS: str(rows),
        TS_MIN: ts_min,
        TS_MAX: ts_max,
        ROW_FORMAT: ROW_FORMAT_VERSION,
    }
    if ids and len(ids) == rows:
        value = ",".join(ids)
        if len(value) <= ids_room:
            headers[IDS] = value
    return headers


def oglog_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The `Oglog-*` headers of a message a dead letter and a replay carry over (all but IDS)."""
    return {k: v for k, v in headers.items() if k.startswith(HEADER_PREFIX) and k not in _EXACT_ROW_HEADERS}


#: An IDS value: ids as wire.ID_PATTERN has them (so the storage may inline them in SQL), comma-separated.
_ID_CHARS = rf"[A-Za-z0-9_.:\-]{{1,{wire.MAX_ID_CHARS}}}"
_IDS_VALUE = re.compile(rf"{_ID_CHARS}(?:,{_ID_CHARS})*", re.ASCII)
_FIRST_ROW = b'[{"id":"'
_NEXT_ROW = b'},{"id":"'


def row_ids(headers: Mapping[str, str], payload: bytes) -> list[str] | None:
    """The ids of a logs message's rows in payload order, or None when its payload is not a row array as
    ingestion writes it: `row_codec.payload_ids(payload)`, from the IDS header when there is one that agrees
    with the ROWS header and the payload's first and last rows (~0.07 µs a row: no pass over the payload,
    where the scan costs ~0.5 µs a row of the supervisor's event loop, #14), else from that scan (a message
    of the release before, a replayed dead letter, a header that does not agree)."""
    value = headers.get(IDS)
    if value is not None and _IDS_VALUE.fullmatch(value) is not None:
        ids = value.split(",")
        if headers.get(ROWS) == str(len(ids)) and _ends_agree(ids[0], ids[-1], len(ids), payload):
            return ids
    return row_codec.payload_ids(payload)


def _ends_agree(first: str, last: str, rows: int, payload: bytes) -> bool:
    """Whether `payload` starts with a row of id `first` and its last row (found backwards: only that row is
    read) has id `last`, one row being both when `rows` is 1. `},{"id":"` only occurs between rows: quotes
    inside JSON strings are escaped and `attributes` is followed by `,"received_at"` (row_codec)."""
    if not (payload.startswith(_FIRST_ROW + first.encode() + b'"') and payload.endswith(b"}]")):
        return False
    start = payload.rfind(_NEXT_ROW)
    if start == -1:
        return rows == 1
    return rows > 1 and payload.startswith(last.encode() + b'"', start + len(_NEXT_ROW))


def has_current_format(headers: Mapping[str, str]) -> bool:
    """Whether a message's rows already carry their typed attribute maps."""
    return headers.get(ROW_FORMAT) == ROW_FORMAT_VERSION


# In the compact rows ingestion writes, `attributes` is a row's last key before `received_at`, so each row's
# attributes lie between these two markers. Both only occur as row structure: inside a string every quote is
# escaped, and attribute values are never objects. Between them, a key followed by a number or boolean is a
# typed value; a look-alike inside a string value (escaped quote) only costs the exact parse.
_ATTRIBUTES = b'"attributes":{'
_ATTRIBUTES_END = b'},"received_at":"'
_TYPED_VALUE = re.compile(rb'":\s*[-0-9tf]')


def _has_typed_value(payload: bytes) -> bool:
    start = payload.find(_ATTRIBUTES)
    while start != -1:
        start += len(_ATTRIBUTES)
        end = payload.find(_ATTRIBUTES_END, start)
        if end == -1:  # not a row as ingestion writes it: the rest of the payload is searched
            return _TYPED_VALUE.search(payload, start) is not None
        if _TYPED_VALUE.search(payload, start, end):
            return True
        start = payload.find(_ATTRIBUTES, end)
    return False


def upgrade_payload(payload: bytes) -> bytes:
    """A logs payload of the release before (no ROW_FORMAT header) in the current format: the rows whose
    attributes hold numbers/booleans get their typed maps (`schema.add_typed_maps`, the same bytes ingestion
    writes now). A payload of string attributes only comes back as is (the same object) after C-speed
    scans per row (~2 µs); one that is not JSON too (ClickHouse refuses it as a data error, isolated, never
    retried)."""
    if not _has_typed_value(payload):
        return payload
    try:
        rows = pydantic_core.from_json(payload)
    except ValueError:
        return payload
    schema.add_typed_maps(rows if isinstance(rows, list) else [rows])
    return pydantic_core.to_json(rows)
