"""The JetStream message format between ingestion, processing and the dead-letter stream: one definition.

A logs message on STREAM_SUBJECT: the payload is the JSON array of `logs` rows ingestion built
(`schema.make_rows`: `id` first, the typed attribute maps, `received_at` last); headers:

- `Nats-Msg-Id` (MSG_ID): the dedup id (dedup.py), so the broker stores a retried publish once;
- `Oglog-Rows`, `Oglog-Ts-Min`, `Oglog-Ts-Max`: the row count and timestamp range the processor checks and
  searches for ids already stored;
- `Oglog-Row-Format` (ROW_FORMAT): ROW_FORMAT_VERSION when the rows carry their typed attribute maps
  (`attributes_number`/`attributes_bool`, made at ingestion). Messages without it were published by the
  release before and are upgraded by the processor (`upgrade_payload`) before they are batched.

A dead letter (DEAD_LETTER_SUBJECT) keeps every `Oglog-*` header of the message it came from (the row format
included, so a replay is read as what it is) plus DEAD_REASON, DEAD_ERROR, ORIGINAL_SEQ and ORIGINAL_MSG_ID;
a replay drops the first three (DEAD_ONLY_HEADERS) and keeps ORIGINAL_MSG_ID.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pydantic_core

from ..config import STREAM_SUBJECT
from ..ingestion import schema

__all__ = [
    "DEAD_ERROR",
    "DEAD_ONLY_HEADERS",
    "DEAD_REASON",
    "HEADER_PREFIX",
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
DEAD_REASON = "Oglog-Dead-Reason"
DEAD_ERROR = "Oglog-Error"
ORIGINAL_SEQ = "Oglog-Original-Seq"
#: The id of the message ingestion first wrote, kept across any number of replays.
ORIGINAL_MSG_ID = "Oglog-Original-Msg-Id"
#: Headers that describe a dead letter itself, not carried back into the logs stream on replay.
DEAD_ONLY_HEADERS = (DEAD_REASON, DEAD_ERROR, ORIGINAL_SEQ)


def rows_headers(message_id: str, rows: int, ts_min: str, ts_max: str) -> dict[str, str]:
    """The headers of a logs message ingestion publishes: `rows` rows with timestamps in [ts_min, ts_max]."""
    return {
        MSG_ID: message_id,
        ROWS: str(rows),
        TS_MIN: ts_min,
        TS_MAX: ts_max,
        ROW_FORMAT: ROW_FORMAT_VERSION,
    }


def oglog_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The `Oglog-*` headers of a message (the ones a dead letter and a replay carry over)."""
    return {k: v for k, v in headers.items() if k.startswith(HEADER_PREFIX)}


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
