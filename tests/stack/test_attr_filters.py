"""Attribute search: typed attribute values survive storage, `attr.*` / logger / host / trace_id filters
select the right entries on every query route and the live tail, bad filters are 400s naming the
parameter, and the SQL and in-memory forms of every filter agree on random entries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pydantic_core
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from oglogstream.stack.broker import messages
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.resources import STORAGE
from oglogstream.stack.ingestion import schema
from oglogstream.stack.query.filters import MAX_ATTR_FILTERS, Filters, ParamError
from oglogstream.stack.storage import inserts
from oglogstream.stack.storage.migrations import LOGS_TABLE
from oglogstream.stack.storage.storage import Storage

from .helpers import all_roles, wait_for
from .query_helpers import running, utc

pytestmark = pytest.mark.timeout(90)

ENTRIES: list[dict[str, Any]] = [
    {
        "id": "a1",
        "level": "info",
        "service": "api",
        "logger": "web",
        "host": "h1",
        "trace_id": "t1",
        "attributes": {"status": 500, "duration_ms": 99.5, "ok": False, "user": "ann"},
    },
    {
        "id": "a2",
        "level": "info",
        "service": "api",
        "logger": "web",
        "host": "h2",
        "attributes": {"status": "500", "duration_ms": 700, "ok": True},
    },
    {
        "id": "a3",
        "level": "error",
        "service": "api",
        "logger": "db",
        "host": "h1",
        "attributes": {"status": 200, "duration_ms": 501.25, "big": 9007199254740993},
    },
    {
        "id": "a4",
        "level": "warn",
        "service": "pay",
        "logger": "db",
        "trace_id": "t2",
        "attributes": {"user": "bob", "duration_ms": "900"},
    },
    {"id": "a5", "level": "info", "service": "pay", "message": "no attributes"},
]


def payload(entries: list[Mapping[str, Any]]) -> bytes:
    """A stored-row payload as ingestion writes it (JSON array, id first, typed maps, received_at last)."""
    now = utc().isoformat() + "Z"
    rows = [{"id": e["id"], "timestamp": now, "message": "m", **e, "received_at": now} for e in entries]
    schema.add_typed_maps(rows)
    return pydantic_core.to_json(rows)  # ingestion's serializer: numbers in its text form


def store(client: Any, entries: list[Mapping[str, Any]]) -> None:
    """Through the processing role's insert path (inserts.insert_rows), as the processor stores a message."""
    ts = utc()
    ids = [str(e["id"]) for e in entries]
    lo, hi = (ts.replace(year=ts.year - 1).isoformat(), ts.replace(year=ts.year + 1).isoformat())
    inserts.insert_rows(client, [payload(entries)], ids, lo, hi, "test", {})


@pytest.fixture
async def query_app(nats_server: Any, chdb_dsn: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """A query-only app on real NATS and chDB holding ENTRIES, plus a client session."""
    config = StackConfig(roles=("query",), nats_url=nats_server.url, clickhouse_dsn=chdb_dsn)
    async with running(config) as (base, app), aiohttp.ClientSession() as session:
        await app[STORAGE].run(store, ENTRIES)
        yield base, session


async def ids(session: aiohttp.ClientSession, url: str) -> list[str]:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return sorted(entry["id"] for entry in await response.json())


# -- typed values ----------------------------------------------------------------------------------------
async def test_attribute_values_keep_their_json_type(query_app: Any) -> None:
    """99.5 stays a float, 700 an int, a 2**53+1 integer exact, booleans booleans, "500" a string."""
    base, session = query_app
    async with session.get(f"{base}/api/logs") as response:
        body = {entry["id"]: entry for entry in await response.json()}
    assert body["a1"]["attributes"] == {"status": 500, "duration_ms": 99.5, "ok": False, "user": "ann"}
    assert body["a2"]["attributes"] == {"status": "500", "duration_ms": 700, "ok": True}
    assert body["a3"]["attributes"]["big"] == 9007199254740993
    assert type(body["a2"]["attributes"]["duration_ms"]) is int
    assert body["a4"]["attributes"] == {"user": "bob", "duration_ms": "900"}
    assert "attributes" not in body["a5"]


# -- filters on /api/logs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("attr.status=500", ["a1", "a2"]),  # the number and the string "500"
        ("attr.status=500.0", []),  # string forms: 500 is "500", not "500.0"
        ("attr.ok=true", ["a2"]),
        ("attr.user=ann", ["a1"]),
        ("attr.status!=500", ["a3", "a4", "a5"]),  # includes entries without the key
        ("attr.duration_ms>500", ["a2", "a3"]),  # numbers only: the string "900" is not compared
        ("attr.duration_ms>=700", ["a2"]),
        ("attr.duration_ms<100", ["a1"]),
        ("attr.duration_ms<=501.25", ["a1", "a3"]),
        ("attr.user=*", ["a1", "a4"]),
        ("attr.user!=*", ["a2", "a3", "a5"]),
        ("attr.status=500&attr.ok=false", ["a1"]),  # ANDed
        ("attr.big=9007199254740993", ["a3"]),
        ("logger=db", ["a3", "a4"]),
        ("host=h1&level=info", ["a1"]),
        ("trace_id=t2", ["a4"]),
        ("service=api&attr.duration_ms>100", ["a2", "a3"]),
    ],
)
async def test_filters_select_the_matching_entries(query_app: Any, query: str, expected: list[str]) -> None:
    """Each documented filter form returns exactly the entries the contract names."""
    base, session = query_app
    assert await ids(session, f"{base}/api/logs?{query}") == expected


