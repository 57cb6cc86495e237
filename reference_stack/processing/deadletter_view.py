"""How GET /api/dead-letters shows one dead letter: its payload as JSON the answer can carry (NaN/Infinity as
their text), else as text, and a payload too large for a page as a truncated preview; its headers as text.
Pure functions of a fetched message (nats-py RawStreamMsg: seq, time, headers, data); none of them raises."""

from __future__ import annotations

import email.header
import json
from collections.abc import Mapping
from typing import Any

import pydantic_core
from oglogstream import wire

from ..broker import messages

__all__ = [
    "HEADER_CHARS",
    "INLINE_PARSE_BYTES",
    "PAGE_BYTES",
    "PREVIEW_BYTES",
    "describe",
    "headers_text",
    "item_bytes",
    "message_view",
]

#: Bytes of dead-letter messages (as the answer spells them) one page carries at most: 300 dead letters of
#: ~1 MB made one 324 MB answer that froze its process. Past this budget the page stops, next_after goes on.
PAGE_BYTES = 8 * 1024 * 1024
#: Bytes of a payload shown (as text, `truncated: true`) when it alone would not fit in PAGE_BYTES.
PREVIEW_BYTES = 64 * 1024
#: Characters of one header's text shown (the error of a dead letter is a sentence or a driver's message).
HEADER_CHARS = 4096
#: Payloads up to this size are parsed on the event loop (bounded work); larger ones in a worker thread.
INLINE_PARSE_BYTES = 64 * 1024


def message_view(data: bytes) -> tuple[Any, int, bool]:
    """(message, bytes it takes in the answer, truncated) for one payload: its JSON value when it is JSON
    that the answer can carry, else its text (invalid UTF-8 replaced); the text of its first PREVIEW_BYTES
    when it would not fit in PAGE_BYTES alone. Never raises: a payload is shown, not refused."""
    if len(data) <= PAGE_BYTES:
        # pydantic_core stops at a nesting limit and at huge integers (ValueError) where json.loads recursed
        # (RecursionError, a 500); the dumps check catches whatever else the answer could not spell.
        try:
            value = wire.finite_json(pydantic_core.from_json(data))
            size = len(json.dumps(value, allow_nan=False))
        except (ValueError, RecursionError):
            value = data.decode("utf-8", errors="replace")
            size = len(json.dumps(value))
        if size <= PAGE_BYTES:
            return value, size, False
    text = data[:PREVIEW_BYTES].decode("utf-8", errors="ignore")
    return text, len(json.dumps(text)), True


def headers_text(msg: Any) -> dict[str, str]:
    """A fetched message's headers as text: nats-py parses them with the email parser, which hands a value
    with non-ASCII bytes back as an email.header.Header (json.dumps and str methods fail on it, str() loses
    the bytes); its bytes are read back as UTF-8, as they were sent."""
    return {str(k): _header_text(v) for k, v in (msg.headers or {}).items()}


def _header_text(value: Any) -> str:
    if not isinstance(value, email.header.Header):
        return str(value)
    parts = email.header.decode_header(value)
    return b"".join(p if isinstance(p, bytes) else p.encode() for p, _ in parts).decode("utf-8", "replace")


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    """Header `name` as a number, None when absent or not ASCII digits (a hand-made or legacy dead letter
    must not turn the whole page into a 500)."""
    raw = headers.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else None


def describe(msg: Any, message: Any, truncated: bool) -> dict[str, Any]:
    """One item of the page. Header texts are clipped to HEADER_CHARS (head and tail): a NATS message may
    carry 64 KiB of headers, and a page's budget counts them (`item_bytes`)."""
    headers = {name: wire.clip_chars(text, HEADER_CHARS) for name, text in headers_text(msg).items()}
    return {
        "seq": msg.seq,
        "time": msg.time.isoformat().replace("+00:00", "Z") if msg.time else None,
        "reason": headers.get(messages.DEAD_REASON, ""),
        "error": headers.get(messages.DEAD_ERROR, ""),
        "original_seq": _header_int(headers, messages.ORIGINAL_SEQ) or 0,
        "original_msg_id": headers.get(messages.ORIGINAL_MSG_ID, ""),
        "rows": _header_int(headers, messages.ROWS),
        "bytes": len(msg.data or b""),
        "truncated": truncated,
        "message": message,
    }


def item_bytes(item: Mapping[str, Any], message_bytes: int) -> int:
    """Bytes `item` (from `describe`) takes in the answer: its message's (known from `message_view`) plus the
    rest, headers included, as JSON spells them."""
    return message_bytes + len(json.dumps({k: v for k, v in item.items() if k != "message"}))
