"""`POST /logs` bodies -> rows: NDJSON or a JSON array of entries, validated against the wire schema.

Pure CPU work, no I/O (ingest.py runs it, on a worker thread for large bodies). The work a body may cause is
bounded BEFORE it is parsed: at most MAX_BATCH_VALUES JSON values (`check_size`, a comma count) and at most
MAX_BATCH_ENTRIES entries (the list adapters' max_length, checked by pydantic before any entry is validated),
so a small gzipped body of millions of `{}` is refused with 413 in milliseconds instead of being validated
into millions of errors.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import re
from collections.abc import Iterable
from typing import Any

from oglogstream import wire
from pydantic import ValidationError

from ..http.boundary import Problem, too_large
from . import fast_rows, row_codec, schema

__all__ = [
    "DUPLICATE_ID_ERROR",
    "MAX_BATCH_VALUES",
    "MAX_NDJSON_LINES",
    "MAX_REJECTED_ERRORS",
    "Decoded",
    "answer_rejected",
    "array_rows",
    "check_size",
    "decode",
    "ndjson_lines",
    "ndjson_rows",
    "separators",
    "slices",
]

#: JSON values a batch may hold: MAX_BATCH_ENTRIES full entries (every field and MAX_ATTRIBUTES attributes).
MAX_BATCH_VALUES = wire.MAX_BATCH_ENTRIES * (len(wire.FIELDS) + wire.MAX_ATTRIBUTES)
#: Lines an NDJSON body may have, blank ones included: every entry plus as many blank lines (a blank line
#: between entries, CRLF line ends and a trailing newline all fit).
MAX_NDJSON_LINES = 2 * wire.MAX_BATCH_ENTRIES
#: Bodies with at most this many commas are parsed without the pre-scan: the list adapters' max_length
#: stops pydantic before any per-entry work, and parsing this many values takes a few tens of ms.
_SCAN_ABOVE_COMMAS = wire.MAX_BATCH_ENTRIES * 16
#: NDJSON lines validated per pydantic call: about this many bytes (some 10-30 ms of work).
_SLICE_BYTES = 256 * 1024

#: Refused entries an answer lists (index and error text), a 400 and a 202 alike; `rejected_count` counts
#: them all (`answer_rejected`). The text of an error costs several times its validation, and 10,000 of them
#: made a 1.5 MB answer to a 1.5 KB gzip body; a 202 listing every later index (~15 B each) was still ~1.5 MB
#: for a 100,000-line body.
MAX_REJECTED_ERRORS = 100
#: One refused entry's error text at most (characters; its first failures, then how many more): an entry
#: with 64 bad attributes under 128-character keys made each listed error ~12 KB, and a 1.2 MB 400.
MAX_ERROR_CHARS = 240
#: Failures named in one entry's error before "(and N more)".
MAX_ERROR_FAILURES = 3
#: A line of the joined array (see _ndjson_rows) whose first token is not `{`.
_NOT_AN_OBJECT_LINE = re.compile(rb"\n[ \t\r\x0b\x0c]*[^ \t\r\x0b\x0c{]")


@dataclasses.dataclass
class Decoded:
    # Row dicts, or fast_rows.Row structs for the valid bodies msgspec decides: `row[column]` reads both,
    # row_codec.dump_rows writes both as the same bytes, row_codec.row_dicts turns both into dicts.
    rows: list[Any]
    # Every refusal [{"index": i, "error": "field: reason; ..."}], by index; past MAX_REJECTED_ERRORS
    # {"index": i} alone (no text written: answers list only the first ones)
    rejected: list[dict[str, Any]]
    total: int  # entries in the body, valid or not


def check_size(body: bytes) -> None:
    """413 when the body holds more than MAX_BATCH_VALUES JSON values, found without parsing: commas
    outside strings separate values. Bodies with few commas skip the scan; the entry count is bounded by
    the list adapters' max_length (see schema)."""
    if body.count(b",") > _SCAN_ABOVE_COMMAS and separators(body) + 1 > MAX_BATCH_VALUES:
        raise too_large(MAX_BATCH_VALUES, "JSON values in one batch")


def separators(body: bytes) -> int:
    """The commas outside the JSON strings of `body` (for valid JSON: its values minus one, when no
    container is empty). C-speed passes only: escaped backslashes go, then escaped quotes; every remaining
    `"` opens or closes a string, so the even pieces between quotes are what lies outside strings."""
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    commas, inside = 0, False
    for start in range(0, len(plain), _SLICE_BYTES):  # in slices: each C call holds the GIL only briefly
        pieces = plain[start : start + _SLICE_BYTES].split(b'"')
        commas += b"".join(pieces[1 if inside else 0 :: 2]).count(b",")
        inside ^= len(pieces) % 2 == 0  # an odd number of quotes in this slice flips the state
    return commas