async def test_stats_and_histogram_take_the_same_filters(query_app: Any) -> None:
    """/api/stats and /api/histogram count only the matching entries."""
    base, session = query_app
    async with session.get(f"{base}/api/stats?attr.duration_ms>500") as response:
        stats = await response.json()
    assert stats["total_logs"] == 2 and stats["logs_by_level"]["error"] == 1
    async with session.get(f"{base}/api/histogram?attr.user=*&logger=db") as response:
        histogram = await response.json()
    assert sum(bucket["total"] for bucket in histogram["buckets"]) == 1


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("attr.duration_ms>abc", "attr.duration_ms", "expected a number"),
        ("attr.duration_ms>=", "attr.duration_ms", "expected a number"),
        ("attr.x<nan", "attr.x", "expected a number"),
        ("attr.=1", "attr.", "key must be"),
        (f"attr.{'k' * 129}=1", "<134 characters>", "key must be"),  # long names are not echoed back
        (
            "&".join(f"attr.k{i}=*" for i in range(MAX_ATTR_FILTERS + 1)),
            f"attr.k{MAX_ATTR_FILTERS}",
            "at most",
        ),
        ("logger=a&logger=b", "logger", "more than once"),
        ("hostname=h1", "hostname", "unknown parameter"),
    ],
)
async def test_bad_filters_are_400_naming_the_parameter(
    query_app: Any, query: str, field: str, reason: str
) -> None:
    """A malformed or excess filter is a problem+json 400 with its field and reason, on every route."""
    base, session = query_app
    for route in ("/api/logs", "/api/stats", "/api/histogram", "/ws/live"):
        async with session.get(f"{base}{route}?{query}") as response:
            assert response.status == 400, route
            problem = await response.json()
        assert problem["field"] == field and reason in problem["detail"], (route, problem)


# -- the whole pipeline and the live tail -------------------------------------------------------------------
async def test_posted_typed_attributes_are_filtered_live_and_stored(nats_server: Any, chdb_dsn: str) -> None:
    """POST /logs -> live tail with attr filters -> stored and queryable with the same types and filters."""
    async with all_roles(nats_server.url, chdb_dsn) as (base, session):
        slow = await session.ws_connect(f"{base}/ws/live?attr.duration_ms%3E500")
        users = await session.ws_connect(f"{base}/ws/live?attr.user=*&attr.ok=true")
        await asyncio.sleep(0.5)  # the hub subscribes to NATS in the background
        sent = [
            {
                "id": "p1",
                "level": "info",
                "message": "m",
                "service": "s",
                "attributes": {"duration_ms": 750.5, "user": "ann", "ok": True},
            },
            {
                "id": "p2",
                "level": "info",
                "message": "m",
                "service": "s",
                "attributes": {"duration_ms": 20, "user": "bob", "ok": False},
            },
            {
                "id": "p3",
                "level": "info",
                "message": "m",
                "service": "s",
                "attributes": {"duration_ms": "999"},
            },
        ]
        async with session.post(f"{base}/logs", json=sent) as response:
            assert response.status == 202, await response.text()
        got_slow = json.loads((await slow.receive(timeout=10)).data)
        got_users = json.loads((await users.receive(timeout=10)).data)
        assert got_slow["id"] == "p1" and got_slow["attributes"]["duration_ms"] == 750.5
        assert got_users["id"] == "p1"

        async def stored() -> list[dict[str, Any]] | None:
            async with session.get(f"{base}/api/logs?attr.duration_ms%3E500") as response:
                body: list[dict[str, Any]] = await response.json()
            return body or None

        body = await wait_for(stored, timeout=20)
        assert [e["id"] for e in body] == ["p1"]
        assert body[0]["attributes"] == got_slow["attributes"] == sent[0]["attributes"]
        await slow.close()
        await users.close()


