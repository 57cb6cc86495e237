"""Wire schema, version 1: validate entries, turn them into `logs` rows, and render the public entry shape.

Validation runs in pydantic-core (Rust) on the raw JSON bytes; the only Python per entry is a couple of
after-validators (UTF-8 size checks, a timestamp check), so a request costs a few microseconds per entry.
Valid batches usually never get here: `fast_rows` decides them with msgspec and falls back to this module
for everything else, so the error messages are all written here.
Validated entries are plain dicts of JSON values: the timestamp normalised to RFC 3339 UTC with microseconds
and a `Z` ("2026-11-27T10:00:00.123456Z"), attribute values as received (str, int, float or bool). A row is
an entry with `id` FIRST and `received_at` LAST: the processor finds ids in a payload by position
(`row_codec.payload_ids`), and a row minus `received_at` is the public entry shape (`row_codec.live_payload`).

Every field, its order and its limit come from `oglogstream.wire.FIELDS`; this module only adds the rules
that are more than a type and a length (`_SPECIAL_TYPES`).

Unknown top-level fields are rejected on both endpoints (as the seed does on `POST /log`): a misspelt
`mesage` or `levle` is a client bug, and silently dropping it would lose data without anyone noticing.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Any, Literal

from oglogstream import wire
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    with_config,
)
from typing_extensions import NotRequired, TypedDict

from .timestamps import (
    FORMAT_ERROR,
    MAX_FUTURE_SECONDS,
    RANGE_ERROR,
    WINDOW_ERROR,
    Timestamp,
    TimeWindow,
    current_window,
    format_timestamp,
)

__all__ = [
    "ANY_LIST",
    "BOOL_MAP",
    "ENTRY",
    "ENTRY_LIST",
    "ENTRY_LIST_FIRST_ERROR",
    "ID_PATTERN",
    "MAX_FUTURE_SECONDS",
    "NUMBER_MAP",
    "Entry",
    "TimeWindow",
    "add_typed_maps",
    "current_window",
    "derived_id",
    "finish_rows",
    "format_timestamp",
    "make_rows",
    "rows_from_json",
    "validation_details",
]

ID_PATTERN = wire.ID_PATTERN
def _utf8_limit(limit: int) -> AfterValidator:
    def check(value: str) -> str:
        # A str of n chars is at most 4n UTF-8 bytes: only long values pay for the encode.
        if len(value) * 4 > limit and len(value.encode("utf-8", "surrogatepass")) > limit:
            raise ValueError(f"must be at most {limit} bytes of UTF-8")
        return value

    return AfterValidator(check)


#: Set in a validation context (a dict) when a number or boolean attribute value was validated under it:
#: `rows_from_json` then adds typed maps, and a batch of string attributes skips that pass entirely.
_TYPED_SEEN = "oglog_typed_attribute_seen"


def _typed_value(value: Any, info: ValidationInfo) -> Any:
    # One Python call per number/boolean attribute value; string values (the first branch) never get here.
    if info.context is not None:
        info.context[_TYPED_SEEN] = True
    return value


#: pydantic's text of a non-finite float (the only value the last branch below coerces) -> the wire's text.
_NON_FINITE = {str(x): wire.non_finite_text(x) for x in (math.nan, math.inf, -math.inf)} | {"NaN": "NaN"}


def _non_finite_text(value: str) -> str:
    return _NON_FINITE.get(value, value)


#: Attribute values keep their JSON type (stored typed, see docs/architecture.md). Each branch is strict, so
#: `true` stays a bool and 5 an int; an integer beyond 64 bits is kept as its decimal text rather than rounded
#: to a float (only such an integer costs a Python call), and NaN / a float beyond double range becomes
#: "NaN" / "Infinity" (`wire.non_finite_text`).
#: Strings, the common case, are tried first: a string attribute costs one branch (measured: 10,000 entries of
#: 6 string attributes 16.5 ms, as fast as the former stringifying union; of mixed types 45 ms vs 24 ms).
_AttrValue = Annotated[
    Annotated[str, Strict(), Field(max_length=wire.MAX_ATTRIBUTE_VALUE_CHARS)]
    | Annotated[bool, Strict(), AfterValidator(_typed_value)]
    | Annotated[int, Strict(), Field(ge=wire.INT64_MIN, le=wire.INT64_MAX), AfterValidator(_typed_value)]
    | Annotated[int, Strict(), AfterValidator(str)]
    | Annotated[float, Strict(), Field(allow_inf_nan=False), AfterValidator(_typed_value)]
    | Annotated[
        str,
        Field(max_length=wire.MAX_ATTRIBUTE_VALUE_CHARS, coerce_numbers_to_str=True),
        AfterValidator(_non_finite_text),
    ],
    Field(union_mode="left_to_right"),
]
_AttrKey = Annotated[str, Field(min_length=1, max_length=wire.MAX_ATTRIBUTE_KEY_CHARS)]


#: The reason a level no spelling matches gets.
LEVEL_ERROR = f"must be one of {', '.join(wire.LEVELS)} (any case) or {', '.join(wire.LEVEL_ALIASES)}"


def _level_alias(value: str) -> str:
    level = wire.level_name(value)
    if level is None:
        raise ValueError(LEVEL_ERROR)
    return level


# The exact stored names are matched in Rust; only other spellings (WARNING, Info, err) cost a Python call.
Level = Annotated[
    Literal[wire.LEVELS] | Annotated[str, AfterValidator(_level_alias)],  # type: ignore[valid-type]
    Field(union_mode="left_to_right"),
]

#: Fields whose rule is more than a type and a length.
_SPECIAL_TYPES: dict[str, Any] = {
    "id": Annotated[str, Field(pattern=ID_PATTERN)],
    "timestamp": Timestamp,
    "level": Level,
    "attributes": Annotated[dict[_AttrKey, _AttrValue], Field(max_length=wire.MAX_ATTRIBUTES)],
}


def _field_type(field: wire.Field) -> Any:
    """The pydantic type of one wire field, from its JSON type and limit."""
    special = _SPECIAL_TYPES.get(field.name)
    if special is not None:
        return special
    if field.json_type == "integer":
        return Annotated[int, Field(ge=0, le=field.limit)]
    if field.unit == "bytes":
        return Annotated[str, _utf8_limit(field.limit)]
    if field.unit == "chars":
        return Annotated[str, Field(min_length=field.min_length or None, max_length=field.limit)]
    raise AssertionError(f"wire field {field.name!r} needs a rule in schema._SPECIAL_TYPES")


def _entry_items() -> dict[str, Any]:
    items: dict[str, Any] = {}
    for field in wire.FIELDS:
        kind = _field_type(field)
        items[field.name] = kind if field.required else NotRequired[kind | None]
    return items


#: One log entry as sent by a client (wire contract v1), derived from `wire.FIELDS` and declared in its (row)
#: order, so a validated entry already has its keys in row order. Optional fields may also be null (= absent).
Entry = with_config(
    ConfigDict(extra="forbid", str_max_length=wire.MAX_EXCEPTION_BYTES, ser_json_inf_nan="null")
)(TypedDict("Entry", _entry_items()))  # type: ignore[operator]


#: Validates one entry from JSON bytes (`ENTRY.validate_json`) or a parsed object (`ENTRY.validate_python`).
ENTRY: TypeAdapter[Entry] = TypeAdapter(Entry)
#: Validates a JSON array of entries in one call (the fast path of `POST /logs` with `application/json`).
#: The list adapters refuse more than MAX_BATCH_ENTRIES items up front (one `too_long` error, no item work).
_BatchList = Field(max_length=wire.MAX_BATCH_ENTRIES)
ENTRY_LIST: TypeAdapter[list[Entry]] = TypeAdapter(Annotated[list[Entry], _BatchList])
#: ENTRY_LIST stopping at the first invalid entry: for "are all of these valid?" (rows_from_json), where a
#: refused batch is then validated entry by entry for its per-index errors anyway. Collecting every error
#: of a 10,000-entry slice first cost 45-70 ms, twice a valid batch's whole decode. It does not give the
#: `too_long` error for too many entries (ENTRY_LIST and ANY_LIST do).
ENTRY_LIST_FIRST_ERROR: TypeAdapter[list[Entry]] = TypeAdapter(
    Annotated[list[Entry], Field(max_length=wire.MAX_BATCH_ENTRIES, fail_fast=True)]
)
#: Parses JSON without validating (to split an array whose fast-path validation failed).
ANY_LIST: TypeAdapter[list[Any]] = TypeAdapter(Annotated[list[Any], _BatchList])


def validation_details(exc: ValidationError, *, skip_loc: int = 0) -> list[dict[str, str]]:
    """`[{"field": "attributes.user", "reason": "..."}]` from a pydantic error (`skip_loc` drops indexes).

    One item per field: a union (timestamp, attribute values) fails once per branch, and the branch errors are
    merged into the one reason a client can act on."""
    by_field: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = err["loc"][skip_loc:]
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("json_invalid", "json_type") or not loc:
            field = "body"
            if err["type"] in ("dict_type", "model_type"):
                reason = "expected a JSON object"
        else:
            field = str(loc[0])
            if field == "attributes" and len(loc) > 1 and isinstance(loc[1], str):
                field = f"attributes.{loc[1]}"
                if len(loc) > 2 and loc[2] == "[key]":
                    reason = f"key {reason[0].lower()}{reason[1:]}"
        by_field.setdefault(field, []).append(reason)
    details = []
    for field, reasons in by_field.items():
        window = [r for r in reasons if r.startswith(WINDOW_ERROR)]
        if window:
            reason = window[0]
        elif len(reasons) > 1 and field == "level":
            reason = reasons[-1] if reasons[-1] == LEVEL_ERROR else f"{LEVEL_ERROR}: {reasons[-1]}"
        elif len(reasons) > 1 and field == "timestamp":
            # A well-formed time out of range says only the range; other reasons refine the format error.
            last = reasons[-1]
            bare = last.startswith(FORMAT_ERROR) or last == RANGE_ERROR
            reason = last if bare else f"{FORMAT_ERROR}: {last}"
        elif len(reasons) > 1 and field.startswith("attributes."):
            specific = [r for r in reasons if not r.startswith("Input should be a valid")]
            reason = specific[0] if specific else "must be a string, number or boolean"
        else:
            reason = reasons[0]
        details.append({"field": field, "reason": reason})
    return details


_REQUIRED = frozenset(wire.REQUIRED)
#: Hex digits of sha256(batch id) in a derived id whose plain form would not fit MAX_ID_CHARS (160 bits).
_DERIVED_DIGEST_CHARS = 40


def derived_id(batch_id: str, index: int) -> str:
    """The id of the entry at `index` (>= 0) of batch `batch_id` that gave none: `{batch_id}-{index}`, or,
    when that exceeds MAX_ID_CHARS, `{sha256(batch_id)[:40]}-{index}` - deterministic, so a retried batch
    gets the same ids, and always a valid id."""
    plain = f"{batch_id}-{index}"
    if len(plain) <= wire.MAX_ID_CHARS:
        return plain
    return f"{hashlib.sha256(batch_id.encode()).hexdigest()[:_DERIVED_DIGEST_CHARS]}-{index}"


#: Row keys of the typed twins of attribute values (storage migration 2): `{key: number}` for int (bool
#: excluded) and finite float values, `{key: bool}` for bool values. `attributes` itself keeps every value.
NUMBER_MAP = "attributes_number"
BOOL_MAP = "attributes_bool"


def _typed_maps(row: dict[str, Any], attributes: dict[str, Any]) -> None:
    numbers: dict[str, float | int] = {}
    bools: dict[str, bool] = {}
    for key, value in attributes.items():
        kind = value.__class__
        if kind is str:
            continue
        if kind is bool:
            bools[key] = value
        # An int is one of 64 bits (a longer one was kept as its decimal text): stored in a Float64 map,
        # rounded beyond 2**53 there, while `attributes` keeps its exact text and responses rebuild from it.
        elif kind is int or (kind is float and math.isfinite(value)):
            numbers[key] = value
    if not (numbers or bools):
        return
    # Before `received_at`, which stays the row's last key (payload_ids, live_payload rely on it).
    received_at = row.pop("received_at", None)
    if numbers:
        row[NUMBER_MAP] = numbers
    if bools:
        row[BOOL_MAP] = bools
    if received_at is not None:
        row["received_at"] = received_at


def add_typed_maps(rows: list[Any]) -> None:
    """Give each row (a dict; anything else is left alone) whose `attributes` hold numbers or booleans its
    NUMBER_MAP / BOOL_MAP, placed just before `received_at`. A row of string attributes costs one pass over
    its values; rows without attributes cost a dict lookup."""
    for row in rows:
        attributes = row.get("attributes") if row.__class__ is dict else None
        if attributes and attributes.__class__ is dict:
            _typed_maps(row, attributes)


def make_rows(
    entries: list[Entry], *, batch_id: str, received_at: str, indexes: list[int] | None = None
) -> list[dict[str, Any]]:
    """Rows for the `logs` table: `id` first (given, or `derived_id(batch_id, i)` with `i` the entry's
    position in the request, from `indexes` when some entries were rejected), `timestamp` defaulting to
    `received_at`, and empty optional fields (null, "", 0, {}) dropped - they are the columns' defaults
    anyway; rows whose attributes hold numbers/booleans get their typed maps (`add_typed_maps`). So a row
    minus its typed maps and `received_at` is exactly the public entry shape (see `live_payload`)."""
    rows = _make_rows(entries, batch_id=batch_id, received_at=received_at, indexes=indexes)
    add_typed_maps(rows)
    return rows


def _make_rows(
    entries: list[Entry], *, batch_id: str, received_at: str, indexes: list[int] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for position, entry in enumerate(entries):
        # Keys given again keep their first position: id and timestamp stay first.
        row: dict[str, Any] = {"id": None, "timestamp": None, **entry}
        if not row["id"]:
            row["id"] = derived_id(batch_id, position if indexes is None else indexes[position])
        if not row["timestamp"]:
            row["timestamp"] = received_at
        if not all(row.values()):  # rare: one C-level pass spares the per-key loop for full entries
            for key in [
                k for k, v in entry.items() if not v and k not in _REQUIRED and k not in ("id", "timestamp")
            ]:
                del row[key]
        row["received_at"] = received_at
        rows.append(row)
    return rows


def rows_from_json(
    array: bytes,
    *,
    batch_id: str,
    received_at: str,
    window: TimeWindow | None = None,
    first_index: int = 0,
) -> list[dict[str, Any]]:
    """`make_rows(ENTRY_LIST.validate_json(array), ...)` in one pass: the same rows (typed maps included), or
    the ValidationError of the first invalid entry (ENTRY_LIST_FIRST_ERROR; use ENTRY for per-entry errors).
    `window`: the accepted timestamps (default: the column range only); `first_index`: the request position
    of the array's first entry (for ids). `fast_rows.rows_from_json` gives the same rows faster for bodies
    it can decide."""
    context: dict[str, Any] = {"window": window}
    rows: list[dict[str, Any]] = ENTRY_LIST_FIRST_ERROR.validate_json(  # type: ignore[assignment]
        array, context=context
    )
    finish_rows(rows, batch_id=batch_id, received_at=received_at, first_index=first_index)
    if context.get(_TYPED_SEEN):  # only a body with a number/boolean attribute value pays this pass
        add_typed_maps(rows)
    return rows


def finish_rows(rows: list[dict[str, Any]], *, batch_id: str, received_at: str, first_index: int = 0) -> None:
    """Turn validated entries (dicts in row key order; None or absent for an optional field not given) into
    rows in place, as `make_rows` does but without its typed maps (the caller adds them when some attribute
    is a number or a boolean). Entries that give both id and timestamp (the SDK's) are finished in place;
    `first_index`: the request position of `rows[0]` (for derived ids)."""
    for position, row in enumerate(rows):
        if "id" not in row or "timestamp" not in row:  # the row needs them as its first keys
            entry: Entry = row  # type: ignore[assignment]
            rows[position] = _make_rows(
                [entry], batch_id=batch_id, received_at=received_at, indexes=[first_index + position]
            )[0]
            continue
        if not row["id"]:
            row["id"] = derived_id(batch_id, first_index + position)
        if not row["timestamp"]:
            row["timestamp"] = received_at
        if not all(row.values()):
            for key in [k for k, v in row.items() if not v and k not in _REQUIRED]:
                del row[key]
        row["received_at"] = received_at