def _too_many(exc: ValidationError) -> bool:
    first = exc.errors(include_url=False, include_context=False, include_input=False)[:1]
    return bool(first) and first[0]["type"] == "too_long" and not first[0]["loc"]


def decode(
    body: bytes, *, ndjson: bool, batch_id: str, received_at: str, window: schema.TimeWindow | None = None
) -> Decoded:
    """The rows of the valid entries and the rejections of the others (Problem for a body that cannot be
    read as a batch at all). The common case first: every entry valid, validated and made into rows in one
    pydantic call; otherwise the entries are validated one by one, for per-index errors."""
    check_size(body)
    context = {"window": window}
    if ndjson:
        lines = ndjson_lines(body)
        rows = ndjson_rows(lines, batch_id=batch_id, received_at=received_at, window=window)
        if rows is not None:
            return _unique_ids(Decoded(rows, [], len(rows)), None)
        entries, indexes, rejected, total = _validate_lines(lines, context)
    else:
        rows = array_rows(body, batch_id=batch_id, received_at=received_at, window=window)
        if rows is not None:
            return _unique_ids(Decoded(rows, [], len(rows)), None)
        entries, indexes, rejected, total = _validate_array(body, context)
    if not entries:
        return Decoded([], rejected, total)
    rows = schema.make_rows(
        entries, batch_id=batch_id, received_at=received_at, indexes=indexes if rejected else None
    )
    return _unique_ids(Decoded(rows, rejected, total), indexes)


#: The rejection of an entry whose id an earlier entry of the same request already has.
DUPLICATE_ID_ERROR = "id: duplicate id in this request"


def _unique_ids(decoded: Decoded, indexes: list[int] | None) -> Decoded:
    """`decoded` with every entry whose id repeats an earlier entry's moved to `rejected` (the processor
    keeps one row per id, so storing both would silently keep one). `indexes`: request positions of the
    rows (None: row i is entry i). One set build when all ids are distinct, the common case."""
    rows = decoded.rows
    if len({row["id"] for row in rows}) == len(rows):
        return decoded
    seen: set[str] = set()
    kept: list[Any] = []
    rejected = list(decoded.rejected)
    for position, row in enumerate(rows):
        if row["id"] in seen:
            index = position if indexes is None else indexes[position]
            rejected.append({"index": index, "error": f"{DUPLICATE_ID_ERROR} ({row['id']})"})
        else:
            seen.add(row["id"])
            kept.append(row)
    rejected.sort(key=lambda item: int(item["index"]))
    return Decoded(kept, rejected, decoded.total)


def ndjson_lines(body: bytes) -> list[bytes]:
    """The non-blank lines of an NDJSON body; 413 past MAX_BATCH_ENTRIES entries, or past MAX_NDJSON_LINES
    lines blank ones included (counted at C speed before any list is built: 32 MiB of newlines would
    otherwise make 32 million line objects)."""
    if body.count(b"\n") >= MAX_NDJSON_LINES:
        raise too_large(MAX_NDJSON_LINES, "NDJSON lines (blank ones included)")
    lines = list(filter(bytes.strip, body.split(b"\n")))  # C-level: no Python per line
    if len(lines) > wire.MAX_BATCH_ENTRIES:
        raise too_large(wire.MAX_BATCH_ENTRIES, "entry count")
    return lines


def ndjson_rows(
    lines: list[bytes], *, batch_id: str, received_at: str, window: schema.TimeWindow | None = None
) -> list[Any] | None:
    """The rows of all lines, validated in ONE call per slice (`fast_rows.rows_from_json`: msgspec, else
    pydantic; the per-call overhead is a sixth of pydantic's work), or None when any line is invalid (the
    caller then validates line by line, for per-index errors).

    The lines are joined as a JSON array, each on its own line. That yields exactly one entry per line, as if
    each were validated alone: a JSON string cannot hold a raw newline, entries hold no arrays, and every line
    starts with `{` - so each separating comma is the array's own, and the count check rules out a line
    holding two entries."""
    if not lines:
        return None
    rows: list[Any] = []
    # Slices of about _SLICE_BYTES: each call holds the GIL only that long, so on a worker thread the event
    # loop gets its turns in between.
    for start, end in slices(lines, _SLICE_BYTES):
        joined = b"[\n" + b",\n".join(lines[start:end]) + b"]"
        if _NOT_AN_OBJECT_LINE.search(joined):
            return None
        try:
            part = fast_rows.rows_from_json(
                joined, batch_id=batch_id, received_at=received_at, window=window, first_index=start
            )
        except ValidationError:
            return None
        if len(part) != end - start:
            return None
        rows += part
    return rows


