"""Typed attribute maps are made where the types are known (ingestion), messages say so in a row-format
header, and processing upgrades only messages published without it (the release before)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.broker import messages
from oglogstream.stack.config import DEAD_STREAM_NAME, STREAM_NAME, StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.resources import BROKER
from oglogstream.stack.ingestion import row_codec, schema
from oglogstream.stack.processing import deadletter

from .helpers import all_roles, query_rows, running_app, wait_for

NOW = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
#: Attribute values of every kind: strings (also number look-alikes), numbers, booleans, an integer beyond
#: 64 bits (kept as its decimal text: a string) and keys that look like row keys.
MIXED = {
    "s": 'v":5',
    "t": "true",
    "n": -2.5e3,
    "i": 200,
    "b": False,
    "big": 2**70,
    "pid": 5,
    "attributes_number": 1,
}
TYPED_NUMBERS = {"n": -2500.0, "i": 200, "pid": 5, "attributes_number": 1}


def entry(i: int, attributes: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"e-{i}",
        "timestamp": NOW,
        "level": "info",
        "message": f"m{i}",
        "service": "svc",
        "pid": 4242,
        **fields,
    }
    if attributes is not None:
        out["attributes"] = attributes
    return out


# -- ingestion makes the maps ---------------------------------------------------------------------------


def test_rows_carry_typed_maps_of_number_and_bool_values_only() -> None:
    """Numbers (ints, finite floats) and booleans get typed twins; strings, look-alikes, `pid` and integers
    beyond 64 bits do not; the maps sit just before `received_at`, which stays last."""
    body = json.dumps([entry(0, MIXED), entry(1, {"s": "only strings"}), entry(2)]).encode()
    rows = schema.rows_from_json(body, batch_id="b", received_at=NOW)
    assert rows[0][schema.NUMBER_MAP] == TYPED_NUMBERS
    assert rows[0][schema.BOOL_MAP] == {"b": False}
    assert list(rows[0])[-3:] == [schema.NUMBER_MAP, schema.BOOL_MAP, "received_at"]
    assert rows[0]["attributes"]["big"] == str(2**70)
    assert schema.NUMBER_MAP not in rows[1] and schema.BOOL_MAP not in rows[1]
    assert schema.NUMBER_MAP not in rows[2]
    # Every row builder makes the same rows (POST /log and OTLP go through make_rows).
    entries = [schema.ENTRY.validate_json(json.dumps(entry(k, a))) for k, a in ((0, MIXED), (1, None))]
    made = schema.make_rows(entries, batch_id="b", received_at=NOW)
    assert made[0] == rows[0] and list(made[0]) == list(rows[0])
    assert schema.NUMBER_MAP not in made[1]


def test_live_payload_is_the_public_shape_without_the_maps() -> None:
    """The live tail gets public entries: the typed maps are removed, whatever their keys contain."""
    odd = {'a}\\"': 1, 'k,}"': True, "x": "y"}
    body = json.dumps([entry(0, odd), entry(1, MIXED), entry(2, {"s": "x"})]).encode()
    rows = schema.rows_from_json(body, batch_id="b", received_at=NOW)
    payload = row_codec.dump_rows(rows)
    assert payload == row_codec.dumps(rows)
    live = [json.loads(line) for line in row_codec.live_payload(payload, NOW).splitlines()]
    assert live == [row_codec.public_entry(row) for row in rows]
    assert row_codec.live_payload(payload) == row_codec.live_payload(payload, NOW)


def test_string_only_batches_skip_the_typed_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose attributes are all strings never runs the per-row typed pass (it costs nothing)."""

    def fail(rows: Any) -> None:
        raise AssertionError("typed pass ran for a string-only batch")

    monkeypatch.setattr(schema, "add_typed_maps", fail)
    body = json.dumps([entry(i, {"s": "1", "t": "true"}) for i in range(50)]).encode()
    rows = schema.rows_from_json(body, batch_id="b", received_at=NOW)
    assert all(schema.NUMBER_MAP not in row for row in rows)


# -- messages of the release before ---------------------------------------------------------------------


def _legacy(rows: list[dict[str, Any]]) -> bytes:
    """The payload the release before wrote for these rows: no typed maps."""
    maps = (schema.NUMBER_MAP, schema.BOOL_MAP)
    return row_codec.dumps([{k: v for k, v in row.items() if k not in maps} for row in rows])


def test_upgrade_gives_a_legacy_payload_the_bytes_ingestion_writes_now() -> None:
    """An old payload upgraded is byte for byte what ingestion publishes today, including an attribute named
    `pid` next to a typed value (which the old scan mistook for the row's pid) and one `pid` number alone."""
    cases = [
        [entry(0, MIXED), entry(1, {"s": "x"})],
        [entry(0, {"pid": "a string", "n": 5})],
        [entry(0, {"pid": 7}, pid=None)],
        [entry(0, {"b": True}, message='"attributes":{"x":1}')],
    ]
    for entries in cases:
        rows = schema.rows_from_json(json.dumps(entries).encode(), batch_id="b", received_at=NOW)
        assert messages.upgrade_payload(_legacy(rows)) == row_codec.dump_rows(rows), entries


