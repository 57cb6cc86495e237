"""Wire contract, version 1: the limits and names that the SDK and every server role share.

Plain constants only, so the SDK pays nothing for them; the stack builds its pydantic schema on top.
"""

from __future__ import annotations

__all__ = [
    "BATCH_ID_HEADER",
    "LEVELS",
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_KEY_CHARS",
    "MAX_ATTRIBUTE_VALUE_CHARS",
    "MAX_BATCH_BODY_BYTES",
    "MAX_BATCH_DECOMPRESSED_BYTES",
    "MAX_BATCH_ENTRIES",
    "MAX_EXCEPTION_BYTES",
    "MAX_ID_CHARS",
    "MAX_MESSAGE_BYTES",
    "MAX_SERVICE_CHARS",
    "MAX_SHORT_FIELD_CHARS",
    "MAX_SINGLE_BODY_BYTES",
    "NDJSON_CONTENT_TYPE",
    "TRUNCATION_MARKER",
    "WIRE_VERSION",
]

WIRE_VERSION = 1

#: Levels in order of severity. The SDK maps stdlib WARNING -> "warn" and CRITICAL -> "fatal".
LEVELS: tuple[str, ...] = ("debug", "info", "warn", "error", "fatal")

#: `message` is at most this many UTF-8 bytes. The SDK keeps the head and the tail with TRUNCATION_MARKER
#: between (a pre-formatted traceback keeps its last line, the error); the server rejects.
MAX_MESSAGE_BYTES = 10 * 1024
#: `exception` (a formatted traceback) is at most this many UTF-8 bytes; the SDK clips it like `message`:
#: head, TRUNCATION_MARKER, tail (where the error is).
MAX_EXCEPTION_BYTES = 32 * 1024
#: `service` is 1..MAX_SERVICE_CHARS characters.
MAX_SERVICE_CHARS = 100
#: `logger`, `host`, `thread`, `trace_id`, `span_id` are at most this many characters.
MAX_SHORT_FIELD_CHARS = 256
#: `id` is 1..MAX_ID_CHARS characters of [A-Za-z0-9_.:-].
MAX_ID_CHARS = 64
#: `attributes` is a flat object of string -> string/number/bool with at most this many keys,
MAX_ATTRIBUTES = 64
#: keys of at most this many characters,
MAX_ATTRIBUTE_KEY_CHARS = 128
#: and string values of at most this many characters.
MAX_ATTRIBUTE_VALUE_CHARS = 2048

#: `POST /log` body limit (the seed's 50 KB).
MAX_SINGLE_BODY_BYTES = 50 * 1024
#: `POST /logs` body limit as sent (compressed or not)...
MAX_BATCH_BODY_BYTES = 8 * 1024 * 1024
#: ...and after gzip decompression: a gzip bomb is cut off here with 413.
MAX_BATCH_DECOMPRESSED_BYTES = 32 * 1024 * 1024
#: `POST /logs` takes at most this many entries per request.
MAX_BATCH_ENTRIES = 10_000

#: Put where a message/exception/attribute value was cut (between its head and tail); `{n}` is the bytes cut.
TRUNCATION_MARKER = "…[truncated {n} bytes]"

NDJSON_CONTENT_TYPE = "application/x-ndjson"
#: A client's idempotency key for one batch request; a retried request carries the same value, and the
#: ingestion role uses it as the JetStream `Nats-Msg-Id`, so the broker stores a retried batch once.
BATCH_ID_HEADER = "X-Oglog-Batch-Id"
