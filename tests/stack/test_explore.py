"""GET /api/attributes and GET /api/logs/{id}/context on a real stack (NATS + chDB), auth on: right values,
bounded parameters, the `query` scope, and problem answers for bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.http.resources import STORAGE
from oglogstream.stack.query import explore

from .auth_helpers import AuthStack, auth_stack
from .query_helpers import insert_rows, make_row, utc

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str, tmp_path: Path) -> AsyncIterator[AuthStack]:
    async with auth_stack(nats_server.url, chdb_dsn, tmp_path) as running_stack:
        yield running_stack


async def get(stack: AuthStack, path: str, scope: str = "query") -> tuple[int, Any]:
    headers = stack.headers(scope) if scope else {}
    async with aiohttp.ClientSession() as session, session.get(stack.base + path, headers=headers) as resp:
        return resp.status, await resp.json()


def row(row_id: str, seconds_ago: float, **kwargs: Any) -> list[Any]:
    return make_row(row_id, utc(seconds=seconds_ago), **kwargs)


class TestAttributes:
    async def test_top_keys_and_values_with_counts(self, stack: AuthStack) -> None:
        """Keys by how many entries carry them, values by frequency, ties broken by name."""
        rows = [
            row(f"a{i}", i, attributes={"http.route": "/x" if i < 6 else "/y", "user": f"u{i % 2}"})
            for i in range(10)
        ]
        rows += [row(f"b{i}", 20 + i, attributes={"http.route": "/z"}) for i in range(2)]
        await insert_rows(stack.app, rows)
        status, body = await get(stack, "/api/attributes")
        assert status == 200
        assert body["keys"] == [
            {
                "key": "http.route",
                "count": 12,
                "values": [
                    {"value": "/x", "count": 6},
                    {"value": "/y", "count": 4},
                    {"value": "/z", "count": 2},
                ],
            },
            {
                "key": "user",
                "count": 10,
                "values": [{"value": "u0", "count": 5}, {"value": "u1", "count": 5}],
            },
        ]
        assert body["from"].endswith("Z") and body["to"].endswith("Z")

    async def test_filters_and_limits_narrow_the_summary(self, stack: AuthStack) -> None:
        """service/level filters apply; keys=/values= cut the lists; the default range is the last hour."""
        await insert_rows(
            stack.app,
            [
                row("e1", 1, level="error", service="api", attributes={"k": "1", "only_err": "y"}),
                row("e2", 2, level="error", service="api", attributes={"k": "2"}),
                row("i1", 3, level="info", service="api", attributes={"k": "1", "z": "z"}),
                row("w1", 4, service="web", attributes={"web": "1"}),
                row("old", 2 * 3600, service="api", attributes={"ancient": "1"}),
            ],
        )
        _, body = await get(stack, "/api/attributes?level=error&service=api")
        assert [(k["key"], k["count"]) for k in body["keys"]] == [("k", 2), ("only_err", 1)]
        _, body = await get(stack, "/api/attributes?service=api&keys=1&values=1")
        assert body["keys"] == [{"key": "k", "count": 3, "values": [{"value": "1", "count": 2}]}]
        _, body = await get(stack, "/api/attributes?service=api")
        assert "ancient" not in [k["key"] for k in body["keys"]]
        since = utc(hours=3).isoformat() + "Z"
        _, body = await get(stack, f"/api/attributes?service=api&from={since}")
        assert "ancient" in [k["key"] for k in body["keys"]]

    async def test_values_keep_their_json_type(self, stack: AuthStack) -> None:
        """Numbers and booleans come back typed (as in /api/logs); a string "500" is a value of its own."""
        columns = ["timestamp", "received_at", "id", "service", "level", "message", "attributes"]
        columns += ["attributes_number", "attributes_bool"]
        typed = [
            [
                utc(seconds=1),
                utc(),
                "n1",
                "svc",
                "info",
                "m",
                {"status": "500", "ok": "true"},
                {"status": 500.0},
                {"ok": True},
            ],
            [
                utc(seconds=2),
                utc(),
                "n2",
                "svc",
                "info",
                "m",
                {"status": "500", "ok": "false"},
                {"status": 500.0},
                {"ok": False},
            ],
            [
                utc(seconds=3),
                utc(),
                "s1",
                "svc",
                "info",
                "m",
                {"status": "500", "ratio": "0.5"},
                {"ratio": 0.5},
                {},
            ],
        ]
        await stack.app[STORAGE].run(lambda client: client.insert("logs", typed, column_names=columns))
        _, body = await get(stack, "/api/attributes")
        values = {key["key"]: key["values"] for key in body["keys"]}
        assert values["status"] == [{"value": 500, "count": 2}, {"value": "500", "count": 1}]
        assert values["ok"] == [{"value": False, "count": 1}, {"value": True, "count": 1}]
        assert values["ratio"] == [{"value": 0.5, "count": 1}]
        _, context = await get(stack, "/api/logs/n2/context")
        assert context["entry"]["attributes"] == {"status": 500, "ok": False}
        assert [e["attributes"] for e in context["before"]] == [{"status": "500", "ratio": 0.5}]

    async def test_memory_bound_gives_400_asking_for_a_narrower_range(
        self, stack: AuthStack, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past MAX_SUMMARY_MEMORY (lowered here to 4 MiB so a test can reach it) the answer is a 400 naming
        `from`, not a 503 to retry or an unbounded statement."""
        columns = ["timestamp", "received_at", "id", "service", "level", "message", "attributes"]
        await stack.app[STORAGE].run(
            lambda client: client.command(
                f"INSERT INTO logs ({', '.join(columns)}) SELECT now64(6) - toIntervalMillisecond(number), "
                "now64(6), toString(number), 'svc', 'info', 'm', map('req', repeat(toString(number), 20)) "
                "FROM numbers(200000)"
            )
        )
        monkeypatch.setattr(explore, "MAX_SUMMARY_MEMORY", 4 * 1024**2)
        status, body = await get(stack, "/api/attributes")
        assert status == 400 and body["details"][0]["field"] == "from"
        assert "narrow from/to" in body["details"][0]["reason"]
        monkeypatch.undo()  # the default bound holds the same range
        status, body = await get(stack, "/api/attributes?values=1")
        assert status == 200 and body["keys"][0]["count"] == 200000

    async def test_no_attributes_gives_empty_list(self, stack: AuthStack) -> None:
        """A range without attributes is an empty list, not an error."""
        await insert_rows(stack.app, [row("n1", 1)])
        status, body = await get(stack, "/api/attributes")
        assert status == 200 and body["keys"] == []

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            (f"keys={explore.MAX_KEYS + 1}", "keys"),
            ("keys=0", "keys"),
            (f"values={explore.MAX_VALUES + 1}", "values"),
            ("values=x", "values"),
            ("level=loud", "level"),
            ("from=yesterday", "from"),
            ("colour=red", "colour"),
        ],
    )
    async def test_bad_parameters_are_400_naming_the_field(
        self, stack: AuthStack, query: str, field: str
    ) -> None:
        """Out-of-bounds or unknown parameters are refused before any query runs."""
        status, body = await get(stack, f"/api/attributes?{query}")
        assert status == 400
        assert body["details"][0]["field"] == field