# -- SQL and the live matcher agree -----------------------------------------------------------------------
_KEYS = ["a", "b", "c"]
_VALUES = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.5, -1.5, 2.0, 1e20]),
    st.booleans(),
    st.sampled_from(["1", "2.0", "x", "true", "", "-1.5"]),
)
_ENTRY = st.builds(
    lambda attrs, logger, host: {
        "level": "info",
        "service": "s",
        **({"attributes": attrs} if attrs else {}),
        **({"logger": logger} if logger else {}),
        **({"host": host} if host else {}),
    },
    st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=3),
    st.sampled_from(["", "l1", "l2"]),
    st.sampled_from(["", "h1"]),
)
_CONDITION = st.tuples(
    st.sampled_from(_KEYS),
    st.sampled_from(["=", "!", ">", ">=", "<", "<="]),
    st.sampled_from(["1", "2", "2.0", "0.5", "-1.5", "x", "true", "false", "*", "1e20", "", "-3"]),
)


def _query(conditions: list[tuple[str, str, str]], logger: str) -> MultiDict[str]:
    query: MultiDict[str] = MultiDict()
    for key, op, value in conditions:
        if op in (">", "<"):
            query.add(f"attr.{key}{op}{value}", "")  # how the query string splits `attr.k>5`
        elif op == "!":
            query.add(f"attr.{key}!", value)
        else:
            query.add(f"attr.{key}{op[:-1]}", value)
    if logger:
        query.add("logger", logger)
    return query


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One chDB store (the schema through migrations) for the property test's many examples."""
    storage = Storage(f"chdb://{tmp_path_factory.mktemp('attr_prop') / 'clickhouse'}")
    storage.ensure_schema()
    yield storage.client
    storage.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.lists(_ENTRY, min_size=1, max_size=8),
    conditions=st.lists(_CONDITION, min_size=1, max_size=3),
    logger=st.sampled_from(["", "l1"]),
)
def test_sql_and_live_matcher_agree(
    scratch: Any, entries: list[dict[str, Any]], conditions: list[tuple[str, str, str]], logger: str
) -> None:
    """For random typed entries and filters, SQL selects exactly the rows `Filters.matches` keeps."""
    try:
        filters = Filters.from_query(_query(conditions, logger))
    except ParamError:
        return  # a non-number after a comparison: refused before any query (tested above)
    scratch.command(f"TRUNCATE TABLE {LOGS_TABLE}")
    rows = [{"id": f"e{i}", **entry} for i, entry in enumerate(entries)]
    store(scratch, rows)
    where, params = filters.where()
    sql = f"SELECT id FROM {LOGS_TABLE} WHERE {' AND '.join(where)}"
    selected = {row[0] for row in scratch.query(sql, parameters=params).result_rows}
    # The live tail sees the entries as JSON on the wire.
    matched = {row["id"] for row in json.loads(payload(rows)) if filters.matches(row)}
    assert selected == matched, (conditions, logger, rows)


def test_query_string_forms_parse_to_the_same_filters() -> None:
    """`attr.k>5` (no `=`), `attr.k>=5`, `attr.k!=v` and `attr.k=*` parse to the intended conditions."""
    query = MultiDict([("attr.d>5", ""), ("attr.d>", "6"), ("attr.u!", "x"), ("attr.u", "*")])
    parsed = Filters.from_query(query)
    assert [(a.key, a.op, a.number) for a in parsed.attrs] == [
        ("d", ">", 5.0),
        ("d", ">=", 6.0),
        ("u", "!=", None),
        ("u", "exists", None),
    ]


def test_typed_columns_are_added_only_for_attribute_values() -> None:
    """A message of the release before (no row-format header) is upgraded: numbers and booleans in
    `attributes` get typed twins; look-alikes in strings and `pid` do not."""
    tricky = (
        b'[{"id":"a","message":"\\"attributes\\":{\\"x\\":1}","pid":7,'
        b'"attributes":{"s":"v\\":5","n":-2.5e3,"b":false,"t":"true"},"received_at":"r"},'
        b'{"id":"b","pid":8,"attributes":{"s":"only strings"}}]'
    )
    rows = json.loads(messages.upgrade_payload(tricky))
    assert rows[0]["attributes_number"] == {"n": -2500.0} and rows[0]["attributes_bool"] == {"b": False}
    assert "attributes_number" not in rows[1] and "attributes_bool" not in rows[1]
    assert rows[0]["message"] == json.loads(tricky)[0]["message"]
    plain = b'[{"id":"c","pid":9,"attributes":{"s":"x"}}]'
    assert messages.upgrade_payload(plain) is plain  # string-only payloads pass untouched
