"""The fast path for valid batches: msgspec decodes a JSON array of entries into typed structs in C, a few
whole-batch checks (C calls over all entries at once) do what msgspec cannot express, and the structs become
exactly the rows `schema.rows_from_json` makes.

It only ever accepts. A body it cannot decide exactly as the pydantic schema would - any invalid entry, a
timestamp not in the canonical form, a level alias, a value pydantic would coerce (`"7"` for pid), a number
beyond 64 bits - makes it decline, and `rows_from_json` (below) runs the pydantic path, which gives the same
rows or the ValidationError whose messages clients get. So no error message is written here.

Every constraint derives from `oglogstream.wire.FIELDS` (types, lengths, required) and from the schema's own
patterns (`wire.ID_PATTERN`, `timestamps._VALID_CANONICAL_TS`); `schema._SPECIAL_TYPES` names the fields whose
rule is more than a type and a length, and each of those has its rule here (checked at import).
Measured (`benchmarks/ingest_decode_bench.py`, docs/benchmarks.md "Ingestion and end-to-end"): decoding a
1,000-entry NDJSON body of the SDK's lines takes about 0.65x the CPU of the pydantic path.
"""

from __future__ import annotations

import re
from functools import partial
from itertools import chain
from operator import attrgetter, is_not
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from oglogstream import wire

from . import row_codec, schema
from .timestamps import _VALID_CANONICAL_TS

__all__ = ["decide", "rows_from_json"]

#: The largest finite double: pydantic's float branch refuses inf (allow_inf_nan=False), and msgspec's
#: bound check refuses what parses to inf (1e400), so both keep exactly the finite floats.
_MAX_DOUBLE = 1.7976931348623157e308

#: An attribute value as schema._AttrValue accepts it without a Python call or a coercion: a string within
#: its length, a bool, a 64-bit int, a finite float. A longer int (pydantic keeps its decimal text) or a
#: value pydantic would coerce fails here, so the body is declined.
_AttrValue = (
    Annotated[str, Meta(max_length=wire.MAX_ATTRIBUTE_VALUE_CHARS)]
    | bool
    | Annotated[int, Meta(ge=wire.INT64_MIN, le=wire.INT64_MAX)]
    | Annotated[float, Meta(ge=-_MAX_DOUBLE, le=_MAX_DOUBLE)]
)


def _anchored_body(pattern: str) -> str:
    """`^X$` -> `X`: the schema's patterns are matched whole by pydantic (Rust regex, where `$` is the end of
    the text); here they are matched, joined by newlines, in one `re.fullmatch` (see _all_match)."""
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise AssertionError(f"expected an anchored pattern: {pattern!r}")
    body = pattern[1:-1]
    if re.search(body, "\n") is not None or "\\n" in body or "\\s" in body or "(?" in body or "\\(" in body:
        # a newline, a group of another kind or an escaped parenthesis would break _joined's rewriting
        raise AssertionError(f"this pattern cannot be checked joined: {pattern!r}")
    return body


def _joined(pattern: str) -> re.Pattern[str]:
    # Groups made non-capturing (a third faster: these patterns have no escaped parentheses or lookarounds),
    # and ASCII, as the patterns themselves are (`[0-9]`): a timestamp with other digits
    # ("2026-11-27T10:00:00.00000\u0663Z") is left to the pydantic path, which refuses it.
    body = _anchored_body(pattern).replace("(", "(?:")
    # A value never holds a newline that the pattern matches, so the fullmatch can only split the joined
    # text at the separators: it matches iff every value matches the pattern on its own.
    return re.compile(f"(?:(?:{body})\n)*(?:{body})", re.ASCII)


#: Rules that are more than a type and a length (schema._SPECIAL_TYPES): id and timestamp are decoded as
#: plain strings and matched afterwards, all at once; the canonical timestamp is pydantic's first, Python-
#: free branch (any other form goes to the pydantic path); level accepts the stored names only.
_ID = _joined(wire.ID_PATTERN)
_TIMESTAMP = _joined(_VALID_CANONICAL_TS)
_SPECIAL: dict[str, Any] = {
    "id": str,
    "timestamp": str,
    "level": Literal[wire.LEVELS],  # type: ignore[valid-type]
    # Keys as plain str: msgspec then decodes each distinct key once per body (its key cache; a constrained
    # key type bypasses it, a string per key and entry: +40 MB on the widest batch); lengths: _key_lengths_ok.
    "attributes": Annotated[dict[str, _AttrValue], Meta(max_length=wire.MAX_ATTRIBUTES)],
}
if set(schema._SPECIAL_TYPES) != set(_SPECIAL):
    raise AssertionError("schema._SPECIAL_TYPES and fast_rows._SPECIAL must name the same fields")