class TestContext:
    async def test_neighbours_from_same_service_and_host_in_order(self, stack: AuthStack) -> None:
        """before/after hold the nearest entries of the same service and host, oldest first."""
        rows = [row(f"c{i:02d}", 100 - i, message=f"m{i}") for i in range(30)]  # c00 oldest .. c29 newest
        rows.append(row("other", 85, service="elsewhere"))
        await insert_rows(stack.app, rows)
        other_host = [utc(seconds=84.5), utc(), "other2", "svc", "info", "other host", "h2"]
        columns = ["timestamp", "received_at", "id", "service", "level", "message", "host"]
        await stack.app[STORAGE].run(lambda client: client.insert("logs", [other_host], column_names=columns))
        status, body = await get(stack, "/api/logs/c15/context?before=3&after=2")
        assert status == 200
        assert [e["id"] for e in body["before"]] == ["c12", "c13", "c14"]
        assert body["entry"]["id"] == "c15" and body["entry"]["message"] == "m15"
        assert [e["id"] for e in body["after"]] == ["c16", "c17"]
        assert set(body["entry"]) >= {"id", "timestamp", "level", "message", "service"}

    async def test_defaults_edges_and_same_timestamp_ties(self, stack: AuthStack) -> None:
        """20 each side by default; the first entry has nothing before; equal timestamps order by id."""
        when = utc(seconds=5)
        rows = [make_row(f"t{i}", when) for i in range(3)]
        rows += [row(f"d{i:02d}", 60 - i) for i in range(30)]
        await insert_rows(stack.app, rows)
        _, body = await get(stack, "/api/logs/t1/context")
        assert [e["id"] for e in body["before"]][-2:] == ["d29", "t0"] and len(body["before"]) == 20
        assert [e["id"] for e in body["after"]] == ["t2"]
        _, body = await get(stack, "/api/logs/d00/context?before=0&after=1")
        assert body["before"] == [] and [e["id"] for e in body["after"]] == ["d01"]

    async def test_unknown_id_is_404_problem(self, stack: AuthStack) -> None:
        """An id nobody stored is a 404 naming the id."""
        status, body = await get(stack, "/api/logs/nope/context")
        assert status == 404 and body["details"][0]["field"] == "id"

    @pytest.mark.parametrize(
        ("path", "field"),
        [
            (f"/api/logs/x/context?before={explore.MAX_CONTEXT + 1}", "before"),
            ("/api/logs/x/context?after=-1", "after"),
            ("/api/logs/x/context?around=3", "around"),
            ("/api/logs/bad%20id/context", "id"),
            ("/api/logs/x%0A/context", "id"),
        ],
    )
    async def test_bad_parameters_are_400(self, stack: AuthStack, path: str, field: str) -> None:
        """Counts beyond MAX_CONTEXT, unknown parameters and malformed ids are refused."""
        status, body = await get(stack, path)
        assert status == 400 and body["details"][0]["field"] == field


class TestScope:
    @pytest.mark.parametrize("path", ["/api/attributes", "/api/logs/x/context"])
    async def test_query_scope_needed(self, stack: AuthStack, path: str) -> None:
        """No key: 401; an ingest-only key: 403; a query key gets through."""
        assert (await get(stack, path, scope=""))[0] == 401
        assert (await get(stack, path, scope="ingest"))[0] == 403
        assert (await get(stack, path, scope="query"))[0] in (200, 404)
