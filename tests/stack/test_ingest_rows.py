"""Row structs (fast_rows.Row): a valid body's rows are finished in place and written by msgspec, and every
consumer of rows gets what the dict rows of the pydantic path give - the same payload bytes, the same
`row[column]` values, the same publish parts - while anything a struct cannot hold exactly stays a dict."""

from __future__ import annotations

import json
from typing import Any

import pytest
from oglogstream import wire
from oglogstream.stack.ingestion import batch_decode, fast_rows, publish, row_codec, schema
from pydantic import ValidationError

RECEIVED = "2026-11-27T10:00:00.000000Z"
TS = "2026-11-27T09:59:59.123456Z"


def entry(**fields: Any) -> dict[str, Any]:
    return {"level": "info", "message": "m", "service": "svc", **fields}


def body_of(*entries: dict[str, Any]) -> bytes:
    return json.dumps(list(entries)).encode()


def both(body: bytes, first_index: int = 0) -> tuple[list[Any], list[dict[str, Any]]]:
    kwargs = {"batch_id": "b", "received_at": RECEIVED, "first_index": first_index}
    return fast_rows.rows_from_json(body, **kwargs), schema.rows_from_json(body, **kwargs)  # type: ignore[arg-type]


def assert_same_rows(fast: list[Any], plain: list[dict[str, Any]]) -> None:
    assert [list(r.items()) for r in row_codec.row_dicts(fast)] == [list(r.items()) for r in plain]
    assert row_codec.dump_rows(fast) == row_codec.dump_rows(plain) == row_codec.dumps(plain)


#: Bodies the struct path finishes: every step of schema.finish_rows and add_typed_maps has one.
STRUCT_BODIES = {
    "sdk line": [entry(id="a", timestamp=TS, pid=7, attributes={"method": "GET", "status": 200})],
    "derived id and timestamp": [entry(), entry(id="x"), entry(timestamp=TS)],
    "empty optional values": [
        entry(id="a", host="", pid=0, attributes={}, logger="", exception=""),
        entry(id="b", thread="", trace_id=None, attributes={"k": ""}),
    ],
    "null optional values": [entry(id=None, timestamp=None, pid=None, attributes=None, span_id=None)],
    "booleans and ints": [
        entry(attributes={"ok": True, "n": -(2**63), "s": "t", "off": False}),
        entry(attributes={"s": "only strings"}),
        entry(attributes={"big": 2**63 - 1}),
    ],
    "an attribute named like a column": [entry(attributes={"received_at": RECEIVED, "attributes_number": 1})],
}


@pytest.mark.parametrize("entries", list(STRUCT_BODIES.values()), ids=list(STRUCT_BODIES))
@pytest.mark.parametrize("first_index", [0, 5])
def test_valid_bodies_become_structs_with_the_pydantic_rows(
    entries: list[dict[str, Any]], first_index: int
) -> None:
    """Each finishing step gives the pydantic path's row: same keys in the same order, same bytes."""
    fast, plain = both(body_of(*entries), first_index)
    assert {type(row) for row in fast} == {fast_rows.Row}
    assert_same_rows(fast, plain)
    for row, expected in zip(fast, plain, strict=True):
        for column in ("id", "timestamp", "level", "message", "service", "received_at"):
            assert row[column] == expected[column]


@pytest.mark.parametrize("value", [0.5, 1e308, -2.5e-300, 3.0])
def test_float_attribute_values_keep_dict_rows_and_pydantic_float_text(value: float) -> None:
    """msgspec writes some floats differently (1e+308): a body with one keeps dict rows, pydantic-written."""
    fast, plain = both(body_of(entry(id="a", attributes={"f": value, "n": 1}), entry(id="b")))
    assert {type(row) for row in fast} == {dict}
    assert_same_rows(fast, plain)
    assert row_codec.dumps(value) in row_codec.dump_rows(fast)


def test_a_list_of_struct_and_float_dict_rows_is_written_as_its_dicts() -> None:
    """NDJSON slices decided apart can mix both kinds in one list: the payload is still dumps' bytes."""
    structs, _ = both(body_of(entry(id="a", attributes={"n": 1}), entry(id="b")))
    dicts, _ = both(body_of(entry(id="c", attributes={"f": 1e308})))
    for rows in (structs + dicts, dicts + structs):
        assert row_codec.dump_rows(rows) == row_codec.dumps(row_codec.row_dicts(rows))
    assert row_codec.dump_rows(structs + structs) == row_codec.dumps(row_codec.row_dicts(structs + structs))


@pytest.mark.parametrize(
    "extra",
    [
        {"received_at": RECEIVED},
        {"received_at": None},
        {"attributes_number": {"n": 1}},
        {"attributes_bool": None},
        {"attributes_bool": {}},
    ],
    ids=["received_at", "received_at-null", "number-map", "bool-map-null", "bool-map-empty"],
)
def test_row_columns_given_by_a_client_are_refused_as_unknown_fields(extra: dict[str, Any]) -> None:
    """The struct has the columns ingestion adds, but a body giving one is declined: pydantic's 'extra'."""
    body = body_of(entry(id="a"), entry(**extra))
    assert fast_rows.decide(body) is None
    with pytest.raises(ValidationError) as fast:
        fast_rows.rows_from_json(body, batch_id="b", received_at=RECEIVED)
    with pytest.raises(ValidationError) as plain:
        schema.rows_from_json(body, batch_id="b", received_at=RECEIVED)
    assert schema.validation_details(fast.value) == schema.validation_details(plain.value)
    assert schema.validation_details(fast.value, skip_loc=1) == [
        {"field": next(iter(extra)), "reason": "Extra inputs are not permitted"}
    ]


def test_publish_parts_of_struct_rows_are_those_of_dict_rows() -> None:
    """split_rows cuts and writes struct rows exactly as the same rows as dicts (ids, stamps, bytes)."""
    lines = [
        json.dumps(entry(id=f"i{i}", timestamp=TS, message="z" * (i % 500), attributes={"n": i})).encode()
        for i in range(1500)
    ]
    rows = batch_decode.ndjson_rows(lines, batch_id="b", received_at=RECEIVED)
    assert rows is not None and {type(row) for row in rows} == {fast_rows.Row}
    dicts = row_codec.row_dicts(rows)
    limit = 64 * 1024
    parts, dict_parts = publish.split_rows(rows, limit), publish.split_rows(dicts, limit)
    assert len(parts) > 1
    assert [payload for _, payload in parts] == [payload for _, payload in dict_parts]
    ids = [[row["id"] for row in part] for part, _ in parts]
    assert ids == [[row["id"] for row in part] for part, _ in dict_parts]
    assert [row["timestamp"] for part, _ in parts for row in part] == [TS] * len(lines)


def test_duplicate_ids_among_struct_rows_are_rejected_by_request_index() -> None:
    """The request's id check reads struct rows as it reads dicts."""
    body = b"\n".join(json.dumps(entry(id=i)).encode() for i in ("a", "b", "a"))
    decoded = batch_decode.decode(body, ndjson=True, batch_id="x", received_at=RECEIVED)
    assert [row["id"] for row in decoded.rows] == ["a", "b"]
    assert decoded.rejected == [{"index": 2, "error": f"{batch_decode.DUPLICATE_ID_ERROR} (a)"}]


def test_row_fields_are_the_columns_in_order() -> None:
    """A Row holds the entry's fields, then the typed maps, then received_at: the order rows are written."""
    assert fast_rows.Row.__struct_fields__ == (
        *(field.name for field in wire.FIELDS),
        schema.NUMBER_MAP,
        schema.BOOL_MAP,
        wire.RECEIVED_AT.name,
    )
