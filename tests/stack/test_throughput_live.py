"""Live-tail payloads (#14): ingestion publishes its row payloads as they are and the live tail makes them
public entries (`row_codec.live_entries`) - the same entries as before, whatever the rows hold."""

from __future__ import annotations

import json
from typing import Any

from oglogstream.stack.ingestion import row_codec, schema

FIRST = "2026-11-27T10:00:00.000000Z"
SECOND = "2026-11-27T10:00:01.000000Z"
#: Values that look like a row's end or a received_at key inside strings and attribute keys.
TRICKY: list[dict[str, Any]] = [
    {"message": 'x,"received_at":"2026-11-27T10:00:00.000000Z"},{"id":"y', "attributes": {"n": 1}},
    {"message": "m", "attributes": {"received_at": FIRST, 'k,}"': True, "f": 1.5}},
    {"message": "é \u2028 \\", "attributes": {"s": "x"}},
    {"message": "plain"},
]


def _rows(received_at: str, prefix: str) -> list[dict[str, Any]]:
    entries = [
        schema.ENTRY.validate_json(json.dumps({"id": f"{prefix}{i}", "level": "info", "service": "s", **e}))
        for i, e in enumerate(TRICKY)
    ]
    return schema.make_rows(entries, batch_id=prefix, received_at=received_at)


def _public(payload: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in row_codec.live_entries(payload).split(b"\n")]


def test_rows_sharing_received_at_become_their_public_entries() -> None:
    """One request's row payload (one received_at) gives each row's public entry, as the caller-hinted
    path does."""
    rows = _rows(FIRST, "a")
    payload = row_codec.dump_rows(rows)
    assert _public(payload) == [row_codec.public_entry(row) for row in rows]
    assert row_codec.live_entries(payload) == row_codec.live_payload(payload, FIRST)


def test_rows_with_different_received_at_take_the_general_path() -> None:
    """Rows of two requests in one payload (received_at differs) still lose every received_at."""
    rows = _rows(FIRST, "a") + _rows(SECOND, "b")
    payload = row_codec.dump_rows(rows)
    assert _public(payload) == [row_codec.public_entry(row) for row in rows]


def test_single_row_payloads_and_ndjson_from_an_older_ingestion() -> None:
    """A one-row payload is converted; NDJSON (what the release before published) passes unchanged."""
    for row in _rows(FIRST, "c"):
        payload = row_codec.dump_rows([row])
        assert _public(payload) == [row_codec.public_entry(row)]
    ndjson = b'{"id":"x","message":"m"}\n{"id":"y","message":"n"}'
    assert row_codec.live_entries(ndjson) == ndjson
