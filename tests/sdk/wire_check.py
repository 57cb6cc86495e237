"""The wire contract (version 1) as a test oracle: every entry the SDK builds must pass `problems()`.

Derived from `oglogstream.wire.FIELDS` (names, JSON types, limits, required), written independently of the
stack's pydantic schema. An SDK entry never carries an empty optional field, so empty strings are problems.
"""

from __future__ import annotations

import re
from typing import Any

from oglogstream import wire

__all__ = ["ENTRY_FIELDS", "problems"]

ENTRY_FIELDS = frozenset(wire.FIELD_NAMES)
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_ID = re.compile(wire.ID_PATTERN)


def _size(text: str, unit: str) -> int:
    return len(text.encode("utf-8")) if unit == "bytes" else len(text)


def _field_problem(field: wire.Field, value: Any) -> str | None:
    """Why `value` breaks `field`'s rule in the table (type, length, range), or None."""
    name = field.name
    if name == "level":
        return None if value in wire.LEVELS else f"level {value!r}"
    if name == "timestamp":
        return None if isinstance(value, str) and _TIMESTAMP.match(value) else f"timestamp {value!r}"
    if name == "id":
        return None if isinstance(value, str) and _ID.match(value) else f"id {value!r}"
    if name == "attributes":
        return None  # see _attribute_problems
    if field.json_type == "integer":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= field.limit:
            return f"{name} {value!r}"
        return None
    if not isinstance(value, str) or not value or _size(value, field.unit) > field.limit:
        size = _size(value, field.unit) if isinstance(value, str) else "?"
        return f"{name} {type(value).__name__} of {size} {field.unit}"
    if len(value) < field.min_length:
        return f"{name} {value!r}"
    return None


def _attribute_problems(attrs: Any) -> list[str]:
    if not isinstance(attrs, dict) or len(attrs) > wire.MAX_ATTRIBUTES:
        return [f"attributes: {type(attrs).__name__} of {len(attrs) if isinstance(attrs, dict) else '?'}"]
    out = []
    for key, value in attrs.items():
        if not 1 <= len(key) <= wire.MAX_ATTRIBUTE_KEY_CHARS:
            out.append(f"attribute key {key!r:.80}")
        if isinstance(value, str):
            if len(value) > wire.MAX_ATTRIBUTE_VALUE_CHARS:
                out.append(f"attribute {key!r:.40} value of {len(value)} chars")
        elif isinstance(value, bool):
            pass
        elif isinstance(value, int):
            if not wire.INT64_MIN <= value <= wire.INT64_MAX:
                out.append(f"attribute {key!r:.40} int out of range")
        elif isinstance(value, float):
            pass  # json.loads only produces finite floats from a valid body (NaN is not valid JSON)
        else:
            out.append(f"attribute {key!r:.40} is {type(value).__name__}")
    return out


def problems(entry: Any) -> list[str]:
    """Every way `entry` breaks the wire contract (empty list = valid)."""
    if not isinstance(entry, dict):
        return [f"entry is {type(entry).__name__}, not an object"]
    out = [f"unknown field {key!r}" for key in entry if key not in ENTRY_FIELDS]
    for field in wire.FIELDS:
        if field.name not in entry:
            if field.required:
                out.append(f"{field.name} missing")
            continue
        problem = _field_problem(field, entry[field.name])
        if problem:
            out.append(problem)
    if "attributes" in entry:
        out.extend(_attribute_problems(entry["attributes"]))
    return out
