"""Wire contract, version 1: the one definition of a log entry, shared by the SDK and every server role.

Plain Python (no pydantic, no httpx), cheap to import: `import oglogstream.wire` does not start the SDK.

The entry is the ordered table `FIELDS` (row order: id and timestamp first); everything else derives from it:
the stack's validation model, row order and row twin and public response shape
(`reference_stack/ingestion/schema.py`), the query columns (`reference_stack/query/query_sql.py`), the
SDK's line builders' limits (`_entry.py`) and the test oracle (`tests/sdk/wire_check.py`). The table's
columns come from versioned migrations (`reference_stack/storage/migrations.py`: a stored schema is changed,
never recreated) and `tests/stack/test_migrations.py` checks they are these columns with these types. Adding
a field is one line in `FIELDS`, a migration adding its column, and the code that fills it.

Iterating the storage columns (a row is the entry plus `received_at`, last)::

    for field in wire.COLUMNS:
        print(field.column, field.clickhouse_type, field.codec)   # "pid", "UInt32", "ZSTD(1)"

`wire.FIELD["message"].limit` is 10240 (`.unit` "bytes"); `wire.REQUIRED` is ("level", "message", "service").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "BATCH_ID_HEADER",
    "COLUMNS",
    "FIELD",
    "FIELDS",
    "FIELD_NAMES",
    "ID_PATTERN",
    "INT64_MAX",
    "INT64_MIN",
    "LEVELS",
    "LEVEL_ALIASES",
    "LEVEL_BY_NAME",
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_KEY_CHARS",
    "MAX_ATTRIBUTE_VALUE_CHARS",
    "MAX_BATCH_BODY_BYTES",
    "MAX_BATCH_DECOMPRESSED_BYTES",
    "MAX_BATCH_ENTRIES",
    "MAX_EXCEPTION_BYTES",
    "MAX_ID_CHARS",
    "MAX_MESSAGE_BYTES",
    "MAX_PID",
    "MAX_SERVICE_CHARS",
    "MAX_SHORT_FIELD_CHARS",
    "MAX_SINGLE_BODY_BYTES",
    "NDJSON_CONTENT_TYPE",
    "PROBLEM_CONTENT_TYPE",
    "PUBLIC_ALWAYS",
    "PUBLIC_OPTIONAL",
    "RECEIVED_AT",
    "REQUIRED",
    "TRUNCATION_MARKER",
    "WIRE_VERSION",
    "Field",
    "clip_bytes",
    "clip_chars",
    "finite_json",
    "is_attribute_value",
    "is_problem",
    "level_for_number",
    "level_name",
    "non_finite_text",
]

WIRE_VERSION = 1

# -- limits --------------------------------------------------------------------------------------------------
#: `message` is at most this many UTF-8 bytes. The SDK keeps the head and the tail with TRUNCATION_MARKER
#: between (a pre-formatted traceback keeps its last line, the error); the server rejects.
MAX_MESSAGE_BYTES = 10 * 1024
#: `exception` (a formatted traceback) is at most this many UTF-8 bytes; clipped like `message`.
MAX_EXCEPTION_BYTES = 32 * 1024
#: `service` is 1..MAX_SERVICE_CHARS characters.
MAX_SERVICE_CHARS = 100
#: `logger`, `host`, `thread`, `trace_id`, `span_id` are at most this many characters.
MAX_SHORT_FIELD_CHARS = 256
#: `id` is 1..MAX_ID_CHARS characters of [A-Za-z0-9_.:-].
MAX_ID_CHARS = 64
#: `pid` is 0..MAX_PID (the column is UInt32).
MAX_PID = 2**32 - 1
#: `attributes` is a flat object of string -> string/number/bool with at most this many keys,
MAX_ATTRIBUTES = 64
#: keys of at most this many characters,
MAX_ATTRIBUTE_KEY_CHARS = 128
#: and string values of at most this many characters. Integer values are 64-bit (INT64_MIN..INT64_MAX).
MAX_ATTRIBUTE_VALUE_CHARS = 2048
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1



def is_attribute_value(value: object) -> bool:
    """Whether an attribute may have `value`: a string, a boolean, an integer or a float. Lists, objects and
    null may not (`POST /log` answers 400 naming the attribute). NaN and +-Infinity (not JSON, but Python's
    json module writes them) are stored as the text `non_finite_text` gives, integers beyond 64 bits as their
    digits; a string's length is the separate MAX_ATTRIBUTE_VALUE_CHARS limit (the SDK clips, the stack
    refuses).
    """
    return isinstance(value, str | int | float)


def non_finite_text(value: float) -> str:
    """How a NaN or +-Infinity attribute value is stored: the text `NaN`, `Infinity` or `-Infinity` (proto3's
    JSON mapping, which OTLP/JSON uses; JSON itself has no such numbers). Every path spells them so: the SDK,
    `POST /log(s)` (which accepts the NaN/Infinity tokens Python's json module writes) and OTLP."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def finite_json(value: object) -> object:
    """`value` (JSON-like: dicts, lists, tuples, scalars) with every NaN/+-Infinity float, at any depth,
    replaced by `non_finite_text`, so `json.dumps(..., allow_nan=False)` can write it (OTLP arrays, nested
    `extra=` values, dead-letter payloads). Tuples become lists. A cyclic value raises RecursionError."""
    if isinstance(value, float):
        return value if math.isfinite(value) else non_finite_text(value)
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    return value


#: `id` as a regular expression (the stack validates it, the SDK's ids always match).
ID_PATTERN = rf"^[A-Za-z0-9_.:\-]{{1,{MAX_ID_CHARS}}}$"

# -- batches ----------------------------------------------------------------------------------------------
#: `POST /log` body limit (the seed's 50 KB).
MAX_SINGLE_BODY_BYTES = 50 * 1024
#: `POST /logs` body limit as sent (compressed or not)...
MAX_BATCH_BODY_BYTES = 8 * 1024 * 1024
#: ...and after gzip decompression: a gzip bomb is cut off here with 413.
MAX_BATCH_DECOMPRESSED_BYTES = 32 * 1024 * 1024
#: `POST /logs` takes at most this many entries per request.
MAX_BATCH_ENTRIES = 10_000
NDJSON_CONTENT_TYPE = "application/x-ndjson"
#: The form of every error answer of the stack (RFC 9457; reference_stack/http/boundary.py): an error answer
#: in another form came from something else on the way (a proxy, a load balancer's page).
PROBLEM_CONTENT_TYPE = "application/problem+json"
#: A client's idempotency key for one batch request; a retried request carries the same value, and the
#: ingestion role uses it as the JetStream `Nats-Msg-Id`, so the broker stores a retried batch once.
BATCH_ID_HEADER = "X-Oglog-Batch-Id"


# -- the field table ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One entry field: how it travels (JSON), its bound, and where it is stored.

    name: the JSON key. json_type: "string", "integer" or "object" (attributes). required: a client must send
    it. defaulted: the server fills it when absent (id, timestamp), so it is in every stored row and every
    public entry. limit/unit: the bound, in "chars", "bytes" (UTF-8), "keys" or "value" (an integer in
    0..limit); 0/"" = none (a rule that is more than a length, such as the id pattern or the timestamp format,
    is the stack's: `schema._SPECIAL_TYPES`). min_length: the least chars of a given string. column: the
    ClickHouse column (= name unless set). clickhouse_type/codec: the column's type and compression codec.
    """

    name: str
    json_type: Literal["string", "integer", "object"]
    limit: int
    unit: Literal["chars", "bytes", "keys", "value", ""]
    clickhouse_type: str
    codec: str = "ZSTD(1)"
    required: bool = False
    defaulted: bool = False
    min_length: int = 0
    column: str = ""

    def __post_init__(self) -> None:
        if not self.column:
            object.__setattr__(self, "column", self.name)

    @property
    def always_present(self) -> bool:
        """True when every stored row and public entry has this field (required or filled by the server)."""
        return self.required or self.defaulted


_TIME = "DateTime64(6, 'UTC')"
_TIME_CODEC = "Delta(8), ZSTD(1)"
_LOW = "LowCardinality(String)"

#: The entry, in row order. A validated entry, a row and a public entry have their keys in this order.
FIELDS: tuple[Field, ...] = (
    Field("id", "string", MAX_ID_CHARS, "chars", "String", defaulted=True, min_length=1),
    Field("timestamp", "string", 0, "", _TIME, _TIME_CODEC, defaulted=True),
    Field("level", "string", 0, "", _LOW, required=True),
    Field("message", "string", MAX_MESSAGE_BYTES, "bytes", "String", required=True),
    Field("service", "string", MAX_SERVICE_CHARS, "chars", _LOW, required=True, min_length=1),
    Field("logger", "string", MAX_SHORT_FIELD_CHARS, "chars", _LOW),
    Field("host", "string", MAX_SHORT_FIELD_CHARS, "chars", _LOW),
    Field("pid", "integer", MAX_PID, "value", "UInt32"),
    Field("thread", "string", MAX_SHORT_FIELD_CHARS, "chars", "String"),
    Field("trace_id", "string", MAX_SHORT_FIELD_CHARS, "chars", "String"),
    Field("span_id", "string", MAX_SHORT_FIELD_CHARS, "chars", "String"),
    Field("exception", "string", MAX_EXCEPTION_BYTES, "bytes", "String"),
    Field("attributes", "object", MAX_ATTRIBUTES, "keys", "Map(LowCardinality(String), String)"),
)
#: Set by the ingestion role on every row (never sent by a client); a row's last key; not in public entries.
RECEIVED_AT = Field("received_at", "string", 0, "", _TIME, _TIME_CODEC, defaulted=True)
#: The storage columns of the `logs` table, in row order.
COLUMNS: tuple[Field, ...] = (*FIELDS, RECEIVED_AT)

FIELD: dict[str, Field] = {field.name: field for field in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(FIELD)
REQUIRED: tuple[str, ...] = tuple(field.name for field in FIELDS if field.required)
#: A public entry (GET /api/logs, /ws/live) always has these keys...
PUBLIC_ALWAYS: tuple[str, ...] = tuple(field.name for field in FIELDS if field.always_present)
#: ...and these only when non-empty.
PUBLIC_OPTIONAL: tuple[str, ...] = tuple(field.name for field in FIELDS if not field.always_present)

# -- levels -----------------------------------------------------------------------------------------------
#: Levels in order of severity (the only stored levels).
LEVELS: tuple[str, ...] = ("debug", "info", "warn", "error", "fatal")
#: Python logging's and syslog's (RFC 5424) names, lower-cased, for the stored level nearest to each: the
#: door and the query filter read levels case-insensitively and take these too (docs/stack.md).
LEVEL_ALIASES: dict[str, str] = {
    "warning": "warn",  # Python, syslog
    "critical": "fatal",  # Python
    "crit": "fatal",  # syslog
    "alert": "fatal",  # syslog
    "emerg": "fatal",  # syslog
    "panic": "fatal",  # syslog (deprecated spelling of emerg)
    "err": "error",  # syslog
    "notice": "info",  # syslog
}
#: Every lower-case name `level_name` knows -> its stored level.
LEVEL_BY_NAME: dict[str, str] = {**{level: level for level in LEVELS}, **LEVEL_ALIASES}


def level_name(text: str) -> str | None:
    """The stored level `text` names (any case, surrounding spaces ignored), or None."""
    return LEVEL_BY_NAME.get(text.strip().lower())


def level_for_number(levelno: int) -> str:
    """A Python logging level number -> the nearest stored level; a tie goes to the less severe one
    (WARNING 30 -> warn, CRITICAL 50 -> fatal, 15 -> debug, 25 -> info)."""
    if levelno <= 15:
        return "debug"
    if levelno <= 25:
        return "info"
    if levelno <= 35:
        return "warn"
    if levelno <= 45:
        return "error"
    return "fatal"


# -- clipping -----------------------------------------------------------------------------------------------
#: Put where a message/exception/attribute value was cut (between its head and tail); `{n}` is the bytes cut.
TRUNCATION_MARKER = "…[truncated {n} bytes]"


def clip_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes: its head, TRUNCATION_MARKER (how many bytes went), its tail.

    Head and tail share the room equally, so a traceback (or a pre-formatted one inside a message) keeps both
    where it starts and its last line, the one naming the error. A multi-byte character split at either cut
    is dropped whole (the result is valid UTF-8 within `limit`). `limit` must exceed the marker's length
    (about 40 bytes). Lone surrogates count as one byte ("?"), as they are sent.
    """
    if len(text) * 4 <= limit:
        return text
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    # The marker for the largest possible cut is the longest one, so sizing for it always fits.
    room = limit - len(TRUNCATION_MARKER.format(n=len(raw)).encode("utf-8"))
    head = raw[: room // 2].decode("utf-8", "ignore")
    tail = raw[len(raw) - (room - room // 2) :].decode("utf-8", "ignore")
    cut = len(raw) - len(head.encode("utf-8")) - len(tail.encode("utf-8"))
    return f"{head}{TRUNCATION_MARKER.format(n=cut)}{tail}"


def clip_chars(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters the way `clip_bytes` cuts: head, marker, tail (the marker
    counts the UTF-8 bytes cut). `limit` must exceed the marker's length (about 30 characters)."""
    if len(text) <= limit:
        return text
    room = limit - len(TRUNCATION_MARKER.format(n=len(text) * 4))
    head_end = room // 2
    tail_start = len(text) - (room - head_end)
    cut = text[head_end:tail_start].encode("utf-8", "replace")
    return f"{text[:head_end]}{TRUNCATION_MARKER.format(n=len(cut))}{text[tail_start:]}"


def is_problem(content_type: str | None) -> bool:
    """Whether a `Content-Type` header value names PROBLEM_CONTENT_TYPE (parameters and case ignored)."""
    return (content_type or "").split(";", 1)[0].strip().lower() == PROBLEM_CONTENT_TYPE