def slices(lines: list[bytes], size: int) -> list[tuple[int, int]]:
    """`[(start, end), ...]` covering `lines` in order: each slice the most lines (at least one) whose lengths
    add up to at most `size` bytes. Found by bisecting the running total: no Python per line."""
    ends = list(itertools.accumulate(map(len, lines)))
    bounds = []
    start = 0
    while start < len(lines):
        taken = ends[start - 1] if start else 0
        end = max(start + 1, bisect.bisect_right(ends, taken + size, lo=start))
        bounds.append((start, end))
        start = end
    return bounds


def array_rows(
    body: bytes, *, batch_id: str, received_at: str, window: schema.TimeWindow | None = None
) -> list[Any] | None:
    """The rows of a JSON array of entries, or None if it is empty or not all valid (see _validate_array)."""
    try:
        rows = fast_rows.rows_from_json(body, batch_id=batch_id, received_at=received_at, window=window)
    except ValidationError as exc:
        if _too_many(exc):
            raise too_large(wire.MAX_BATCH_ENTRIES, "entry count") from None
        return None
    return rows or None


_Split = tuple[list[schema.Entry], list[int], list[dict[str, Any]], int]


def _validate_each(documents: Iterable[bytes], context: dict[str, Any]) -> _Split:
    """Each JSON document validated alone. The error path costs about what validation does: the text of an
    error (Python work several times pydantic's) is written only for the first MAX_REJECTED_ERRORS refused
    entries, the only ones an answer shows it for (`answer_rejected`), and a document repeating an earlier
    refused one is refused without validating it again (the same bytes, the same verdict)."""
    entries: list[schema.Entry] = []
    indexes: list[int] = []
    rejected: list[dict[str, Any]] = []
    refused: dict[bytes, str | None] = {}  # document -> its error text (None: not written)
    total = 0
    for index, document in enumerate(documents):
        total += 1
        if document in refused:
            error = refused[document]
        else:
            try:
                entries.append(schema.ENTRY.validate_json(document, context=context))
            except ValidationError as exc:
                error = _summary(exc) if len(rejected) < MAX_REJECTED_ERRORS else None
                refused[document] = error
            else:
                indexes.append(index)
                continue
        # error is None only past the first MAX_REJECTED_ERRORS refusals (a repeat of a document refused
        # earlier has its text, if it was written).
        rejected.append({"index": index} if error is None else {"index": index, "error": error})
    return entries, indexes, rejected, total


def _validate_lines(lines: list[bytes], context: dict[str, Any]) -> _Split:
    return _validate_each(lines, context)


def _validate_array(body: bytes, context: dict[str, Any]) -> _Split:
    try:
        entries = schema.ENTRY_LIST_FIRST_ERROR.validate_json(body, context=context)
    except ValidationError:
        pass
    else:
        return entries, list(range(len(entries))), [], len(entries)
    try:
        items = schema.ANY_LIST.validate_json(body)
    except ValidationError as exc:
        if _too_many(exc):
            raise too_large(wire.MAX_BATCH_ENTRIES, "entry count") from None
        raise Problem(
            400,
            "validation failed",
            "body",
            f"expected a JSON array of entries: {schema.validation_details(exc)[0]['reason']}",
        ) from None
    # Re-validated from JSON so both content types apply exactly the same (JSON-mode) rules.
    return _validate_each(map(row_codec.dumps, items), context)


def answer_rejected(rejected: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer's `rejected` part, bounded the same way for a 400 (no entry valid) and a 202 (some were):
    `{"rejected": [{"index", "error"}, ...], "rejected_count": n}`, the list being the first
    MAX_REJECTED_ERRORS refusals by index and n every refused entry. Clients count `rejected_count`; the list
    explains the first ones. So an answer holds at most ~25 KB of errors (MAX_ERROR_CHARS each), whatever
    the body (a 202 that listed every later index was ~15 bytes per refused entry)."""
    return {"rejected": rejected[:MAX_REJECTED_ERRORS], "rejected_count": len(rejected)}


def _summary(exc: ValidationError) -> str:
    """One entry's error: its first MAX_ERROR_FAILURES failures, then how many more, clipped to
    MAX_ERROR_CHARS."""
    details = schema.validation_details(exc)
    text = "; ".join(f"{d['field']}: {d['reason']}" for d in details[:MAX_ERROR_FAILURES])
    if len(details) > MAX_ERROR_FAILURES:
        text += f" (and {len(details) - MAX_ERROR_FAILURES} more)"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
