"""The fast path for valid batches: msgspec decodes a JSON array of entries into typed structs in C, a few
whole-batch checks (C calls over all entries at once) do what msgspec cannot express, and the structs are
finished in place into the rows `schema.rows_from_json` makes (`Row`: the columns in row order, written by
msgspec as the same bytes as the dict row; no dict per row is built).

It only ever accepts. A body it cannot decide exactly as the pydantic schema would - any invalid entry, a
timestamp not in the canonical form, a level alias, a value pydantic would coerce (`"7"` for pid), a number
beyond 64 bits - makes it decline, and `rows_from_json` (below) runs the pydantic path, which gives the same
rows or the ValidationError whose messages clients get. So no error message is written here.

Every constraint derives from `oglogstream.wire.FIELDS` (types, lengths, required) and from the schema's own
patterns (`wire.ID_PATTERN`, `timestamps._VALID_CANONICAL_TS`); `schema._SPECIAL_TYPES` names the fields whose
rule is more than a type and a length, and each of those has its rule here (checked at import).
Measured (`benchmarks/ingest_decode_bench.py`, docs/benchmarks.md "Ingestion and end-to-end"): decoding a
1,000-entry NDJSON body of the SDK's lines and writing its payload takes about 0.7x the CPU of the dict rows
this path made before (to_builtins, then the dict finishing), itself about 0.65x the pydantic path's.
"""

from __future__ import annotations

import re
from collections import deque
from functools import partial
from itertools import chain, repeat
from operator import attrgetter, is_not
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType
from oglogstream import wire

from . import schema
from .timestamps import _VALID_CANONICAL_TS

__all__ = ["Row", "decide", "rows_from_json"]

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
        # default, omitted when the row is written (the pydantic entry has it as None or not at all, and
        # schema.finish_rows drops it either way).
        fields.append(
            (field.name, kind, msgspec.NODEFAULT) if field.required else (field.name, kind | None, None)
        )
    # The columns ingestion adds, after the entry's as in schema.make_rows: typed as UnsetType, which no JSON
    # value decodes to, so a body that gives one of them is declined (pydantic refuses the unknown field).
    # UNSET is omitted when the row is written, as a row without typed maps has none.
    added = (schema.NUMBER_MAP, schema.BOOL_MAP, wire.RECEIVED_AT.name)
    fields += [(name, UnsetType, UNSET) for name in added]
    return fields


#: One entry as decoded, then the row made of it in place (`rows_from_json`): fields in row order (msgspec
#: writes a struct's fields in declaration order: the bytes `row_codec.dump_rows` writes for the dict row),
#: unknown fields refused (extra="forbid"). `row[column]` reads a column (C-level, as `dict.__getitem__`
#: does for the ones every row has: id, timestamp, level, message, service, received_at); an optional
#: column not given reads None (typed maps: UNSET). gc=False: a row only refers to strings, ints, bools
#: and flat dicts of them, so it can be in no reference cycle, and 10,000 of them do not trigger collections.
Row = msgspec.defstruct(
    "Row",
    _struct_fields(),
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    gc=False,
    module=__name__,
    namespace={"__getitem__": object.__getattribute__},
)
_DECODER = msgspec.json.Decoder(Annotated[list[Row], Meta(max_length=wire.MAX_BATCH_ENTRIES)])  # type: ignore[valid-type]
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
#: (getter, empty value) of each optional field: a given but empty value ("", 0, {}) is dropped from the
#: row, as schema.finish_rows drops it (it is the column's default anyway).
_EMPTY: dict[str, Any] = {"string": "", "integer": 0, "object": {}}
_OPTIONAL = tuple(
    (field.name, attrgetter(field.name), _EMPTY[field.json_type])
    for field in wire.FIELDS
    if not field.required and field.name not in ("id", "timestamp")  # their patterns refuse ""
)


def _over_bytes(entries: list[Any]) -> bool:
    """True when a `bytes`-limited field of some entry has more UTF-8 bytes than its limit (schema's
    _utf8_limit). Only values of more than limit/4 characters can, and only those are encoded; the lengths
    are compared in one C-level pass first (most bodies have no such value)."""
    for get, limit, required in _BYTE_LIMITS:
        chars = limit // 4
        values = list(map(get, entries) if required else filter(None, map(get, entries)))
        if not values or max(map(len, values)) <= chars:
            continue
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


def decide(array: bytes, *, window: schema.TimeWindow | None = None) -> list[Any] | None:
    """The validated entries of a JSON array as `Row` structs (optional fields not given or null are None),
    holding exactly what `schema.ENTRY_LIST.validate_json(array, context={"window": window})` gives; or None
    when this path cannot decide the body (the pydantic path then does)."""
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
    return entries


def rows_from_json(
    array: bytes,
    *,
    batch_id: str,
    received_at: str,
    window: schema.TimeWindow | None = None,
    first_index: int = 0,
) -> list[Any]:
    """`schema.rows_from_json` (same arguments, same ValidationError): the rows as `Row` structs when `decide`
    decides the body and no attribute value is a float, else as dicts; either way `row_codec.dump_rows`
    writes the same bytes and `row_codec.row_dicts` gives the same dicts."""
    rows = decide(array, window=window)
    if rows is None:
        return schema.rows_from_json(
            array, batch_id=batch_id, received_at=received_at, window=window, first_index=first_index
        )
    types = set(map(type, chain.from_iterable(map(dict.values, filter(None, map(_get_attributes, rows))))))
    if float in types:
        # Written by pydantic-core (its float format, see row_codec.dump_rows): dict rows, as before.
        dicts: list[dict[str, Any]] = msgspec.to_builtins(rows)
        schema.add_typed_maps(dicts)
        schema.finish_rows(dicts, batch_id=batch_id, received_at=received_at, first_index=first_index)
        return dicts
    _finish(rows, batch_id=batch_id, received_at=received_at, first_index=first_index)
    if not types <= _STRING_ONLY:
        _add_typed_maps(rows)
    return rows


def _finish(rows: list[Any], *, batch_id: str, received_at: str, first_index: int) -> None:
    """schema.finish_rows for Row structs: a derived id and received_at as timestamp when not given, empty
    optional values dropped, received_at set. The checks are C-level passes; only rows of bodies that need
    a change pay a Python step each."""
    if None in map(_get_id, rows) or None in map(_get_timestamp, rows):
        for position, row in enumerate(rows):
            if row.id is None:
                row.id = schema.derived_id(batch_id, first_index + position)
            if row.timestamp is None:
                row.timestamp = received_at
    for name, get, empty in _OPTIONAL:
        if empty in map(get, rows):  # == comparisons: None never equals an empty value
            for row in rows:
                if getattr(row, name) == empty:
                    setattr(row, name, None)
    deque(map(setattr, rows, repeat(wire.RECEIVED_AT.name), repeat(received_at)), maxlen=0)


def _add_typed_maps(rows: list[Any]) -> None:
    """schema.add_typed_maps for Row structs without float attribute values (ints and bools only). One
    inline loop per row: a third cheaper than a dict comprehension, which is a function call per row."""
    for row in rows:
        attributes = row.attributes
        if not attributes:
            continue
        numbers: dict[str, int] = {}
        bools: dict[str, bool] = {}
        for key, value in attributes.items():
            kind = value.__class__
            if kind is int:
                numbers[key] = value
            elif kind is bool:
                bools[key] = value
        if numbers:
            row.attributes_number = numbers
        if bools:
            row.attributes_bool = bools
