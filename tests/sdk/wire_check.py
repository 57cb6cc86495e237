"""The wire contract (version 1) as a test oracle: every entry the SDK builds must pass `problems()`."""

from __future__ import annotations

import re
from typing import Any

from oglogstream import _wire

__all__ = ["ENTRY_FIELDS", "problems"]

ENTRY_FIELDS = frozenset(
    {
        "level",
        "message",
        "service",
        "timestamp",
        "id",
        "logger",
        "host",
        "pid",
        "thread",
        "trace_id",
        "span_id",
        "exception",
        "attributes",
    }
)
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_ID = re.compile(rf"^[A-Za-z0-9_.:-]{{1,{_wire.MAX_ID_CHARS}}}$")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def problems(entry: Any) -> list[str]:
    """Every way `entry` breaks the wire contract (empty list = valid)."""
    if not isinstance(entry, dict):
        return [f"entry is {type(entry).__name__}, not an object"]
    out = [f"unknown field {key!r}" for key in entry if key not in ENTRY_FIELDS]
    level = entry.get("level")
    if level not in _wire.LEVELS:
        out.append(f"level {level!r}")
    message = entry.get("message")
    if not isinstance(message, str) or not message or _utf8_len(message) > _wire.MAX_MESSAGE_BYTES:
        out.append(f"message {type(message).__name__} of {len(message or '')} chars")
    service = entry.get("service")
    if not isinstance(service, str) or not 1 <= len(service) <= _wire.MAX_SERVICE_CHARS:
        out.append(f"service {service!r}")
    if "timestamp" in entry and not (
        isinstance(entry["timestamp"], str) and _TIMESTAMP.match(entry["timestamp"])
    ):
        out.append(f"timestamp {entry['timestamp']!r}")
    if "id" in entry and not (isinstance(entry["id"], str) and _ID.match(entry["id"])):
        out.append(f"id {entry['id']!r}")
    for name in ("logger", "host", "thread", "trace_id", "span_id"):
        if name in entry:
            value = entry[name]
            if not isinstance(value, str) or not 1 <= len(value) <= _wire.MAX_SHORT_FIELD_CHARS:
                out.append(f"{name} {value!r:.80}")
    if "pid" in entry and (not isinstance(entry["pid"], int) or isinstance(entry["pid"], bool)):
        out.append(f"pid {entry['pid']!r}")
    if "exception" in entry:
        exc = entry["exception"]
        if not isinstance(exc, str) or not exc or _utf8_len(exc) > _wire.MAX_EXCEPTION_BYTES:
            out.append("exception")
    if "attributes" in entry:
        attrs = entry["attributes"]
        if not isinstance(attrs, dict) or len(attrs) > _wire.MAX_ATTRIBUTES:
            out.append(
                f"attributes: {type(attrs).__name__} of {len(attrs) if isinstance(attrs, dict) else '?'}"
            )
        else:
            for key, value in attrs.items():
                if not 1 <= len(key) <= _wire.MAX_ATTRIBUTE_KEY_CHARS:
                    out.append(f"attribute key {key!r:.80}")
                if isinstance(value, str):
                    if len(value) > _wire.MAX_ATTRIBUTE_VALUE_CHARS:
                        out.append(f"attribute {key!r:.40} value of {len(value)} chars")
                elif isinstance(value, bool):
                    pass
                elif isinstance(value, int):
                    if not -(2**63) <= value < 2**63:
                        out.append(f"attribute {key!r:.40} int out of range")
                elif isinstance(value, float):
                    pass  # json.loads only produces finite floats from a valid body (NaN is not valid JSON)
                else:
                    out.append(f"attribute {key!r:.40} is {type(value).__name__}")
    return out