def _field_type(field: wire.Field) -> Any:
    special = _SPECIAL.get(field.name)
    if special is not None:
        return special
    if field.json_type == "integer":
        # Strict: an int only (pydantic's lax int also takes "7" and 7.0; those bodies are declined).
        return Annotated[int, Meta(ge=0, le=field.limit)]
    if field.unit in ("chars", "bytes"):
        # A UTF-8 byte limit is also a character limit (a character is at least one byte); the bytes of
        # the long values are counted after decoding (_over_bytes).
        return Annotated[str, Meta(min_length=field.min_length, max_length=field.limit)]
    raise AssertionError(f"wire field {field.name!r} needs a rule in fast_rows._SPECIAL")


def _struct_fields() -> list[tuple[str, Any, Any]]:
    fields: list[tuple[str, Any, Any]] = []
    for field in wire.FIELDS:
        kind = _field_type(field)
        # msgspec.NODEFAULT: required. An optional field may be null, as in the schema; None is the
        # default, omitted when the struct becomes a dict (the pydantic entry has it as None or not at all,
        # and schema.finish_rows drops it either way).
        fields.append(
            (field.name, kind, msgspec.NODEFAULT) if field.required else (field.name, kind | None, None)
        )
    return fields


#: One entry: fields in row order (a struct becomes a dict in declaration order, as pydantic's TypedDict
#: gives them), unknown fields refused (extra="forbid").
_Entry = msgspec.defstruct(
    "_Entry", _struct_fields(), kw_only=True, forbid_unknown_fields=True, omit_defaults=True
)
_DECODER = msgspec.json.Decoder(Annotated[list[_Entry], Meta(max_length=wire.MAX_BATCH_ENTRIES)])  # type: ignore[valid-type]
_BYTE_LIMITS = tuple(
    (attrgetter(field.name), field.limit, field.required) for field in wire.FIELDS if field.unit == "bytes"
)
_get_id = attrgetter("id")
_get_timestamp = attrgetter("timestamp")
_get_attributes = attrgetter("attributes")
#: The type of every attribute value of a batch that needs no typed maps (schema.add_typed_maps).
_STRING_ONLY = frozenset({str})
#: True for a value that was given (not None): "" is given, and refused by the patterns.
_given = partial(is_not, None)


def _over_bytes(entries: list[Any]) -> bool:
    """True when a `bytes`-limited field of some entry has more UTF-8 bytes than its limit (schema's
    _utf8_limit). Only values of more than limit/4 characters can, and only those are encoded."""
    for get, limit, required in _BYTE_LIMITS:
        chars = limit // 4
        values = map(get, entries) if required else filter(None, map(get, entries))
        for value in values:
            if len(value) > chars and len(value.encode("utf-8", "surrogatepass")) > limit:
                return True
    return False


def _key_lengths_ok(entries: list[Any]) -> bool:
    """Every attribute key has 1..MAX_ATTRIBUTE_KEY_CHARS characters (schema._AttrKey); one C-level pass."""
    lengths = set(map(len, chain.from_iterable(filter(None, map(_get_attributes, entries)))))
    return not lengths or (min(lengths) >= 1 and max(lengths) <= wire.MAX_ATTRIBUTE_KEY_CHARS)


def _all_match(pattern: re.Pattern[str], values: list[str]) -> bool:
    return not values or pattern.fullmatch("\n".join(values)) is not None


def decide(array: bytes, *, window: schema.TimeWindow | None = None) -> list[dict[str, Any]] | None:
    """The validated entries of a JSON array (dicts in row key order, optional fields not given or null
    left out), exactly as `schema.ENTRY_LIST.validate_json(array, context={"window": window})` gives them up
    to those absent keys; or None when this path cannot decide the body (the pydantic path then does)."""
    try:
        entries = _DECODER.decode(array)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    ids = list(filter(_given, map(_get_id, entries)))
    stamps = list(filter(_given, map(_get_timestamp, entries)))
    if not (_all_match(_ID, ids) and _all_match(_TIMESTAMP, stamps) and _key_lengths_ok(entries)):
        return None
    if _over_bytes(entries):
        return None
    # Canonical timestamps order like the times they name: the window holds them all iff it holds both ends.
    if window is not None and stamps and (min(stamps) < window.oldest or max(stamps) > window.newest):
        return None
    rows: list[dict[str, Any]] = msgspec.to_builtins(entries)
    return rows


def rows_from_json(
    array: bytes,
    *,
    batch_id: str,
    received_at: str,
    window: schema.TimeWindow | None = None,
    first_index: int = 0,
) -> list[dict[str, Any]]:
    """`schema.rows_from_json` (same arguments, same rows, same ValidationError), through `decide` when it
    can decide the body."""
    rows = decide(array, window=window)
    if rows is None:
        return schema.rows_from_json(
            array, batch_id=batch_id, received_at=received_at, window=window, first_index=first_index
        )
    # Typed maps first: finish_rows then appends received_at after them, where make_rows has it, instead of
    # add_typed_maps moving it past them in every row. A batch of string values only skips that pass.
    if not row_codec.attribute_value_types(rows) <= _STRING_ONLY:
        schema.add_typed_maps(rows)
    schema.finish_rows(rows, batch_id=batch_id, received_at=received_at, first_index=first_index)
    return rows