def test_upgrade_leaves_string_only_and_non_json_payloads_as_they_are() -> None:
    """No typed value (look-alikes in strings and pids included): the same object back, nothing parsed."""
    rows = schema.rows_from_json(
        json.dumps([entry(0, {"s": "5", "t": "true"}, message='"n":5'), entry(1)]).encode(),
        batch_id="b",
        received_at=NOW,
    )
    plain = _legacy(rows)
    assert messages.upgrade_payload(plain) is plain
    broken = b'[{"id":"x","attributes":{"n":5}'
    assert messages.upgrade_payload(broken) is broken


# -- end to end ---------------------------------------------------------------------------------------

_GZIP_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


async def test_old_and_new_messages_both_store_typed_values(nats_server: Any, chdb_dsn: str) -> None:
    """A message published the old way (no row-format header) and one through ingestion both end up with
    their typed maps in storage; string-only rows get none."""
    config = StackConfig(
        roles=("ingest", "process"), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn, flush_timeout=0.1
    )
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        body = gzip.compress(json.dumps([entry(2, MIXED), entry(3, {"s": "x"})]).encode())
        async with session.post(f"{url}/logs", data=body, headers=_GZIP_JSON) as resp:
            assert resp.status == 202, await resp.text()
        old_rows = schema.rows_from_json(
            json.dumps([entry(0, MIXED), entry(1, {"s": "x"})]).encode(), batch_id="old", received_at=NOW
        )
        old_headers = {
            messages.MSG_ID: "old-release",
            messages.ROWS: "2",
            messages.TS_MIN: NOW,
            messages.TS_MAX: NOW,
        }
        await app[BROKER].publish(messages.STREAM_SUBJECT, _legacy(old_rows), old_headers)

        async def stored() -> list[dict[str, Any]]:
            rows = await query_rows(
                app, "SELECT id, attributes_number, attributes_bool FROM logs ORDER BY id"
            )
            return rows if len(rows) == 4 else []

        rows = await wait_for(stored)
    assert [r["id"] for r in rows] == ["e-0", "e-1", "e-2", "e-3"]
    for row in (rows[0], rows[2]):  # old way, new way
        assert row["attributes_number"] == {k: float(v) for k, v in TYPED_NUMBERS.items()}
        assert row["attributes_bool"] == {"b": False}
    for row in (rows[1], rows[3]):
        assert row["attributes_number"] == {} and row["attributes_bool"] == {}


async def test_the_row_format_header_travels_through_dead_letter_and_replay(nats_server: Any) -> None:
    """Ingestion sets the header; a dead letter keeps it and so does its replay into the logs stream."""
    config = StackConfig(roles=("ingest",), nats_url=nats_server.url)
    app = create_app(config)
    async with running_app(config, app=app) as url, aiohttp.ClientSession() as session:
        body = gzip.compress(json.dumps([entry(0, MIXED)]).encode())
        async with session.post(f"{url}/logs", data=body, headers=_GZIP_JSON) as resp:
            assert resp.status == 202, await resp.text()
        broker = app[BROKER]
        first = await broker.js.get_msg(STREAM_NAME, seq=1)
        assert first.headers is not None and messages.has_current_format(first.headers)
        await broker.js.delete_msg(STREAM_NAME, 1)
        await deadletter.publish_dead_letter(
            broker, seq=1, headers=first.headers, payload=first.data or b"", rows=1, reason="r", error="e"
        )
        [dead], _ = await deadletter.list_dead_letters(broker)
        dead_msg = await broker.js.get_msg(DEAD_STREAM_NAME, seq=dead["seq"])
        assert dead_msg.headers is not None and messages.has_current_format(dead_msg.headers)
        replayed, failed = await deadletter.replay_dead_letters(broker, [dead["seq"]])
        assert replayed == [dead["seq"]] and failed == []
        again = await broker.js.get_msg(STREAM_NAME, seq=2)
        assert again.headers is not None and messages.has_current_format(again.headers)
        assert again.headers[messages.MSG_ID] == f"replay-{dead['seq']}"
        assert messages.DEAD_REASON not in again.headers
        assert again.data == first.data


async def test_number_forms_documented_in_api_md(nats_server: Any, chdb_dsn: str) -> None:
    """`1e20` is stored and answered as `1e+20` (found with `attr.e=1e%2B20`), an integer beyond 64 bits comes
    back as its digits in a string, and neither the string nor `1e400` ("Infinity") is a number for
    comparisons."""
    attributes = {"e": 1e20, "big": 2**70, "huge": "HUGE", "n": 1}
    raw = json.dumps([entry(0, attributes)]).replace('"HUGE"', "1e400").replace("1e+20", "1e20").encode()
    async with all_roles(nats_server.url, chdb_dsn) as (url, session):
        async with session.post(f"{url}/logs", data=raw, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 202, await r.text()

        async def found() -> Any:
            async with session.get(f"{url}/api/logs?attr.e=1e%2B20") as resp:
                assert resp.status == 200
                return (await resp.read()) if b"e-0" in await resp.read() else None

        text = await wait_for(found)
        for number_filter in ("attr.big%3E0", "attr.huge%3E0"):
            async with session.get(f"{url}/api/logs?{number_filter}") as resp:
                assert resp.status == 200 and b"e-0" not in await resp.read(), number_filter
        async with session.get(f"{url}/api/logs?attr.n%3E0") as resp:  # a real number is comparable
            assert b"e-0" in await resp.read()
    assert b'"e":1e+20' in text
    [log] = json.loads(text)
    assert log["attributes"] == {"e": 1e20, "big": str(2**70), "huge": "Infinity", "n": 1}
